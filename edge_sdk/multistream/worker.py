"""The thread that runs a shared model, one job at a time, and what the scheduler hands it.

The scheduler waits on a job with the watchdog's deadline; a job that misses it is abandoned together with
its worker: the worker finishes (or hangs in) that call on its own thread, then exits and closes its
model if it owns it, while a fresh worker serves the reloaded model.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

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
    t0: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None


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
            except BaseException as e:  # handed to the callers by the scheduler
                job.error = e
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
