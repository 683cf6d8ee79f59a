"""A bounded hand-off queue between pipeline stages, with a drop policy and a drop counter."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

DROP_POLICIES = ("oldest", "newest", "block")


class Closed(Exception):
    """The queue was closed and is empty: the upstream stage has finished."""


class StageQueue:
    """``put`` never blocks with ``oldest`` (the oldest item is dropped: freshest data wins) or ``newest``
    (the new item is dropped); with ``block`` it waits for room (nothing lost, backpressure upstream)."""

    def __init__(self, name: str, maxsize: int = 1, drop: str = "oldest") -> None:
        if drop not in DROP_POLICIES:
            raise ValueError(f"drop policy must be one of {DROP_POLICIES}, got {drop!r}")
        self.name = name
        self.maxsize = max(1, int(maxsize))
        self.drop = drop
        self.dropped = 0
        self._items: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Any, stop: threading.Event | None = None) -> bool:
        """Add ``item``; False if it was dropped (policy ``newest``) or the queue is closed."""
        with self._cond:
            while len(self._items) >= self.maxsize and not self._closed:
                if self.drop == "oldest":
                    self._items.popleft()
                    self.dropped += 1
                elif self.drop == "newest":
                    self.dropped += 1
                    return False
                else:
                    if stop is not None and stop.is_set():
                        return False
                    self._cond.wait(0.1)
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Any | None:
        """The next item, or None after ``timeout``; raises :class:`Closed` once closed and drained."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    raise Closed
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


class InOrder:
    """Hands items on to ``downstream`` in the order several threads took them from upstream.

    With ``inflight`` > 1 a pipeline runs that many inference calls at once, one per infer thread; frames
    finish out of order, and post-processing (tracking, events, a video file) needs them in order. Each
    thread takes its next item and a ticket under one lock (:meth:`take`), and hands it back with
    :meth:`done` (None: the frame was dropped), which releases every item whose turn has come. The last
    thread to :meth:`finish` closes ``downstream``.
    """

    def __init__(self, downstream: StageQueue, takers: int) -> None:
        self.downstream = downstream
        self._take_lock = threading.Lock()
        self._out_lock = threading.Lock()
        self._ticket = 0
        self._turn = 0
        self._ready: dict[int, Any] = {}
        self._takers = takers

    def take(self, get: Any) -> tuple[int, Any] | None:
        """``get()`` (an item, or None at the end) and its ticket; None at the end."""
        with self._take_lock:
            item = get()
            if item is None:
                return None
            self._ticket += 1
            return self._ticket - 1, item

    def done(self, ticket: int, item: Any, stop: threading.Event | None = None) -> None:
        """``item`` (None: dropped) is ready; pass on the ready items whose turn it is."""
        with self._out_lock:
            self._ready[ticket] = item
            while self._turn in self._ready:
                ready = self._ready.pop(self._turn)
                self._turn += 1
                if ready is not None:
                    self.downstream.put(ready, stop)

    def finish(self) -> None:
        """One taker has stopped; the last one closes ``downstream``."""
        with self._out_lock:
            self._takers -= 1
            if self._takers <= 0:
                self.downstream.close()
