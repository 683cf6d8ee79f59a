"""``BatchingModel``: one loaded model shared by many threads (one per stream), batched or fairly scheduled.

A ``Model`` runs from one thread at a time. ``BatchingModel`` lets many callers (each ``Pipeline``'s infer
thread) call ``run(feeds)`` at once: they queue per stream, and one scheduler thread serves them. When the
model takes a batch (dynamic, or fixed at N > 1: see :mod:`~edge_sdk.multistream.batching_ops`) up to
``max_batch`` requests of different streams are stacked into one call and the outputs split back; otherwise
the streams are served one call each, round-robin, so that no stream starves. Inference runs in a worker
thread watched by the watchdog (:mod:`~edge_sdk.multistream.watchdog`): a stalled call is abandoned, its
callers and every request that waited meanwhile get :class:`~edge_sdk.errors.InferenceStalledError` (a
pipeline drops that frame), the backend is reloaded, and a ``{"type": "event", "event": "watchdog"}`` is
passed to the listeners.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Hashable
from typing import Any, Callable

import numpy as np

from edge_sdk.errors import ModelClosedError
from edge_sdk.multistream import batching_ops as ops
from edge_sdk.multistream.lanes import lane_threads, resolve_lanes
from edge_sdk.multistream.recovery import RecoveryMixin
from edge_sdk.multistream.view import StreamView
from edge_sdk.multistream.watchdog import CallTimes, WatchdogOptions, default_loader
from edge_sdk.multistream.worker import Flight, Job, Lane, Request

log = logging.getLogger("edge_sdk.multistream")
ACTIVE_S = 2.0  # a stream that submitted within this many seconds is waited for (up to the window) when batching


class BatchingModel(RecoveryMixin):
    """Thread-safe proxy of a loaded :class:`~edge_sdk.Model` (or a path, then loaded and owned) for many streams.

    ``max_batch``: requests per call when the batch axis is dynamic (default 8; 1 turns batching off);
    ``window_ms``: how long a batch waits for the other active streams (default 2 ms with one lane, none with
    more: a lane waiting for a fuller batch leaves its cores idle, measured 100 vs 118 fps at 8 streams);
    ``lanes``: calls run at once, each on its own copy of the model with its share of the cores (``"auto"``,
    the default: 2 for a CPU model on a machine with 2+ cores, see :mod:`~edge_sdk.multistream.lanes`; 1: the
    model as given, one call at a time); ``watchdog``: True (default), False, a dict or
    :class:`~edge_sdk.multistream.watchdog.WatchdogOptions`; ``on_event``: called with each
    watchdog event; ``loader``: ``mode -> Model`` used to replace a stalled model (mode ``"restart"`` or
    ``"cpu"``; default: reload the file). ``close()`` closes the model only when this proxy owns it (it was
    given a path, ``owns_model=True``, or it is a replacement the watchdog loaded).
    """

    def __init__(
        self,
        model: Any,
        *,
        max_batch: int | None = None,
        window_ms: float | None = None,
        lanes: int | str | None = "auto",
        watchdog: WatchdogOptions | bool | dict[str, Any] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        loader: Callable[[str], Any] | None = None,
        owns_model: bool | None = None,
    ) -> None:
        loaded = not hasattr(model, "run")
        if loaded:
            from edge_sdk.loader import load

            model = load(model)
        self._model = model
        self._owns = loaded if owns_model is None else owns_model
        self.plan = ops.batch_plan(model, max_batch)
        self.watchdog = WatchdogOptions.of(watchdog)
        self.times = CallTimes(self.watchdog)
        self.lanes = resolve_lanes(lanes, model)
        window_ms = (2.0 if self.lanes == 1 else 0.0) if window_ms is None else window_ms
        self.window_s = max(0.0, window_ms / 1000.0)
        self._loader = loader or default_loader(model, self.watchdog.recovery, lane_threads(self.lanes))
        self._listeners: list[Callable[[dict[str, Any]], None]] = [on_event] if on_event else []
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)
        self._cv = threading.Condition()
        self._pending: collections.OrderedDict[Hashable, collections.deque[Request]] = collections.OrderedDict()
        self._n_pending = 0
        self._seen: dict[Hashable, float] = {}
        self._closed = False
        self._broken: str | None = None  # why the last recovery failed; requests are dropped until one works
        self._retry_at = 0.0
        self._last_done = 0.0  # monotonic time the last call's results were handed back
        self.counters = {"calls": 0, "requests": 0, "samples": 0, "stalls": 0, "restarts": 0, "dropped": 0,
                         "max_pending": 0, "max_inflight": 0, "infer_cpu_s": 0.0}  # fmt: skip
        self._flights: list[Flight] = []  # calls running now (lock held to read or change)
        self._closing = threading.Event()
        try:
            self._active_lanes = self._start_lanes(model, "restart")
        except BaseException:
            if self._owns:
                model.close()
            raise
        if self.lanes > 1 and self._owns:  # the copy loaded here would run no call: each lane has its own
            model.close()
            self._model = self._active_lanes[0].model
        self._thread = threading.Thread(target=self._watch_loop, name="multistream-watchdog", daemon=True)
        self._thread.start()

    # -- what a Pipeline reads from its model ----------------------------------------------------
    @property
    def model(self) -> Any:
        """The model serving now (a replacement after a watchdog restart)."""
        return self._model

    @property
    def inputs(self) -> list[Any]:
        return self._model.inputs

    @property
    def outputs(self) -> list[Any]:
        return self._model.outputs

    @property
    def path(self) -> Any:
        return self._model.path

    @property
    def metadata(self) -> Any:
        return getattr(self._model, "metadata", None)

    def __getattr__(self, name: str) -> Any:  # format, backend, describe, dequantize, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._model, name)

    def __repr__(self) -> str:
        return f"<BatchingModel batch={self.plan.capacity}{' fixed' if self.plan.fixed else ''} of {self._model!r}>"

    def add_listener(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Also pass each watchdog event to ``callback`` (it must not block)."""
        self._listeners.append(callback)

    def stream(self, name: Hashable) -> StreamView:
        """A model-like view whose calls are scheduled as stream ``name`` (give one to each Pipeline)."""
        return StreamView(self, name)

    # -- running ---------------------------------------------------------------------------------
    def run(self, feeds: Any, *, dequantize: bool | None = None, stream: Hashable | None = None) -> dict[str, Any]:
        """Queue one request as ``stream`` (default: the calling thread) and wait for its outputs."""
        arrays = ops.as_list(self._model, feeds)
        sig = ops.signature(self._model, arrays, dequantize) if self.plan.batches else None
        size = int(arrays[0].shape[0]) if sig is not None and arrays else 1
        key = stream if stream is not None else threading.get_ident()
        req = Request(feeds, arrays if sig is not None else None, dequantize, key, sig, size)
        with self._cv:
            if self._closed:
                raise ModelClosedError(f"the shared model {self._name()} is closed")
            self._pending.setdefault(key, collections.deque()).append(req)
            self._n_pending += 1
            self.counters["max_pending"] = max(self.counters["max_pending"], self._n_pending)
            self._seen[key] = req.t
            self._cv.notify_all()
        while not req.done.wait(0.5):
            if not self._thread.is_alive():
                raise ModelClosedError(f"the shared model {self._name()} is closed")
        if req.error is not None:
            raise req.error
        assert req.outputs is not None
        return req.outputs

    def __call__(self, x: Any) -> Any:
        outs = self.run(x)
        return next(iter(outs.values())) if len(outs) == 1 else outs

    def warmup(self, runs: int = 1, *, stream: Hashable | None = None) -> None:
        """``runs`` calls on zeros through the scheduler (the first call of a runtime is slow)."""
        feeds = [np.zeros(s.concrete_shape(), dtype=s.dtype) for s in self._model.inputs]
        for _ in range(runs):
            self.run(feeds, dequantize=False, stream=stream)

    def pending(self) -> int:
        """Requests waiting now (bounded by the callers: a Pipeline has at most one in flight)."""
        with self._cv:
            return self._n_pending

    def stats(self) -> dict[str, Any]:
        """Calls, requests, mean batch, stalls, restarts, dropped requests, pending now and at most, calls in flight
        at most, lanes and their threads (None: the runtime's default), p99 of a call, and ``infer_cpu_s``: the CPU
        time the lanes' threads spent in the model's calls that succeeded (what inference costs the cores when
        each lane runs its calls on its own thread; a runtime's own worker threads are not in it)."""
        c = dict(self.counters)
        p99 = self.times.p99()
        c["infer_cpu_s"] = round(c["infer_cpu_s"], 4)
        c.update(mean_batch=round(c["samples"] / c["calls"], 2) if c["calls"] else 0.0, pending=self.pending(),
                 batch_capacity=self.plan.capacity, lanes=len(self._active_lanes) or self.lanes,
                 threads_per_lane=lane_threads(self.lanes),
                 call_p99_ms=None if p99 is None else round(p99 * 1000, 2),
                 backend=getattr(self._model, "backend", None), broken=self._broken)  # fmt: skip
        return c

    # -- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the scheduler (waiting callers get ModelClosedError); close the model if this proxy owns it."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
        self._closing.set()
        self._thread.join(timeout=10)
        for w in self._active_lanes:
            w.join(timeout=5)

    def __enter__(self) -> BatchingModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lanes and watchdog ------------------------------------------------------------------------
    def _take(self, lane: Lane) -> Flight | None:
        """(lane thread) The lane's next call: wait for requests, gather a batch, pick it; None: stop."""
        with self._cv:
            while True:
                if self._closed or lane.abandoned:
                    return None
                if self._n_pending and self._broken is None:
                    self._gather()
                    if self._closed or lane.abandoned:
                        return None
                    batch = self._pick(self._batch_cap())
                    if batch:
                        break
                self._cv.wait(0.25)
            first = batch[0]
            flight = Flight(Job(None, first.dequantize, t0=time.monotonic()), batch, lane, self.times.deadline())
            self._flights.append(flight)
            self.counters["max_inflight"] = max(self.counters["max_inflight"], len(self._flights))
        try:
            flight.job.feeds = first.feeds if first.sig is None else ops.stack(
                [r.arrays for r in batch], self.plan.capacity, self.plan.fixed)  # type: ignore[misc]  # fmt: skip
        except Exception as e:  # the callers get it
            flight.job.error = e
        return flight

    def _settle(self, flight: Flight) -> None:
        """(lane thread) Answer a finished call's callers and keep the books; a failed batch is queued again to
        run request by request (one caller's bad input must not fail the others)."""
        job, batch = flight.job, flight.batch
        if not job.claim():  # the watchdog abandoned it: its callers were answered then
            return
        failed_batch = job.error is not None and len(batch) > 1
        if not failed_batch:
            self._answer(job, batch)
        with self._cv:
            if flight in self._flights:
                self._flights.remove(flight)
            self._last_done = time.monotonic()
            self.times.add(job.t_done - job.t0)
            if failed_batch:
                self._put_back(batch, alone=True)
            else:
                self.counters["calls"] += 1
                self.counters["requests"] += len(batch)
                self.counters["samples"] += sum(r.size for r in batch)
                self.counters["infer_cpu_s"] += job.cpu_s
            self._cv.notify_all()

    def _watch_loop(self) -> None:
        """The watchdog: abandon a call past its deadline (the backend is replaced); while no backend works,
        retry its recovery and drop the requests that come meanwhile."""
        try:
            while not self._closing.wait(self._tick()):
                with self._cv:
                    now = time.monotonic()
                    late = [f for f in self._flights if f.deadline is not None and now - f.job.t0 > f.deadline]
                    stalled = next((f for f in late if f.job.claim()), None)
                    if stalled is not None:
                        self._flights.remove(stalled)
                    waiting: list[Request] = []
                    if stalled is None and self._broken is not None and self._n_pending:
                        waiting = [r for q in self._pending.values() for r in q]
                        self._pending.clear()
                        self._n_pending = 0
                if stalled is not None:
                    self._stalled(stalled.batch, stalled.job, stalled.deadline)
                elif waiting and not self._retry_recovery():
                    self._drop(waiting, f"the backend could not be restarted after a stall ({self._broken})")
                elif waiting:
                    self._requeue(waiting)
        finally:
            with self._cv:
                for f in self._flights:  # nobody waits for those calls any more
                    f.lane.abandon()
                    if f.job.claim():
                        for r in f.batch:
                            r.finish(error=ModelClosedError(f"the shared model {self._name()} is closed"))
                self._flights.clear()
                self._fail_pending(lambda: ModelClosedError(f"the shared model {self._name()} is closed"))

    def _tick(self) -> float:
        """How long the watchdog may sleep: until the nearest call's deadline; 0.25 s at most (0.05 s while no
        backend works, so that requests are dropped soon)."""
        with self._cv:
            ends = [f.job.t0 + f.deadline for f in self._flights if f.deadline is not None]
        cap = 0.05 if self._broken is not None else 0.25
        return max(0.001, min([cap, *(e - time.monotonic() for e in ends)]))

    def _requeue(self, batch: list[Request]) -> None:
        """Put ``batch`` back at the head of its streams' queues."""
        with self._cv:
            self._put_back(batch)
            self._cv.notify_all()

    def _put_back(self, batch: list[Request], alone: bool = False) -> None:
        """(lock held) ``batch`` back at the head of its streams' queues (``alone``: each then runs on its own)."""
        for r in reversed(batch):
            if alone:
                r.sig = None
            self._pending.setdefault(r.stream, collections.deque()).appendleft(r)
            self._n_pending += 1

    def _batch_cap(self) -> int:
        """(lock held) Requests per call: the plan's capacity, shared out over the lanes so that each gets work."""
        if len(self._active_lanes) <= 1:
            return self.plan.capacity
        flying = sum(len(f.batch) for f in self._flights)
        return min(self.plan.capacity, max(1, -(-(self._n_pending + flying) // len(self._active_lanes))))

    def _gather(self) -> None:
        """(lock held) Wait up to the window for every active stream to have a request, or a full batch."""
        if not self.plan.batches or self.window_s <= 0:
            return
        now = time.monotonic()
        for key in [k for k, t in self._seen.items() if now - t > ACTIVE_S and k not in self._pending]:
            del self._seen[key]
        # the window runs from the later of the oldest request and the end of the last call: the streams that
        # just got their results get ``window_ms`` to come back, else two halves of the streams would alternate
        oldest = min(q[0].t for q in self._pending.values() if q)
        end = max(oldest, self._last_done) + self.window_s
        flying = {r.stream for f in self._flights for r in f.batch}  # in another lane's call: not coming now
        while not self._closed and self._n_pending < self._batch_cap():
            waiting = {k for k, q in self._pending.items() if q}
            if len(waiting | flying) >= len(self._seen):
                return
            left = end - time.monotonic()
            if left <= 0:
                return
            self._cv.wait(left)

    def _pick(self, cap: int) -> list[Request]:
        """(lock held) Up to ``cap`` samples of compatible requests, one per stream per round, round-robin."""
        batch, used, served = [], 0, []
        lead: tuple[Any, ...] | None = None
        while used < cap:
            took = False
            for key, q in self._pending.items():
                if not q:
                    continue
                req = q[0]
                if batch and (lead is None or req.sig != lead or used + req.size > cap):
                    continue
                q.popleft()
                batch.append(req)
                served.append(key)
                used += req.size
                took = True
                lead = req.sig if len(batch) == 1 else lead
                if lead is None or used >= cap:
                    break
            if not took or lead is None:
                break
        self._n_pending -= len(batch)
        for key in served:  # served streams go to the back of the line
            if key in self._pending:
                if self._pending[key]:
                    self._pending.move_to_end(key)
                else:
                    del self._pending[key]
        return batch

    def _fail_pending(self, make_error: Callable[[], BaseException]) -> int:
        """(lock held) Fail every waiting request; how many."""
        n = 0
        for q in self._pending.values():
            while q:
                q.popleft().finish(error=make_error())
                n += 1
        self._pending.clear()
        self._n_pending = 0
        return n

    def _start_lanes(self, model: Any, mode: str) -> list[Lane]:
        """One lane: ``model`` itself; more: a copy per lane loaded in ``mode`` (see :mod:`.lanes`)."""
        if self.lanes == 1:
            return [Lane(model, self._owns, self._take, self._settle)]
        lanes: list[Lane] = []
        try:
            for _ in range(self.lanes):
                lanes.append(Lane(self._loader(mode), True, self._take, self._settle))
        except BaseException:
            for lane in lanes:
                lane.abandon()
            with self._cv:
                self._cv.notify_all()
            raise
        return lanes

    def _answer(self, job: Job, batch: list[Request]) -> None:
        first = batch[0]
        if job.error is not None:
            first.finish(error=job.error)
            return
        assert job.outputs is not None
        parts = [job.outputs] if first.sig is None else ops.split(job.outputs, [r.size for r in batch])
        for r, out in zip(batch, parts):
            r.finish(outputs=out)
