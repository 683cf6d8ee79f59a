"""The inference watchdog of a shared model: when is a call stalled, and how the backend comes back.

A call is stalled when it runs past ``max(factor x recent p99, floor_s)`` (``startup_s`` until
``min_samples`` calls were timed: the first calls of a runtime are slow). The scheduler then abandons it
(its thread is left to finish or hang on its own), fails the waiting callers with
:class:`~edge_sdk.errors.InferenceStalledError` and replaces the model: reloaded from its file with the
same backend (``recovery="restart"``), else, or directly with ``recovery="cpu"``, on the CPU.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

#: new call timings after which the cached p99 is recomputed (the watchdog's deadline moves slowly anyway)
P99_REFRESH = 8

log = logging.getLogger("edge_sdk.multistream")

RECOVERIES = ("restart", "cpu")


@dataclass
class WatchdogOptions:
    """When a call counts as stalled and what replaces the model (see the module docstring)."""

    enabled: bool = True
    factor: float = 10.0
    floor_s: float = 2.0
    startup_s: float = 30.0
    min_samples: int = 5
    recovery: str = "restart"
    window: int = 256

    def __post_init__(self) -> None:
        from edge_sdk.errors import EdgeSDKError

        if self.recovery not in RECOVERIES:
            raise EdgeSDKError(f"watchdog recovery '{self.recovery}' is unknown; use one of {', '.join(RECOVERIES)}")
        if self.factor <= 0 or self.floor_s <= 0 or self.startup_s <= 0:
            raise EdgeSDKError("watchdog factor, floor_s and startup_s must be > 0")

    @classmethod
    def of(cls, value: WatchdogOptions | bool | dict[str, Any] | None) -> WatchdogOptions:
        """Options from ``True``/``None`` (defaults), ``False`` (off), a dict of fields, or options."""
        if isinstance(value, WatchdogOptions):
            return value
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(enabled=False)
        return cls(**value)


class CallTimes:
    """Recent inference call durations (seconds) and the deadline they imply; thread-safe."""

    def __init__(self, options: WatchdogOptions) -> None:
        self.options = options
        self._times: collections.deque[float] = collections.deque(maxlen=options.window)
        self._lock = threading.Lock()
        self._p99: float | None = None  # cached: every call asks for its deadline, a percentile is not free
        self._stale = 0  # timings added since the cached p99

    def add(self, seconds: float) -> None:
        with self._lock:
            self._times.append(seconds)
            self._stale += 1

    def clear(self) -> None:
        """Forget the timings (a restarted backend starts slow again)."""
        with self._lock:
            self._times.clear()
            self._p99, self._stale = None, 0

    def p99(self) -> float | None:
        """The p99 of the recent calls, recomputed after every ``P99_REFRESH`` new timings."""
        with self._lock:
            if self._p99 is not None and self._stale < P99_REFRESH:
                return self._p99
            times = list(self._times)
            self._stale = 0
        self._p99 = float(np.percentile(times, 99)) if times else None
        return self._p99

    def deadline(self) -> float | None:
        """Seconds a call may run before it is abandoned; None when the watchdog is off."""
        o = self.options
        if not o.enabled:
            return None
        with self._lock:
            n = len(self._times)
        p99 = self.p99()
        if n < o.min_samples or p99 is None:
            return max(o.startup_s, o.floor_s)
        return max(o.factor * p99, o.floor_s)


def default_loader(model: Any, recovery: str, threads: int | None = None) -> Callable[[str], Any]:
    """A function ``mode -> new Model`` for ``model``: ``"restart"`` loads its file again on the same backend,
    ``"cpu"`` loads it with ``device="cpu"``; both with its ``dequantize`` setting and ``threads`` (None: the
    runtime's default; a lane of :mod:`~edge_sdk.multistream.lanes` gets its share of the cores)."""
    from edge_sdk.loader import load

    path = model.path
    backend = getattr(model, "backend", None)
    deq = bool(getattr(model, "dequantize", False))

    def reload(mode: str) -> Any:
        if mode == "cpu":
            return load(path, device="cpu", dequantize=deq, threads=threads)
        return load(path, backend=backend, dequantize=deq, threads=threads)

    return reload


def recover(loader: Callable[[str], Any], recovery: str) -> tuple[Any, str, str | None]:
    """A new model through ``loader``: (model, action, error of the first try). Raises when every try failed."""
    modes = ["restart", "cpu"] if recovery == "restart" else ["cpu"]
    first_error: str | None = None
    for i, mode in enumerate(modes):
        try:
            model = loader(mode)
        except Exception as e:
            from edge_sdk.errors import first_line

            log.warning("watchdog: %s of the backend failed: %s", mode, first_line(e))
            first_error = first_error or f"{mode}: {first_line(e)}"
            if i == len(modes) - 1:
                raise
            continue
        return model, "restarted" if mode == "restart" else "cpu_fallback", first_error
    raise AssertionError("unreachable")  # pragma: no cover
