"""What an agent reports every N seconds on ``.../telemetry``: the device's inference figures and health.

Inference figures (fps, latency p50/p95 or p99, drops) come from the pipeline that serves the model on
the device, read from the last ``{"type": "metrics"}`` line of its metrics file (``edge-sdk run
--metrics-file`` / ``Pipeline(metrics_file=...)``) when the agent is given one; the last probation's
measured latency of the live model is always included. Health: RSS of the agent, its CPU
share, and the CPU temperature where ``/sys/class/thermal`` has one (None elsewhere).
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

THERMAL = Path("/sys/class/thermal")


def rss_bytes() -> int | None:
    """Resident set size of this process (Linux ``/proc/self/status``), else the peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except (OSError, ValueError):
        return None


def cpu_temperature(root: Path = THERMAL) -> float | None:
    """CPU temperature in °C from the first thermal zone whose type names the CPU/SoC (else the first zone)."""
    zones = sorted(root.glob("thermal_zone*")) if root.is_dir() else []
    best: float | None = None
    for z in zones:
        try:
            kind = (z / "type").read_text().strip().lower()
            value = int((z / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
        if any(k in kind for k in ("cpu", "x86_pkg", "soc", "package", "core")):
            return round(value, 1)
        if best is None:
            best = round(value, 1)
    return best


def last_metrics(path: Path | None, max_bytes: int = 65536) -> dict[str, Any] | None:
    """The last metrics line of a pipeline's JSON-lines metrics file (reads only its tail), or None."""
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            lines = fh.read().splitlines()
    except OSError:
        return None
    for raw in reversed(lines):
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if isinstance(doc, dict) and "fps" in doc:
            return doc
    return None


class Telemetry:
    """Builds telemetry documents; CPU share is measured between two calls."""

    def __init__(self, metrics_file: str | os.PathLike[str] | None = None) -> None:
        self.metrics_file = Path(metrics_file) if metrics_file else None
        self._cpu = (time.monotonic(), time.process_time())

    def _cpu_percent(self) -> float:
        now = (time.monotonic(), time.process_time())
        wall, cpu = now[0] - self._cpu[0], now[1] - self._cpu[1]
        self._cpu = now
        return round(100.0 * cpu / wall, 1) if wall > 0 else 0.0

    def snapshot(self, *, version: str | None, state: str, live_ms: dict[str, Any] | None) -> dict[str, Any]:
        """One telemetry document."""
        doc: dict[str, Any] = {
            "ts": time.time(), "model_version": version, "state": state,
            "rss_bytes": rss_bytes(), "cpu_temp_c": cpu_temperature(), "agent_cpu_percent": self._cpu_percent(),
            "fps": None, "latency_ms": None, "drops": None,
        }  # fmt: skip
        m = last_metrics(self.metrics_file)
        if m is not None:
            frames = m.get("frames") or {}
            doc.update(fps=m.get("fps_recent", m.get("fps")), latency_ms=m.get("latency_ms"),
                       drops=frames.get("dropped"), pipeline_ts=m.get("ts"))  # fmt: skip
        if live_ms:
            doc["probation_ms"] = live_ms
            if doc["latency_ms"] is None:
                doc["latency_ms"] = live_ms
                doc["fps"] = round(1000.0 / live_ms["p50"], 1) if live_ms.get("p50") else None
                doc["latency_source"] = "probation"
        return doc
