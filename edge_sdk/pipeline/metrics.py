"""Pipeline metrics: per-stage rate and time, end-to-end latency (capture -> result), drops."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import numpy as np

WINDOW = 4096  # samples kept for percentiles (a sliding window, so memory stays flat)


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
        self.result_ts: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget everything so far (e.g. after warm-up)."""
        with self._lock:
            self.t0 = time.monotonic()
            self.results = 0
            self.latency.clear()
            self.result_ts.clear()
            for s in self.stages.values():
                s.count = 0
                s.times.clear()

    def result(self, capture_ts: float) -> float:
        now = time.monotonic()
        age = now - capture_ts
        with self._lock:
            self.results += 1
            self.latency.append(age)
            self.result_ts.append(now)
        return age

    def recent_fps(self, span: float = 2.0) -> float:
        now = time.monotonic()
        with self._lock:
            ts = [t for t in self.result_ts if now - t <= span]
        if len(ts) < 2:
            return 0.0
        return round((len(ts) - 1) / max(ts[-1] - ts[0], 1e-9), 2)

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        elapsed = time.monotonic() - self.t0
        with self._lock:
            lat = list(self.latency)
            results = self.results
        return {
            "elapsed_s": round(elapsed, 2),
            "results": results,
            "fps": round(results / elapsed, 2) if elapsed > 0 else 0.0,
            "fps_recent": self.recent_fps(),
            "latency_ms": {"p50": _pct(lat, 50), "p99": _pct(lat, 99), "max": _pct(lat, 100)},
            "stages": {name: s.snapshot(elapsed) for name, s in self.stages.items()},
            **extra,
        }
