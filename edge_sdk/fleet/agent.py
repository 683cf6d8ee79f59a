"""The device agent: keeps a device's model in the state its fleet asks for over MQTT.

It subscribes (QoS 1, persistent session) to the retained ``edge/v1/{fleet}/{device}/model/desired``,
runs each new desired version through :func:`edge_sdk.fleet.agent_install.install` (download, verify,
stage, probation, activate or roll back), persists every transition to ``STATE_DIR/agent.json`` and
publishes it retained on ``.../model/state``; ``.../status`` is ``online`` on every connect and the
broker's last will says ``offline``. Telemetry goes to ``.../telemetry`` every ``telemetry_every`` s.

Restarts: a broker that goes away is reconnected to by paho (1..8 s backoff); on reconnect the agent
re-subscribes and republishes its status and state. A killed agent restarts from agent.json: a busy
state means an interrupted install, which restarts from the download (or, when the live slot already
holds that version, because the kill came right after activation, is recorded as active).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from edge_sdk.fleet import mqtt_client as mq
from edge_sdk.fleet.agent_install import InstallOptions, active_version, install, switch_back
from edge_sdk.fleet.agent_state import BUSY, AgentState, clean_partials
from edge_sdk.fleet.telemetry import Telemetry

log = logging.getLogger("edge_sdk.fleet.agent")


class Agent:
    """One device's agent. ``run()`` blocks until :meth:`stop`; everything else happens in its threads."""

    def __init__(
        self,
        broker: str,
        fleet: str,
        device: str,
        opts: InstallOptions,
        *,
        telemetry_every: float = 10.0,
        metrics_file: str | None = None,
    ) -> None:
        self.host, self.port = mq.parse_broker(broker)
        self.topics = mq.Topics(mq.check_name("fleet", fleet), mq.check_name("device", device))
        self.opts = opts
        self.telemetry_every = telemetry_every
        self.telemetry = Telemetry(metrics_file)
        opts.state_dir.mkdir(parents=True, exist_ok=True)
        self.path = opts.state_dir / "agent.json"
        self.state = AgentState.load(self.path)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: dict[str, Any] | None = None
        self.client = mq.make_client(
            f"edge-agent-{fleet}-{device}", persistent=True, will=(self.topics.status, "offline"),
            on_connect=self._on_connect, on_message=self._on_message,
        )  # fmt: skip
        self._recover()

    # -- state ----------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Bring agent.json in line with the slots after a restart (see the module docstring)."""
        clean_partials(self.opts.state_dir / "downloads")
        live = active_version(self.opts.state_dir)
        st = self.state
        if st.state in BUSY and st.desired:
            if live is not None and live == st.version:
                self._set("active", st.version, "resumed: the live slot already holds this version")
            else:
                self._pending = st.desired
                self._set("downloading", st.version, f"resumed after an interrupted {st.state}")
        elif st.state == "active" and live != st.version:
            self._set("active", live, "resumed: the live slot holds another version than agent.json said")
        self.state.active_version = live

    def _set(self, state: str, version: str | None, reason: str, probation: dict[str, Any] | None = None) -> None:
        with self._lock:
            st = self.state
            st.state, st.version, st.reason, st.ts = state, version, reason, time.time()
            if probation is not None:
                st.probation = probation
                live = probation.get("candidate_ms") if state == "active" else probation.get("current_ms")
                st.live_ms = live or st.live_ms
            if state == "active":
                st.active_version = version
            st.save(self.path)
            doc = st.public()
        log.info("%s: %s %s %s", self.topics.device, state, version, reason)
        mq.publish_json(self.client, self.topics.state, doc, retain=True)

    # -- MQTT callbacks (paho's thread) ------------------------------------------------------------
    def _on_connect(self, client: Any) -> None:
        client.publish(self.topics.status, "online", qos=mq.QOS, retain=True)
        client.subscribe(self.topics.desired, qos=mq.QOS)
        with self._lock:
            doc = self.state.public()
        mq.publish_json(client, self.topics.state, doc, retain=True)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic != self.topics.desired:
            return
        doc = mq.loads(payload)
        if doc is None:  # empty (cleared) or not JSON: nothing is asked
            return
        with self._lock:
            if self._same(doc, self.state.desired) and (self.state.state != "idle"):
                return  # already done, failed or under way: a redelivered retained message is not a new request
            self._pending = doc
        self._wake.set()

    @staticmethod
    def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
        keys = ("version", "sha256", "url", "action")
        return a is not None and b is not None and all(a.get(k) == b.get(k) for k in keys)

    # -- work loop ----------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            with self._lock:
                doc, self._pending = self._pending, None
            if doc is None:
                continue
            with self._lock:
                self.state.desired = doc
            try:
                self._apply(doc)
            except Exception as e:  # a bug or a runtime crash must not leave the agent busy forever
                log.exception("install of %s failed unexpectedly", doc.get("version"))
                self._set("failed", doc.get("version"), f"internal error: {type(e).__name__}: {e}")

    def _apply(self, doc: dict[str, Any]) -> None:
        version = doc.get("version")
        if version is not None and version == active_version(self.opts.state_dir):
            self._set("active", version, "already live")
            return
        if switch_back(doc, self.opts, self._set) is not None:
            return
        if doc.get("action") == "rollback":
            self._set("failed", version, "rollback asked but the previous slot does not hold this version")
            return
        install(doc, self.opts, self._set)

    def _telemetry_loop(self) -> None:
        while not self._stop.wait(self.telemetry_every):
            with self._lock:
                st = self.state
                doc = self.telemetry.snapshot(version=st.active_version, state=st.state, live_ms=st.live_ms)
            mq.publish_json(self.client, self.topics.telemetry, {"device": self.topics.device, **doc})

    def run(self) -> None:
        """Connect (retrying in the background while the broker is away) and serve until :meth:`stop`."""
        mq.start(self.client, self.host, self.port)
        if self._pending is not None:
            self._wake.set()
        t = threading.Thread(target=self._telemetry_loop, name="agent-telemetry", daemon=True)
        t.start()
        try:
            self._work()
        finally:
            self._stop.set()
            self._shutdown()

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler)."""
        self._stop.set()
        self._wake.set()

    def _shutdown(self) -> None:
        info = self.client.publish(self.topics.status, "offline", qos=mq.QOS, retain=True)
        try:
            info.wait_for_publish(2.0)
        except (RuntimeError, ValueError):
            pass
        self.client.disconnect()
        self.client.loop_stop()


def state_dir_of(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().absolute()
