"""The thread that runs a shared model, one job at a time, and what the scheduler hands it.

The worker hands a finished call's results straight to its callers (``Job.deliver``); the scheduler waits on
the job with the watchdog's deadline, and a job that misses it is abandoned together with its worker: the
worker finishes (or hangs in) that call on its own thread, then exits and closes its model if it owns it,
while a fresh worker serves the reloaded model.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

log = logging.getLogger("edge_sdk.multistream")


@dataclass(eq=False)
class Request:
    """One caller's ``run(feeds)``: waits on ``done`` for ``outputs`` or ``error``."""

    feeds: Any
    arrays: list[np.ndarray] | None
    dequantize: bool | None
    stream: Hashable
    sig: tuple[Any, ...] | None  # None: runs alone, unstacked
    size: int  # samples along the batch axis
    t: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None

    def finish(self, outputs: dict[str, np.ndarray] | None = None, error: BaseException | None = None) -> None:
        self.outputs, self.error = outputs, error
        self.done.set()


@dataclass(eq=False)
class Job:
    """One call of the model (a batch of requests stacked, or one request's own feeds)."""

    feeds: Any
    dequantize: bool | None
    deliver: Callable[[Job], None] | None = None  # called on the worker thread when the call returns
    t0: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None
    claimed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self) -> bool:
        """True once: for whoever settles the job first (the worker handing the results over, or the scheduler
        abandoning it as stalled), so that a caller is answered exactly once."""
        with self.lock:
            if self.claimed:
                return False
            self.claimed = True
            return True


class Worker:
    """Runs jobs on ``model`` in its own daemon thread; closes the model on exit when it ``owns`` it."""

    def __init__(self, model: Any, owns: bool) -> None:
        self.model = model
        self.owns = owns
        self.abandoned = False
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="multistream-infer", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        job.t0 = time.monotonic()
        self._jobs.put(job)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                break
            try:
                job.outputs = self.model.run(job.feeds, dequantize=job.dequantize)
            except BaseException as e:  # handed to the callers
                job.error = e
            if job.deliver is not None:  # straight to the callers: one thread hand-over fewer than via the scheduler
                try:
                    job.deliver(job)
                except Exception as e:  # pragma: no cover - the scheduler then answers them
                    log.warning("handing results over failed: %s", e)
            job.done.set()
            if self.abandoned:
                break
        if self.owns:
            try:
                self.model.close()
            except Exception as e:  # pragma: no cover - closing must not raise on a daemon thread
                log.warning("closing %s failed: %s", self.model, e)

    def stop(self, *, abandon: bool = False) -> None:
        """Let the thread end after its current job (``abandon``: that job is stalled and nobody waits on it)."""
        self.abandoned = self.abandoned or abandon
        self._jobs.put(None)

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
