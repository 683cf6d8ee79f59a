"""What each camera's pipeline feeds the service: the latest annotated frame (for ``/streams/<name>.mjpg``), its
events (for ``/events`` and ``/snapshots``), and the wrappers that tag the shared sinks' lines with the stream.

:class:`StreamSink` is one more sink of a camera's :class:`~edge_sdk.Pipeline`; like the live view it keeps only
a reference to the newest annotated frame and encodes a JPEG only when someone watches, at most once per frame,
in the HTTP server's threads. An analytics event's snapshot (the annotated frame it happened on) is encoded at
once (a few ms, once per event) and kept in memory with the last :data:`EVENTS_KEPT` events.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from edge_sdk.sinks.base import Sink

log = logging.getLogger("edge_sdk.serve")
#: recent events kept for ``GET /events`` (and their snapshots)
EVENTS_KEPT = 200
JPEG_QUALITY = 80


class EventLog:
    """The recent events of every stream, numbered from 1 (``?since=N`` gives those after N), with snapshots."""

    def __init__(self, keep: int = EVENTS_KEPT) -> None:
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self._snapshots: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._keep = keep
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, stream: str, event: dict[str, Any], snapshot: bytes | None = None) -> dict[str, Any]:
        with self._lock:
            n = next(self._ids)
            item = {"id": n, "stream": stream, "ts": event.get("ts") or round(time.time(), 4), **event}
            item["id"], item["stream"] = n, stream
            if snapshot is not None:
                name = f"{stream}-{n}.jpg"
                item["snapshot"] = f"/snapshots/{name}"
                self._snapshots[name] = snapshot
                while len(self._snapshots) > self._keep:
                    self._snapshots.popitem(last=False)
            self._events.append(item)
            return item

    def since(self, after: int = 0, limit: int = EVENTS_KEPT) -> list[dict[str, Any]]:
        with self._lock:
            found = [e for e in self._events if e["id"] > after]
        return found[-limit:]

    def snapshot(self, name: str) -> bytes | None:
        with self._lock:
            return self._snapshots.get(name)

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._events[-1]["id"] if self._events else 0


class StreamSink(Sink):
    """The service's view of one camera: newest annotated frame, result times, events (to ``on_event``)."""

    kind = "serve"
    needs_image = True

    def __init__(self, name: str, events: EventLog, on_event: Callable[[str, dict[str, Any]], None] | None = None):
        self.name = name
        self.events = events
        self.on_event = on_event
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] = (-1, b"")
        self.closed = threading.Event()
        self.last_result: float | None = None  # monotonic time of the last result
        self.size: tuple[int, int] | None = None  # (width, height) of the frames
        self.clients = 0
        self._cv2: Any = None

    def open(self, info: dict[str, Any]) -> None:
        from edge_sdk.sources._opencv import import_cv2

        self._cv2 = import_cv2()

    def write(self, frame: Any, result: Any, event: dict[str, Any], image: np.ndarray | None) -> None:
        if image is None:
            return
        with self._cond:
            self._image = image
            self._seq += 1
            self.last_result = time.monotonic()
            self.size = (image.shape[1], image.shape[0])
            self._cond.notify_all()

    def write_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind not in ("event", "source"):
            return
        snap = None
        if kind == "event" and self._image is not None:
            snap = self._encode(self._image)
        self.events.add(self.name, event, snap)
        if self.on_event is not None:
            self.on_event(self.name, event)

    def close(self) -> None:
        self.closed.set()
        with self._cond:
            self._cond.notify_all()

    def _encode(self, image: np.ndarray) -> bytes | None:
        cv2 = self._cv2
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        return buf.tobytes() if ok else None

    def latest_jpeg(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The JPEG of the newest frame with sequence > ``after`` (encoded once), or None on timeout or close."""
        with self._cond:
            if self._seq <= after and not self._cond.wait_for(lambda: self._seq > after or self.closed.is_set(),
                                                              timeout):  # fmt: skip
                return None
            if self._image is None or self._seq <= after:
                return None
            seq, image = self._seq, self._image
            if self._jpeg[0] == seq:
                return self._jpeg
        jpg = self._encode(image)
        if jpg is None:
            return None
        self._jpeg = (seq, jpg)
        return self._jpeg


class Tagged(Sink):
    """A sink shared in spirit by every camera (jsonl, mqtt): each line it gets carries ``"stream": name``."""

    def __init__(self, inner: Sink, name: str) -> None:
        self.inner, self.name = inner, name
        self.kind, self.needs_image = inner.kind, inner.needs_image

    def open(self, info: dict[str, Any]) -> None:
        self.inner.open({**info, "stream": self.name})

    def write(self, frame: Any, result: Any, event: dict[str, Any], image: Any) -> None:
        self.inner.write(frame, result, {"stream": self.name, **event}, image)

    def write_event(self, event: dict[str, Any]) -> None:
        self.inner.write_event({"stream": self.name, **event})

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        self.inner.write_metrics({"stream": self.name, **metrics})

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"<{self.name}: {self.inner!r}>"


class RawFrames(Sink):
    """A sink that gets the camera's own picture instead of the annotated one (``record: {annotated: false}``)."""

    needs_image = True

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.kind = inner.kind

    def open(self, info: dict[str, Any]) -> None:
        self.inner.open(info)

    def write(self, frame: Any, result: Any, event: dict[str, Any], image: Any) -> None:
        self.inner.write(frame, result, event, None if frame is None else frame.data)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"<raw {self.inner!r}>"


class LoopTime(Sink):
    """For a sink that places frames by their file position (clips): a looping file's position keeps growing
    across loops instead of going back to 0, so a clip around the end of one pass still ends."""

    def __init__(self, inner: Sink) -> None:
        self.inner, self.kind, self.needs_image = inner, inner.kind, inner.needs_image
        self._offset = self._last = 0.0

    def open(self, info: dict[str, Any]) -> None:
        self.inner.open(info)

    def write(self, frame: Any, result: Any, event: dict[str, Any], image: Any) -> None:
        meta = getattr(frame, "meta", None) or {}
        if "pos_ms" in meta:
            import dataclasses

            if meta["pos_ms"] + self._offset < self._last:  # the file started again
                self._offset = self._last + 1.0
            self._last = meta["pos_ms"] + self._offset
            frame = dataclasses.replace(frame, meta={**meta, "pos_ms": self._last})
        self.inner.write(frame, result, event, image)

    def write_event(self, event: dict[str, Any]) -> None:
        self.inner.write_event(event)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        self.inner.write_metrics(metrics)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"<loop time {self.inner!r}>"
