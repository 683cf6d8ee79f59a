"""Result events published to an MQTT broker (paho-mqtt): ``mqtt://host[:port]/topic``.

Results go to ``<topic>`` (default ``edge_sdk/events``), source lifecycle events to
``<topic>/status`` and the metrics to ``<topic>/metrics``, as JSON. paho's network thread
sends them and reconnects by itself; a broker that cannot be reached at start is an error.
``<topic>/status`` is retained: ``online`` when the sink opens, ``offline`` when it closes (the pipeline
closes its sinks on SIGTERM / SIGINT too), and the broker's last will says ``offline`` if the process dies.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from edge_sdk.errors import BackendUnavailableError, SinkError
from edge_sdk.sinks.base import Sink

OFFLINE = {"type": "status", "status": "offline"}


class MqttSink(Sink):
    kind = "mqtt"

    def __init__(
        self, target: str, *, qos: int = 0, client_id: str = "", min_interval: float = 0.0, timeout: float = 5.0
    ) -> None:
        u = urlsplit(target)
        if not u.hostname:
            raise SinkError(f"mqtt sink '{target}': name the broker, e.g. mqtt://127.0.0.1:1883/edge_sdk/events")
        self.host, self.tls = u.hostname, u.scheme == "mqtts"
        self.port = u.port or (8883 if self.tls else 1883)
        self.topic = unquote(u.path.lstrip("/")) or "edge_sdk/events"
        self.user, self.password = u.username, u.password
        self.qos, self.client_id, self.min_interval, self.timeout = int(qos), client_id, min_interval, timeout
        self._client: Any = None
        self._last = 0.0
        self.published = 0

    def open(self, info: dict[str, Any]) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as e:
            raise BackendUnavailableError("paho-mqtt (mqtt sink)", "camera", str(e)) from None
        try:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        except AttributeError:  # paho-mqtt 1.x
            client = mqtt.Client(client_id=self.client_id)
        if self.user:
            client.username_pw_set(unquote(self.user), unquote(self.password or ""))
        if self.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        # if this process dies without closing (SIGKILL, power loss), the broker publishes "offline" for it
        client.will_set(f"{self.topic}/status", json.dumps(OFFLINE), qos=1, retain=True)
        try:
            client.connect(self.host, self.port, keepalive=30)
        except (OSError, ValueError) as e:
            raise SinkError(
                f"cannot reach the MQTT broker at {self.host}:{self.port}: {getattr(e, 'strerror', None) or e} "
                "(is the broker running? e.g. `mosquitto -p 1883`)"
            ) from None
        client.loop_start()
        self._client = client
        self._publish(f"{self.topic}/status", {"type": "status", "status": "online", **info}, retain=True)

    def _publish(self, topic: str, payload: dict[str, Any], retain: bool = False, qos: int | None = None) -> None:
        if self._client is not None:
            qos = self.qos if qos is None else qos
            self._client.publish(topic, json.dumps(payload, default=str), qos=qos, retain=retain)
            self.published += 1

    def write(self, frame: Any, result: Any, event: dict[str, Any], image: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self.min_interval:
            self._last = now
            self._publish(self.topic, event)

    def write_event(self, event: dict[str, Any]) -> None:
        """Source events (disconnected, reconnected, end of file) on ``<topic>/status``; zone, line and watchdog
        events on ``<topic>/events`` (they used to share the status topic, where subscribers expect liveness)."""
        topic = f"{self.topic}/{'status' if event.get('type') == 'source' else 'events'}"
        self._publish(topic, event, qos=max(self.qos, 1))  # at least once: paho also queues it while connecting

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        self._publish(f"{self.topic}/metrics", metrics)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            info = client.publish(f"{self.topic}/status", json.dumps(OFFLINE), qos=1, retain=True)
            try:
                info.wait_for_publish(self.timeout)
            except (RuntimeError, ValueError):  # not connected: the will says offline instead
                pass
            deadline = time.monotonic() + self.timeout
            while client.want_write() and time.monotonic() < deadline:
                time.sleep(0.02)
            client.disconnect()
            client.loop_stop()

    def __repr__(self) -> str:
        return f"<MqttSink mqtt://{self.host}:{self.port}/{self.topic}>"
