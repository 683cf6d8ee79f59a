"""What every source is: :class:`Frame` items with a capture timestamp, and the :class:`Source` contract.

A source is started, read with a timeout, and stopped (or used as a context manager)::

    with open_source("synthetic:?fps=30") as src:
        frame = src.read(timeout=1.0)       # Frame | None (None: nothing within the timeout, or ended)
        frame.data, frame.capture_ts        # ndarray, time.monotonic() when it was captured

``frame.data`` is uint8 (H, W, 3) RGB for video and float32 (n,) mono for audio. ``capture_ts``
is always :func:`time.monotonic`, so a pipeline can measure the age of a result against it.

Counters: ``dropped`` (frames overwritten before anyone read them: latest-frame-wins) and
``overflows`` (audio buffer overruns). Lifecycle events (``DISCONNECTED``, ``RECONNECTED``,
``EOS``) go to the ``events`` queue and to the optional ``on_event`` callback.
"""

from __future__ import annotations

import enum
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np


@dataclass
class Frame:
    """One item a source produced: an image or an audio window, with when and which it was."""

    data: np.ndarray
    capture_ts: float  # time.monotonic() at capture
    index: int  # 0, 1, 2, ... in capture order (gaps = dropped)
    meta: dict[str, Any] = field(default_factory=dict)


class SourceEvent(str, enum.Enum):
    DISCONNECTED = "DISCONNECTED"
    RECONNECTED = "RECONNECTED"
    EOS = "EOS"
    UNREADABLE = "UNREADABLE"  # one item of a file source (e.g. an image in a folder) could not be read


@dataclass
class Event:
    """A lifecycle event of a source: what happened, when (monotonic and wall clock), and why."""

    kind: SourceEvent
    ts: float
    wall_ts: float
    source: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind.value, "ts": self.wall_ts, "source": self.source, "detail": self.detail}


class Source:
    """Base class of every source. Subclasses implement :meth:`_start`, :meth:`_read` and :meth:`_stop`.

    ``is_live``: a camera/stream/microphone (frames happen whether or not we read them) as opposed
    to a file played at our pace. Thread-safe: one reader thread, any thread may ``stop()``.
    """

    #: a short kind name, e.g. "synthetic", "file", "rtsp", "mic"
    kind: str = "source"
    is_live: bool = True

    def __init__(self, name: str = "", *, on_event: Callable[[Event], None] | None = None) -> None:
        self.name = name or self.kind
        self.on_event = on_event
        self.events: queue.Queue[Event] = queue.Queue(maxsize=1000)
        self.dropped = 0
        self.overflows = 0
        self.produced = 0
        self._started = False
        self._stopped = threading.Event()
        self._ended = threading.Event()

    # -- public API ----------------------------------------------------------------------------
    def start(self) -> Source:
        """Open the device/file and begin capturing; raises SourceError naming the source if it cannot."""
        if not self._started:
            self._started = True
            self._start()
        return self

    def read(self, timeout: float = 1.0) -> Frame | None:
        """The next frame, waiting at most ``timeout`` seconds; None on timeout or after the end."""
        if not self._started:
            self.start()
        if self._ended.is_set() and not self._has_pending():
            return None
        return self._read(timeout)

    def stop(self) -> None:
        """Stop capturing and release the device; safe to call twice and from another thread."""
        if not self._stopped.is_set():
            self._stopped.set()
            if self._started:
                self._stop()

    @property
    def ended(self) -> bool:
        """True once the source has nothing more to give (end of file, or stopped) and all was read."""
        return (self._ended.is_set() and not self._has_pending()) or self._stopped.is_set()

    def stats(self) -> dict[str, Any]:
        return {"source": self.name, "kind": self.kind, "produced": self.produced,
                "dropped": self.dropped, "overflows": self.overflows}  # fmt: skip

    def __enter__(self) -> Source:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Frame]:
        """Frames until the source ends (timeouts are waited through)."""
        while not self.ended:
            f = self.read(timeout=0.5)
            if f is not None:
                yield f

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- for subclasses -------------------------------------------------------------------------
    def _start(self) -> None:
        raise NotImplementedError

    def _read(self, timeout: float) -> Frame | None:
        raise NotImplementedError

    def _stop(self) -> None:
        pass

    def _has_pending(self) -> bool:
        """Whether frames are still buffered after the end (so ``read`` still returns them)."""
        return False

    def _emit(self, kind: SourceEvent, detail: str = "") -> Event:
        ev = Event(kind, time.monotonic(), time.time(), self.name, detail)
        try:
            self.events.put_nowait(ev)
        except queue.Full:
            pass
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:  # a user's callback must not kill capture
                pass
        if kind is SourceEvent.EOS:
            self._ended.set()
        return ev
