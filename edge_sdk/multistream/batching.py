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
from edge_sdk.multistream.recovery import RecoveryMixin
from edge_sdk.multistream.view import StreamView
from edge_sdk.multistream.watchdog import CallTimes, WatchdogOptions, default_loader
from edge_sdk.multistream.worker import Job, Request, Worker

log = logging.getLogger("edge_sdk.multistream")
ACTIVE_S = 2.0  # a stream that submitted within this many seconds is waited for (up to the window) when batching


class BatchingModel(RecoveryMixin):
    """Thread-safe proxy of a loaded :class:`~edge_sdk.Model` (or a path, then loaded and owned) for many streams.

    ``max_batch``: requests per call when the batch axis is dynamic (default 8; 1 turns batching off);
    ``window_ms``: how long a batch waits for the other active streams; ``watchdog``: True (default),
    False, a dict or :class:`~edge_sdk.multistream.watchdog.WatchdogOptions`; ``on_event``: called with each
    watchdog event; ``loader``: ``mode -> Model`` used to replace a stalled model (mode ``"restart"`` or
    ``"cpu"``; default: reload the file). ``close()`` closes the model only when this proxy owns it (it was
    given a path, ``owns_model=True``, or it is a replacement the watchdog loaded).
    """

    def __init__(
        self,
        model: Any,
        *,
        max_batch: int | None = None,
        window_ms: float = 2.0,
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
        self.window_s = max(0.0, window_ms / 1000.0)
        self.watchdog = WatchdogOptions.of(watchdog)
        self.times = CallTimes(self.watchdog)
        self._loader = loader or default_loader(model, self.watchdog.recovery)
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
                         "max_pending": 0}  # fmt: skip
        self._worker = Worker(model, self._owns)
        self._thread = threading.Thread(target=self._schedule_loop, name="multistream-scheduler", daemon=True)
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
        """Calls, requests, mean batch, stalls, restarts, dropped requests, pending now and at most, p99 of a call."""
        c = dict(self.counters)
        p99 = self.times.p99()
        c.update(mean_batch=round(c["samples"] / c["calls"], 2) if c["calls"] else 0.0, pending=self.pending(),
                 batch_capacity=self.plan.capacity, call_p99_ms=None if p99 is None else round(p99 * 1000, 2),
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
        self._thread.join(timeout=10)
        self._worker.stop()
        self._worker.join(timeout=5)

    def __enter__(self) -> BatchingModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scheduler -------------------------------------------------------------------------------
    def _schedule_loop(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._closed and self._n_pending == 0:
                        self._cv.wait(0.25)
                    if self._closed:
                        break
                    self._gather()
                    batch = self._pick()
                if batch:
                    self._dispatch(batch)
                    self._last_done = time.monotonic()
        finally:
            with self._cv:
                self._fail_pending(lambda: ModelClosedError(f"the shared model {self._name()} is closed"))

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
        while not self._closed and self._n_pending < self.plan.capacity:
            if sum(1 for q in self._pending.values() if q) >= len(self._seen):
                return
            left = end - time.monotonic()
            if left <= 0:
                return
            self._cv.wait(left)

    def _pick(self) -> list[Request]:
        """(lock held) Up to a batch of compatible requests, one per stream per round, round-robin."""
        cap, batch, used, served = self.plan.capacity, [], 0, []
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

    def _dispatch(self, batch: list[Request]) -> None:
        if self._broken is not None and not self._retry_recovery():
            self._drop(batch, f"the backend could not be restarted after a stall ({self._broken})")
            return
        first = batch[0]
        if first.sig is None:
            feeds = first.feeds
        else:
            feeds = ops.stack([r.arrays for r in batch], self.plan.capacity, self.plan.fixed)  # type: ignore[misc]
        job = Job(feeds, first.dequantize, deliver=lambda j: self._deliver(j, batch))
        deadline = self.times.deadline()
        self._worker.submit(job)
        if not self._wait(job, deadline) and job.claim():
            if self._closed:  # nobody waits for that call any more
                self._worker.stop(abandon=True)
                for r in batch:
                    r.finish(error=ModelClosedError(f"the shared model {self._name()} is closed"))
            else:
                self._stalled(batch, job, deadline)
            return
        job.done.wait()  # set right after the worker handed the results over
        self.times.add(time.monotonic() - job.t0)
        if job.error is not None and len(batch) > 1:  # one caller's bad input must not fail the others
            for r in batch:
                self._dispatch([r])
            return
        self.counters["calls"] += 1
        self.counters["requests"] += len(batch)
        self.counters["samples"] += sum(r.size for r in batch)
        if job.claim():  # the worker did not hand them over
            self._answer(job, batch)

    def _deliver(self, job: Job, batch: list[Request]) -> None:
        """(worker thread) Answer the callers of a finished call, unless the scheduler must (a failed batch: each
        request is re-run alone) or did (the call was abandoned as stalled)."""
        if (job.error is not None and len(batch) > 1) or not job.claim():
            return
        self._answer(job, batch)

    def _answer(self, job: Job, batch: list[Request]) -> None:
        first = batch[0]
        if job.error is not None:
            first.finish(error=job.error)
            return
        assert job.outputs is not None
        parts = [job.outputs] if first.sig is None else ops.split(job.outputs, [r.size for r in batch])
        for r, out in zip(batch, parts):
            r.finish(outputs=out)

    def _wait(self, job: Job, deadline: float | None) -> bool:
        """Wait for ``job``: False when it missed ``deadline`` or the proxy was closed meanwhile."""
        end = None if deadline is None else time.monotonic() + deadline
        while True:
            left = 0.25 if end is None else min(0.25, end - time.monotonic())
            if left <= 0:
                return job.done.is_set()
            if job.done.wait(left):
                return True
            if self._closed:
                return False
