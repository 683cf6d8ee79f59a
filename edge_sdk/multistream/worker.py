"""The lanes of a shared model: each a thread that takes its next call from the queue itself and runs it.

A lane takes the next batch of requests (``take``), runs it, and hands the results to the callers and the
books (``settle``) on its own thread: a call costs one thread hand-over each way (caller -> lane -> caller)
and none through a scheduler, which on a machine whose cores are all busy with inference can cost
milliseconds per wake-up. The watchdog watches the calls in flight from its own thread; a call past its
deadline is abandoned together with its lane: the lane finishes (or hangs in) that call on its own thread,
then exits and closes its model if it owns it, while fresh lanes serve the reloaded model.
"""

from __future__ import annotations

import logging
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
    t0: float = 0.0
    t_done: float = 0.0
    cpu_s: float = 0.0  # CPU time of the lane's thread in the call (the runtime's own threads not counted)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None
    claimed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self) -> bool:
        """True once: for whoever settles the job first (the lane handing the results over, or the watchdog
        abandoning it as stalled), so that a caller is answered exactly once."""
        with self.lock:
            if self.claimed:
                return False
            self.claimed = True
            return True


@dataclass(eq=False)
class Flight:
    """A call running on a lane: its job, the requests it answers, and the watchdog's limit for it (seconds)."""

    job: Job
    batch: list[Request]
    lane: Lane
    deadline: float | None


class Lane:
    """Runs calls of ``model`` in its own daemon thread, one at a time, taking each with ``take(lane)`` (None:
    stop) and handing it to ``settle(flight)``; closes the model on exit when it ``owns`` it."""

    def __init__(
        self,
        model: Any,
        owns: bool,
        take: Callable[[Lane], Flight | None],
        settle: Callable[[Flight], None],
    ) -> None:
        self.model = model
        self.owns = owns
        self.abandoned = False
        self._take, self._settle = take, settle
        self.thread = threading.Thread(target=self._loop, name="multistream-lane", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while not self.abandoned:
                flight = self._take(self)
                if flight is None:
                    break
                job = flight.job
                if job.error is None:  # stacking the batch may have failed already
                    cpu0 = time.thread_time()
                    try:
                        job.outputs = self.model.run(job.feeds, dequantize=job.dequantize)
                    except BaseException as e:  # handed to the callers
                        job.error = e
                    job.cpu_s = time.thread_time() - cpu0
                job.t_done = time.monotonic()
                try:
                    self._settle(flight)
                except Exception as e:  # pragma: no cover - the lane must go on serving
                    log.warning("handing results over failed: %s", e)
        finally:
            if self.owns:
                try:
                    self.model.close()
                except Exception as e:  # pragma: no cover - closing must not raise on a daemon thread
                    log.warning("closing %s failed: %s", self.model, e)

    def abandon(self) -> None:
        """Let the thread end after its current call (stalled, or its backend is being replaced)."""
        self.abandoned = True

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
