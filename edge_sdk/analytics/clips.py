"""Event clips: an mp4 around each zone / line event, with pre- and post-roll, and a JPEG snapshot.

:class:`ClipSink` is a sink (``Pipeline(..., sinks=[ClipSink("clips/")])``, ``edge-sdk run --clips clips/``):
it keeps the last ``pre`` seconds of frames (references, no copies or encoding), and when an analytics
event it triggers on arrives (``enter`` and ``cross`` by default) it starts a clip with those frames, takes
a JPEG of the event's frame, and keeps recording until ``post`` seconds after the last event of the clip
(another event while recording extends it). Encoding runs in the sink's own thread, never in the
pipeline's post stage. Clips keep real time: a file's frames are placed by their position, a live source's
by capture time (frames the pipeline dropped are filled with the previous picture, as the video sink does).
After each clip, the oldest clips go until the folder's clips are under ``max_bytes`` and ``max_age_s``.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from edge_sdk.errors import SinkError
from edge_sdk.sinks.base import Sink

log = logging.getLogger("edge_sdk.analytics")
PREFIX = "clip-"


class ClipSink(Sink):
    """Clips of ``pre`` + ``post`` seconds around analytics events in ``folder`` (which must exist).

    ``events``: the event kinds that start or extend a clip; ``annotated``: record the annotated frames
    (boxes, zones, ids) instead of the camera's; ``max_bytes`` / ``max_age_s``: retention (None: no limit);
    ``fps``: the clip's rate (default the source's, 30 when it has none). ``clips``: one dict per finished
    clip (``path``, ``snapshot``, ``event``, ``frames``, ``duration_s``, ``bytes``).
    """

    kind = "clips"

    def __init__(
        self,
        folder: str | Path,
        *,
        pre: float = 2.0,
        post: float = 3.0,
        events: Sequence[str] = ("enter", "cross"),
        annotated: bool = False,
        max_bytes: int | None = 1 << 30,
        max_age_s: float | None = 7 * 24 * 3600.0,
        fps: float | None = None,
    ) -> None:
        if pre < 0 or post < 0:
            raise SinkError(f"clips: pre and post must be >= 0 seconds, got pre={pre} post={post}")
        self.folder = Path(folder)
        self.pre, self.post = float(pre), float(post)
        self.triggers = tuple(events)
        self.needs_image = bool(annotated)
        self.max_bytes, self.max_age_s, self.fps = max_bytes, max_age_s, fps
        self.clips: list[dict[str, Any]] = []
        self._ring: collections.deque[tuple[float, Any, Any]] = collections.deque()
        self._end: float | None = None  # stream time the recording clip ends at (None: not recording)
        self._q: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._info: dict[str, Any] = {}
        self._n = 0

    def open(self, info: dict[str, Any]) -> None:
        from edge_sdk.sources._opencv import import_cv2

        if not self.folder.is_dir():
            raise SinkError(f"clips: the folder {self.folder} does not exist (sinks create no folders)")
        self._cv2 = import_cv2()
        self._info = dict(info)
        self.fps = float(self.fps or info.get("fps") or 30.0)
        self._worker = threading.Thread(target=self._work, name="clips", daemon=True)
        self._worker.start()

    @staticmethod
    def _time(frame: Any) -> float:
        meta = getattr(frame, "meta", None) or {}
        return meta["pos_ms"] / 1000.0 if "pos_ms" in meta else float(frame.capture_ts)

    def write(self, frame: Any, result: Any, event: dict[str, Any], image: Any) -> None:
        if frame is None or event.get("type") != "result":
            return
        pic = image if self.needs_image else frame.data
        if pic is None:
            return
        t = self._time(frame)
        self._ring.append((t, frame, pic))
        while self._ring and self._ring[0][0] < t - self.pre - 1e-6:
            self._ring.popleft()
        if self._end is None:
            return
        if t <= self._end + 1e-6:
            self._q.put(("frame", frame, pic))
        if t >= self._end - 1e-6:
            self._end = None
            self._q.put(("end",))

    def write_event(self, event: dict[str, Any]) -> None:
        if event.get("type") != "event" or event.get("event") not in self.triggers or not self._ring:
            return
        t, frame, pic = self._ring[-1]  # the event's frame: the pipeline writes events right after their result
        if self._end is not None:
            self._end = max(self._end, t + self.post)
            self._q.put(("event", event))
            return
        self._n += 1
        where = event.get("zone") or event.get("line") or ""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(event.get("ts") or time.time()))
        name = f"{PREFIX}{stamp}-{self._n:04d}-{event['event']}-{where}-{event.get('track_id', '')}"
        self._q.put(("start", self.folder / f"{name}.mp4", [(f, p) for _, f, p in self._ring], pic, event))
        if self.post <= 0:
            self._q.put(("end",))
        else:
            self._end = t + self.post

    def close(self) -> None:
        if self._end is not None:
            self._end = None
            self._q.put(("end",))
        self._q.put(None)
        if self._worker is not None:
            self._worker.join(timeout=60)

    # -- the clip thread ---------------------------------------------------------------------------
    def _work(self) -> None:
        from edge_sdk.sinks.video import VideoFileSink

        writer: Any = None
        clip: dict[str, Any] = {}
        while True:
            item = self._q.get()
            if item is None:
                return
            try:
                if item[0] == "start":
                    _, path, frames, pic, event = item
                    live = bool(self._info.get("live"))
                    writer = VideoFileSink(str(path), fps=self.fps, realtime=live)
                    writer.open(self._info)
                    snap = path.with_suffix(".jpg")
                    self._cv2.imwrite(str(snap), self._cv2.cvtColor(pic, self._cv2.COLOR_RGB2BGR))
                    clip = {"path": path, "snapshot": snap, "event": event, "events": [event]}
                    for f, p in frames:
                        writer.write(f, None, {}, p)
                elif item[0] == "frame" and writer is not None:
                    writer.write(item[1], None, {}, item[2])
                elif item[0] == "event" and writer is not None:
                    clip["events"].append(item[1])
                elif item[0] == "end" and writer is not None:
                    writer.realtime = False  # the clip ends at its last frame, not when this thread gets here
                    writer.close()
                    clip.update(frames=writer.frames, duration_s=round(writer.duration_s, 3),
                                bytes=clip["path"].stat().st_size)  # fmt: skip
                    self.clips.append(clip)
                    writer, clip = None, {}
                    self._prune()
            except Exception as e:  # a full disk must not stop the pipeline
                log.warning("clips: %s", e)
                writer, clip = None, {}

    def _prune(self) -> None:
        """Delete the oldest clips (mp4 + jpg) until the rest are within ``max_age_s`` and ``max_bytes``."""
        files = sorted(self.folder.glob(f"{PREFIX}*.mp4"), key=lambda p: p.stat().st_mtime)
        now = time.time()
        sizes = {p: p.stat().st_size + (p.with_suffix(".jpg").stat().st_size if p.with_suffix(".jpg").exists()
                                        else 0) for p in files}  # fmt: skip
        total = sum(sizes.values())
        for p in files[:-1]:  # the newest clip stays
            old = self.max_age_s is not None and now - p.stat().st_mtime > self.max_age_s
            big = self.max_bytes is not None and total > self.max_bytes
            if not (old or big):
                continue
            total -= sizes[p]
            p.unlink(missing_ok=True)
            p.with_suffix(".jpg").unlink(missing_ok=True)
            log.info("clips: removed %s (%s)", p.name, "age" if old else "size")

    def __repr__(self) -> str:
        return f"<ClipSink {self.folder} pre {self.pre}s post {self.post}s>"
