"""The fleet's MQTT conventions (topics, broker URLs, one paho client factory), shared by agent and rollout.

Topics, all under ``edge/v1/{fleet}/{device}/``:

=================  ========  =====================================================================
``status``         retained  ``online`` (published on every connect) / ``offline`` (last will)
``model/desired``  retained  what the fleet wants: ``{"version", "url", "sha256"}`` (set by rollout)
``model/state``    retained  where the device is: ``{"state", "version", "reason", "ts", ...}``
``telemetry``      plain     every N s: fps, latency, drops, model version, RSS, CPU temperature
=================  ========  =====================================================================

Everything is QoS 1. paho's network thread reconnects by itself with a growing delay; callers
re-subscribe and republish their retained messages in their ``on_connect``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from edge_sdk.errors import CLIUsageError, MissingExtraError

PREFIX = "edge/v1"
QOS = 1
#: hosts an agent or a controller may reach (the broker, bundle URLs): loopback only in this build
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Topics:
    """The topics of one device of one fleet."""

    fleet: str
    device: str

    @property
    def base(self) -> str:
        return f"{PREFIX}/{self.fleet}/{self.device}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def desired(self) -> str:
        return f"{self.base}/model/desired"

    @property
    def state(self) -> str:
        return f"{self.base}/model/state"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"


def check_name(kind: str, name: str) -> str:
    """A fleet or device name usable as one topic level (no ``/``, ``+``, ``#``, not empty)."""
    if not name or any(c in name for c in "/+#\0") or name != name.strip():
        raise CLIUsageError(f"{kind} name {name!r} cannot be an MQTT topic level (no '/', '+', '#', spaces around)")
    return name


def device_of(topic: str, fleet: str) -> tuple[str, str] | None:
    """``edge/v1/F/D/model/state`` -> ``("D", "model/state")``; None for another fleet or prefix."""
    head = f"{PREFIX}/{fleet}/"
    if not topic.startswith(head):
        return None
    device, _, rest = topic[len(head) :].partition("/")
    return (device, rest) if device and rest else None


def parse_broker(url: str) -> tuple[str, int]:
    """``mqtt://127.0.0.1:1883`` -> (host, port); only loopback brokers (see :data:`LOOPBACK`)."""
    u = urlsplit(url if "://" in url else f"mqtt://{url}")
    if u.scheme != "mqtt" or not u.hostname:
        raise CLIUsageError(f"--broker '{url}' is not mqtt://HOST:PORT, e.g. mqtt://127.0.0.1:1883")
    if u.hostname not in LOOPBACK:
        raise CLIUsageError(f"--broker '{url}': only a loopback broker ({', '.join(LOOPBACK)}) is allowed here")
    try:
        port = u.port or 1883
    except ValueError:
        raise CLIUsageError(f"--broker '{url}': the port is not a number") from None
    return u.hostname, port


def make_client(
    client_id: str,
    *,
    persistent: bool,
    will: tuple[str, str] | None = None,
    on_connect: Callable[[Any], None] | None = None,
    on_message: Callable[[str, bytes, bool], None] | None = None,
    max_backoff: int = 8,
) -> Any:
    """A paho client (MQTT 3.1.1, ``clean_session=not persistent``), reconnecting with 1..max_backoff s delays.

    ``will``: (topic, payload) published retained at QoS 1 by the broker if we vanish;
    ``on_connect(client)`` after every (re)connection; ``on_message(topic, payload, retained)``.
    """
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise MissingExtraError("the fleet agent and rollout", "fleet", "paho-mqtt") from None
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent,
        protocol=mqtt.MQTTv311,
    )  # fmt: skip
    client.reconnect_delay_set(min_delay=1, max_delay=max_backoff)
    client.max_inflight_messages_set(100)
    if will is not None:
        client.will_set(will[0], will[1], qos=QOS, retain=True)

    def _connected(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if not getattr(reason, "is_failure", False) and on_connect is not None:
            on_connect(c)

    def _message(c: Any, userdata: Any, msg: Any) -> None:
        if on_message is not None:
            on_message(msg.topic, msg.payload, bool(msg.retain))

    client.on_connect = _connected
    client.on_message = _message
    return client


def start(client: Any, host: str, port: int, keepalive: int = 10) -> None:
    """Connect in the background (a broker that is down now is retried, not an error) and start the loop."""
    client.connect_async(host, port, keepalive=keepalive)
    client.loop_start()


def publish_json(client: Any, topic: str, payload: dict[str, Any] | None, *, retain: bool = False) -> Any:
    """Publish ``payload`` as JSON at QoS 1 (None: an empty retained message, which clears the topic)."""
    data = b"" if payload is None else json.dumps(payload, sort_keys=True, default=str)
    return client.publish(topic, data, qos=QOS, retain=retain)


def loads(payload: bytes) -> dict[str, Any] | None:
    """A JSON object from a payload; None for an empty, non-JSON or non-object payload."""
    try:
        doc = json.loads(payload.decode("utf-8")) if payload else None
    except (UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
