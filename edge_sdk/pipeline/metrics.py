"""Pipeline metrics: per-stage rate and time, end-to-end latency (capture -> result) split into processing
(pre + infer + post of that frame) and queue wait (the rest: buffers between capture and each stage), drops."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Sequence

import numpy as np

WINDOW = 4096  # samples kept for percentiles (a sliding window, so memory stays flat)


def rate(timestamps: Sequence[float], now: float, span: float = 2.0, min_results: int = 3) -> float:
    """Results per second from result times (monotonic, oldest first), right also below 1 fps.

    Uses the results of the last ``span`` seconds, or the last ``min_results`` when fewer came in that span
    (at 0.2 fps a 2 s window holds at most one result); a stall since the last result lowers the rate to
    at most 1 / (time since the last result). Rounded to 3 significant digits.
    """
    ts = [t for t in timestamps if now - t <= span]
    if len(ts) < min_results:
        ts = list(timestamps[-min_results:])
    if len(ts) < 2 or ts[-1] <= ts[0]:
        return 0.0
    fps = (len(ts) - 1) / (ts[-1] - ts[0])
    since = now - ts[-1]
    if since > 1.0 / fps:
        fps = min(fps, 1.0 / since)
    return float(f"{fps:.3g}")


def _pct(values: Any, q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(np.fromiter(values, dtype=np.float64), q)) * 1000, 2)


class StageStats:
    """How often a stage ran and how long each run took (seconds, sliding window)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.times: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self.count += 1
            self.times.append(seconds)

    def snapshot(self, elapsed: float) -> dict[str, Any]:
        with self._lock:
            times = list(self.times)
        return {
            "count": self.count,
            "fps": round(self.count / elapsed, 2) if elapsed > 0 else 0.0,
            "p50_ms": _pct(times, 50),
            "p99_ms": _pct(times, 99),
        }


class PipelineMetrics:
    """Everything ``Pipeline.metrics()`` reports; thread-safe, bounded memory."""

    def __init__(self, stages: tuple[str, ...]) -> None:
        self.t0 = time.monotonic()
        self.stages = {s: StageStats(s) for s in stages}
        self.results = 0
        self.latency: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self.processing: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self.result_ts: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget everything so far (e.g. after warm-up)."""
        with self._lock:
            self.t0 = time.monotonic()
            self.results = 0
            self.latency.clear()
            self.processing.clear()
            self.result_ts.clear()
            for s in self.stages.values():
                s.count = 0
                s.times.clear()

    def result(self, capture_ts: float, processing: float | None = None) -> float:
        """Count a result of a frame captured at ``capture_ts`` that took ``processing`` s of work; its age."""
        now = time.monotonic()
        age = now - capture_ts
        with self._lock:
            self.results += 1
            self.latency.append(age)
            self.processing.append(age if processing is None else min(processing, age))
            self.result_ts.append(now)
        return age

    def recent_fps(self, span: float = 2.0) -> float:
        """Results per second lately (see :func:`rate`)."""
        with self._lock:
            ts = list(self.result_ts)
        return rate(ts, time.monotonic(), span)

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        elapsed = time.monotonic() - self.t0
        with self._lock:
            lat = list(self.latency)
            proc = list(self.processing)
            results = self.results
        waits = [a - p for a, p in zip(lat, proc)]
        return {
            "elapsed_s": round(elapsed, 2),
            "results": results,
            "fps": round(results / elapsed, 2) if elapsed > 0 else 0.0,
            "fps_recent": self.recent_fps(),
            "latency_ms": {"p50": _pct(lat, 50), "p99": _pct(lat, 99), "max": _pct(lat, 100)},
            "processing_ms": {"p50": _pct(proc, 50), "p99": _pct(proc, 99)},
            "queue_wait_ms": {"p50": _pct(waits, 50), "p99": _pct(waits, 99)},
            "stages": {name: s.snapshot(elapsed) for name, s in self.stages.items()},
            **extra,
        }
