"""The annotated frames as a video file (OpenCV ``VideoWriter``), written to a temp name then renamed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import SinkError
from edge_sdk.sinks.base import Sink

FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class VideoFileSink(Sink):
    kind = "video"
    needs_image = True

    def __init__(self, target: str, *, fps: float | None = None, fourcc: str | None = None) -> None:
        self.path = Path(target)
        if self.path.suffix.lower() not in FOURCC:
            raise SinkError(f"video sink {target}: use one of {', '.join(FOURCC)}")
        self.fps = fps  # None: the source's rate (30 when it has none)
        self.fourcc = fourcc or FOURCC[self.path.suffix.lower()]
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._writer: Any = None
        self._cv2: Any = None
        self.frames = 0

    def open(self, info: dict[str, Any]) -> None:
        from edge_sdk.sources._opencv import import_cv2

        self._cv2 = import_cv2()
        if self.fps is None:
            self.fps = float(info.get("fps") or 30.0)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SinkError(f"cannot create the folder for video {self.path}: {e.strerror or e}") from None

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
        self._writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        w, self._writer = self._writer, None
        if w is not None:
            w.release()
            os.replace(self._tmp, self.path)

    def __repr__(self) -> str:
        return f"<VideoFileSink {self.path}>"
