"""A video file (anything FFmpeg decodes). Three ways to play it, ``mode=``:

- ``fast`` (default): every frame, as fast as the consumer takes them;
- ``paced``: every frame, at the file's own frame rate (or ``fps=``);
- ``live``: at the file's rate with latest-frame-wins, like a camera (frames the consumer
  misses are dropped and counted).

A truncated or corrupt file ends cleanly with an ``EOS`` event at the last frame that decodes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import SourceError
from edge_sdk.sources._opencv import OpenCVSource

MODES = ("fast", "paced", "live")


class VideoFileSource(OpenCVSource):
    kind = "file"
    is_live = False

    def __init__(
        self, path: str | os.PathLike[str], *, mode: str = "fast", fps: float | None = None, loop: bool = False,
        **opts: Any,
    ) -> None:  # fmt: skip
        if mode not in MODES:
            raise SourceError(f"video file source: mode must be one of {', '.join(MODES)}, got {mode!r}")
        opts.setdefault("policy", "latest" if mode == "live" else "queue")
        super().__init__(str(path), **opts)
        self.path = Path(path)
        self.mode = mode
        self.want_fps = fps
        self.loop = loop
        self._t0 = 0.0
        self._n = 0
        self._pos_ms = 0.0

    def _capture(self) -> Any:
        cv2 = self._cv2
        if not self.path.is_file():
            raise SourceError(f"video file {self.path} does not exist or is not a file")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, self._decoder_params())
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video file {self.path}: FFmpeg cannot decode it (not a video, or corrupt)")
        return cap

    def _open(self) -> None:
        super()._open()
        self._t0 = time.monotonic()
        self._n = 0

    def _grab(self) -> np.ndarray | None:
        img = super()._grab()
        if img is None and self.loop and self._n > 0 and not self._stopped.is_set():
            self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
            img = super()._grab()
        if img is None:
            return None
        self._pos_ms = float(self._cap.get(self._cv2.CAP_PROP_POS_MSEC) or 0.0)
        if self.mode != "fast":
            rate = self.want_fps or self.fps or 30.0
            due = self._t0 + self._n / rate
            delay = due - time.monotonic()
            if delay > 0:
                self._stopped.wait(delay)
            elif delay < -1.0:  # we fell far behind (a slow consumer in paced mode): restart the clock
                self._t0, self._n = time.monotonic(), 0
        self._n += 1
        return img

    def _frame_meta(self) -> dict[str, Any]:
        return {"pos_ms": self._pos_ms}
