"""What the watchdog does when a shared model's call stalls: drop the frames that waited on it, load a new
model (:func:`~edge_sdk.multistream.watchdog.recover`), and tell the listeners (a mixin of
:class:`~edge_sdk.multistream.batching.BatchingModel`, which owns the state it uses)."""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable

from edge_sdk.errors import InferenceStalledError
from edge_sdk.multistream.watchdog import CallTimes, WatchdogOptions, recover
from edge_sdk.multistream.worker import Flight, Job, Lane, Request

log = logging.getLogger("edge_sdk.multistream")
RETRY_S = 5.0  # after a failed recovery, how long before the next try


class RecoveryMixin:
    """Stall handling for BatchingModel: ``_stalled`` abandons a call and replaces the model."""

    _model: Any
    _owns: bool
    _active_lanes: list[Lane]
    _flights: list[Flight]
    lanes: int
    _broken: str | None
    _retry_at: float
    _cv: threading.Condition
    _loader: Callable[[str], Any]
    _listeners: list[Callable[[dict[str, Any]], None]]
    events: collections.deque[dict[str, Any]]
    counters: dict[str, int]
    times: CallTimes
    watchdog: WatchdogOptions
    _fail_pending: Callable[[Callable[[], BaseException]], int]
    _take: Callable[[Lane], Flight | None]
    _settle: Callable[[Flight], None]

    def _name(self) -> str:
        return getattr(getattr(self._model, "path", None), "name", None) or repr(self._model)

    def _drop(self, batch: list[Request], why: str) -> None:
        self.counters["dropped"] += len(batch)
        for r in batch:
            r.finish(error=InferenceStalledError(f"{self._name()}: frame dropped: {why}"))

    def _stalled(self, batch: list[Request], job: Job, deadline: float | None) -> None:
        """Abandon the stalled ``job``, drop what waited, replace the model, tell the listeners."""
        stalled_s = time.monotonic() - job.t0
        p99 = self.times.p99()
        self.counters["stalls"] += 1
        for lane in self._active_lanes:  # every lane's copy is replaced: they share the backend that hung
            lane.abandon()
        why = (f"inference ran {stalled_s:.1f} s, past the watchdog's {deadline:.1f} s limit"
               f"{f' (recent p99 {p99 * 1000:.1f} ms)' if p99 else ''}; the backend is being restarted")  # fmt: skip
        self._drop(batch, why)
        with self._cv:
            others = [f for f in self._flights if f.job.claim()]
            self._flights.clear()
            self._cv.notify_all()  # idle lanes see they are abandoned
        for f in others:  # the other lanes' calls: dropped, their lanes are replaced too
            self._drop(f.batch, "its call was on a lane replaced after another lane's stall")
        with self._cv:
            stale = self._fail_pending(lambda: InferenceStalledError(f"{self._name()}: frame dropped: it waited "
                                                                     "while the backend hung"))  # fmt: skip
        self.counters["dropped"] += stale
        event = {"type": "event", "event": "watchdog", "model": self._name(),
                 "backend_before": getattr(self._model, "backend", None), "stalled_s": round(stalled_s, 3),
                 "deadline_s": round(deadline or 0.0, 3), "p99_ms": None if p99 is None else round(p99 * 1000, 2),
                 "streams": sorted({str(r.stream) for r in batch}), "dropped": len(batch) + stale}  # fmt: skip
        log.warning("watchdog: %s: %s", self._name(), why)
        self._replace(event)

    def _replace(self, event: dict[str, Any]) -> bool:
        t0 = time.monotonic()
        try:
            model, action, first_error = recover(self._loader, self.watchdog.recovery)
        except Exception as e:
            from edge_sdk.errors import first_line

            self._broken, self._retry_at = first_line(e), time.monotonic() + RETRY_S
            event.update(action="failed", error=self._broken)
        else:
            self._model, self._owns, self._broken = model, True, None
            self._active_lanes = [Lane(model, True, self._take, self._settle)]
            mode = "cpu" if action == "cpu_fallback" else "restart"
            try:  # the other lanes: a copy each, as the first was loaded
                for _ in range(self.lanes - 1):
                    self._active_lanes.append(Lane(self._loader(mode), True, self._take, self._settle))
            except Exception as e:
                from edge_sdk.errors import first_line

                log.warning("watchdog: lane of the restarted backend failed to load: %s", first_line(e))
                event["lanes_error"] = first_line(e)
            event["lanes"] = len(self._active_lanes)
            self.times.clear()
            self.counters["restarts"] += 1
            event.update(action=action, backend=getattr(model, "backend", None))
            if first_error:
                event["restart_error"] = first_error
        event.update(restart_s=round(time.monotonic() - t0, 3), ts=round(time.time(), 3))
        self._emit(event)
        return self._broken is None

    def _retry_recovery(self) -> bool:
        if time.monotonic() < self._retry_at:
            return False
        return self._replace({"type": "event", "event": "watchdog", "model": self._name(), "retry": True})

    def _emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        for cb in list(self._listeners):
            try:
                cb(event)
            except Exception as e:
                log.warning("watchdog event listener %s failed: %s", cb, e)
