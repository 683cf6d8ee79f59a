"""The annotated frames as a video file (OpenCV ``VideoWriter``), written to a temp name then renamed.

A file source is written frame by frame at its own rate. A live source (camera, stream, ``mode=live``
file) keeps real time: a live pipeline processes only some of the captured frames, so each result is
placed at its capture time on a constant-rate timeline (the previous picture repeated to fill the
gap, a frame arriving early for its slot skipped) and the last picture lasts until the sink is closed;
a 20 s live run gives a 20 s video, whatever fraction of the frames the model kept up with.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import SinkError
from edge_sdk.sinks.base import Sink, require_folder

FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
#: at most this many seconds of repeated picture per gap (a stalled source does not write hours of stills)
MAX_GAP_S = 60.0


class VideoFileSink(Sink):
    kind = "video"
    needs_image = True

    def __init__(
        self, target: str, *, fps: float | None = None, fourcc: str | None = None, realtime: bool | None = None
    ) -> None:
        self.path = Path(target)
        if self.path.suffix.lower() not in FOURCC:
            raise SinkError(f"video sink {target}: use one of {', '.join(FOURCC)}")
        self.fps = fps  # None: the source's rate (30 when it has none)
        self.fourcc = fourcc or FOURCC[self.path.suffix.lower()]
        self.realtime = realtime  # None: when the source is live
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._writer: Any = None
        self._cv2: Any = None
        self._t0: float | None = None  # capture time (monotonic) of the first frame written
        self._last: np.ndarray | None = None
        self.frames = 0  # frames in the file (repeats included)
        self.results = 0  # results written (each once)

    def open(self, info: dict[str, Any]) -> None:
        from edge_sdk.sources._opencv import import_cv2

        self._cv2 = import_cv2()
        if self.fps is None:
            self.fps = float(info.get("fps") or 30.0)
        if self.realtime is None:
            self.realtime = bool(info.get("live"))
        require_folder(self.path, "video")

    def write(self, frame: Any, result: Any, event: dict[str, Any], image: np.ndarray | None) -> None:
        if image is None:
            return
        cv2 = self._cv2
        if self._writer is None:
            h, w = image.shape[:2]
            self._size = (w, h)
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                raise SinkError(f"cannot write video {self.path} with codec {self.fourcc}; try an .avi file")
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        self.results += 1
        if not self.realtime:
            self._put(bgr)
            return
        ts = getattr(frame, "capture_ts", None)
        ts = time.monotonic() if ts is None else float(ts)
        if self._t0 is None:
            self._t0 = ts
        slot = round((ts - self._t0) * float(self.fps or 30.0))
        if slot < self.frames:  # early for its slot (capture jitter): the slot already shows a picture
            self._last = bgr
            return
        self._fill(slot)
        self._put(bgr)

    def _put(self, bgr: np.ndarray) -> None:
        self._writer.write(bgr)
        self._last = bgr
        self.frames += 1

    def _fill(self, slot: int) -> None:
        """Repeat the last picture up to (not including) frame number ``slot``."""
        if self._last is None:
            return
        slot = min(slot, self.frames + int(MAX_GAP_S * float(self.fps or 30.0)))
        while self.frames < slot:
            self._put(self._last)

    def close(self) -> None:
        if self.realtime and self._writer is not None and self._t0 is not None:
            self._fill(round((time.monotonic() - self._t0) * float(self.fps or 30.0)))  # the last picture lasts
        w, self._writer = self._writer, None
        if w is not None:
            w.release()
            os.replace(self._tmp, self.path)

    @property
    def duration_s(self) -> float:
        """Length of the video written so far, in seconds."""
        return self.frames / float(self.fps or 30.0)

    def __repr__(self) -> str:
        return f"<VideoFileSink {self.path}>"
