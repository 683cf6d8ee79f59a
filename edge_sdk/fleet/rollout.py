"""The rollout controller: a new desired model version published cohort by cohort, with a failure gate.

1. Discovery: subscribe to ``edge/v1/{fleet}/+/status``, ``+/model/state`` and ``+/model/desired``; every
   device with a retained status or state is in the fleet (sorted by name; ``expect`` waits for that many).
2. Cohorts: cumulative shares of the fleet, in percent (``1,10,100``: the first 1 % (at least one
   device), then up to 10 %, then everyone) or, with ``unit="count"``, cumulative device counts.
3. Per cohort: publish the desired state (retained, QoS 1) to its devices, wait until each reports a
   final state *for this version* (active, rolled_back, failed) or the timeout (counted as failed).
4. Gate: failed share of the cohort > ``max_failed``: stop, and set that cohort back (the previous
   retained desired document where there was one; else ``{"version": <previous live version>,
   "action": "rollback"}``, which the agent serves from its other slot; else the topic is cleared).

The controller republishes every desired document it set whenever it reconnects, so a broker restarted
without persistence still carries the rollout; agents republish their own state when they reconnect.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from edge_sdk.errors import CLIUsageError
from edge_sdk.fleet import mqtt_client as mq

FINAL = ("active", "rolled_back", "failed")


@dataclass
class RolloutPlan:
    """What to roll out where, and the rules (see the module docstring)."""

    fleet: str
    version: str
    url: str
    sha256: str
    cohorts: list[float] = field(default_factory=lambda: [1.0, 10.0, 100.0])
    unit: str = "percent"
    max_failed: float = 0.05
    timeout: float = 600.0
    discover_s: float = 3.0
    expect: int | None = None

    def desired(self) -> dict[str, Any]:
        return {"version": self.version, "url": self.url, "sha256": self.sha256, "ts": time.time()}


def parse_cohorts(text: str) -> list[float]:
    """``"1,10,100"`` -> [1.0, 10.0, 100.0] (non-decreasing positive numbers; ``%`` signs allowed)."""
    try:
        values = [float(v.strip().rstrip("%")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CLIUsageError(f"--cohorts '{text}' is not a list of numbers like 1,10,100") from None
    if not values or any(v <= 0 for v in values) or values != sorted(values):
        raise CLIUsageError(f"--cohorts '{text}': give growing positive numbers, e.g. 1,10,100")
    return values


def parse_share(text: str) -> float:
    """``"5%"`` or ``"0.05"`` -> 0.05."""
    try:
        value = float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise CLIUsageError(f"--max-failed '{text}' is not a share like 5% or 0.05") from None
    if not 0.0 <= value <= 1.0:
        raise CLIUsageError(f"--max-failed '{text}' must be between 0% and 100%")
    return value


def split_cohorts(devices: list[str], cohorts: list[float], unit: str = "percent") -> list[list[str]]:
    """Devices in order -> the new devices of each cohort (cumulative shares or counts; empty cohorts dropped)."""
    n, done, out = len(devices), 0, []
    for c in cohorts:
        upto = min(n, int(c) if unit == "count" else max(1, math.ceil(n * min(c, 100.0) / 100.0)))
        if upto > done:
            out.append(devices[done:upto])
            done = upto
    return out


class Rollout:
    """One rollout over MQTT. ``progress(rows, header)`` is called whenever a cohort's counts change."""

    def __init__(self, broker: str, plan: RolloutPlan, progress: Callable[[dict[str, Any]], None] | None = None):
        self.host, self.port = mq.parse_broker(broker)
        self.plan = plan
        self.progress = progress
        self.status: dict[str, str] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.desired: dict[str, dict[str, Any] | None] = {}  # retained desired as last seen
        self.published: dict[str, dict[str, Any] | None] = {}  # what this controller set (republished on connect)
        self.reconnects = -1
        self._before: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self.client = mq.make_client(
            f"edge-rollout-{plan.fleet}-{os.getpid()}", persistent=False,
            on_connect=self._on_connect, on_message=self._on_message,
        )  # fmt: skip

    # -- MQTT (paho's thread) -----------------------------------------------------------------------
    def _on_connect(self, client: Any) -> None:
        base = f"{mq.PREFIX}/{self.plan.fleet}/+"
        client.subscribe([(f"{base}/{t}", mq.QOS) for t in ("status", "model/state", "model/desired")])
        with self._lock:
            self.reconnects += 1
            again = dict(self.published)
        for device, doc in again.items():
            mq.publish_json(client, mq.Topics(self.plan.fleet, device).desired, doc, retain=True)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        found = mq.device_of(topic, self.plan.fleet)
        if found is None:
            return
        device, kind = found
        with self._lock:
            if kind == "status" and payload:
                self.status[device] = payload.decode("utf-8", "replace").strip('"')
            elif kind == "model/state":
                doc = mq.loads(payload)
                if doc is not None:
                    self.states[device] = doc
            elif kind == "model/desired" and device not in self.published:
                self.desired[device] = mq.loads(payload)
        self._changed.set()

    # -- the rollout ------------------------------------------------------------------------------------
    def devices(self) -> list[str]:
        with self._lock:
            return sorted(set(self.status) | set(self.states))

    def _discover(self) -> list[str]:
        p = self.plan
        deadline = time.monotonic() + p.discover_s
        expect_deadline = time.monotonic() + max(p.timeout, p.discover_s)
        while True:
            n = len(self.devices())
            now = time.monotonic()
            if now >= deadline and (p.expect is None or n >= p.expect or now >= expect_deadline):
                return self.devices()
            time.sleep(0.1)

    def outcome(self, device: str) -> str:
        """active / rolled_back / failed for this version, else pending."""
        with self._lock:
            doc = self.states.get(device) or {}
        if doc.get("version") == self.plan.version and doc.get("state") in FINAL:
            return str(doc["state"])
        return "pending"

    def _wait(self, cohort: list[str], row: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.plan.timeout
        last: Any = None
        while True:
            counts = {k: 0 for k in ("active", "rolled_back", "failed", "pending")}
            for d in cohort:
                counts[self.outcome(d)] += 1
            row.update(counts)
            if counts != last and self.progress is not None:
                self.progress(row)
            last = dict(counts)
            if counts["pending"] == 0:
                return
            if time.monotonic() >= deadline:
                row["timed_out"] = [d for d in cohort if self.outcome(d) == "pending"]
                row["failed"] += row["pending"]
                return
            self._changed.wait(0.5)
            self._changed.clear()

    def _set_back(self, cohort: list[str]) -> list[str]:
        """Publish each device's previous desired state and wait (up to the timeout) until the devices that
        had something live before report it live again; returns the devices that did."""
        for d in cohort:
            prev, before = self.desired.get(d), self._before.get(d)
            if prev is None and before is not None:
                prev = {"version": before, "action": "rollback", "ts": time.time()}
            with self._lock:
                self.published[d] = prev
            mq.publish_json(self.client, mq.Topics(self.plan.fleet, d).desired, prev, retain=True)
        deadline = time.monotonic() + self.plan.timeout
        while True:
            with self._lock:
                back = [d for d in cohort if self._before.get(d) is None
                        or (self.states.get(d) or {}).get("active_version") == self._before.get(d)
                        and (self.states.get(d) or {}).get("state") not in ("downloading", "verifying", "staged",
                                                                             "probation")]  # fmt: skip
            if len(back) == len(cohort) or time.monotonic() >= deadline:
                return back
            self._changed.wait(0.5)
            self._changed.clear()

    def run(self) -> dict[str, Any]:
        """Run the rollout; returns the JSON-able report (``result``: complete / stopped / incomplete)."""
        p = self.plan
        mq.start(self.client, self.host, self.port)
        t0 = time.monotonic()
        try:
            fleet = self._discover()
            with self._lock:
                self._before = {d: (self.states.get(d) or {}).get("active_version") for d in fleet}
            cohorts = split_cohorts(fleet, p.cohorts, p.unit)
            rows: list[dict[str, Any]] = []
            result, reason = "complete", ""
            for i, cohort in enumerate(cohorts, 1):
                row: dict[str, Any] = {"cohort": i, "size": len(cohort), "devices": cohort, "result": "running"}
                rows.append(row)
                desired = p.desired()
                for d in cohort:
                    with self._lock:
                        self.published[d] = desired
                    mq.publish_json(self.client, mq.Topics(p.fleet, d).desired, desired, retain=True)
                self._wait(cohort, row)
                share = row["failed"] / len(cohort) + row["rolled_back"] / len(cohort)
                row["failed_share"] = round(share, 4)
                if share > p.max_failed:
                    row["result"] = "set back"
                    row["set_back"] = self._set_back(cohort)
                    result = "stopped"
                    bad = row["rolled_back"] + row["failed"]
                    reason = (
                        f"cohort {i}: {bad} of {len(cohort)} devices did not take {p.version} "
                        f"({share:.0%} > --max-failed {p.max_failed:.0%}); cohort set back"
                    )
                    if self.progress is not None:
                        self.progress(row)
                    break
                row["result"] = "passed"
                if self.progress is not None:
                    self.progress(row)
            reached = [d for d in fleet if self.outcome(d) == "active"]
            if not fleet and self.reconnects < 0:
                result, reason = "incomplete", f"cannot reach the MQTT broker at {self.host}:{self.port}"
            elif not fleet:
                result, reason = "incomplete", f"no devices found in fleet '{p.fleet}' within {p.discover_s:g} s"
            elif result == "complete" and len(reached) < len(fleet):
                result = "incomplete"
                reason = f"{p.version} reached {len(reached)} of {len(fleet)} devices"
            return {
                "fleet": p.fleet, "version": p.version, "result": result, "reason": reason,
                "devices": len(fleet), "reached": len(reached), "cohorts": rows,
                "broker_reconnects": max(self.reconnects, 0), "elapsed_s": round(time.monotonic() - t0, 2),
                "states": {d: self.states.get(d) for d in fleet},
            }  # fmt: skip
        finally:
            self.client.loop_stop()
            self.client.disconnect()
