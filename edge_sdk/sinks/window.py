"""An OpenCV window showing the annotated frames; only where a display exists (else a clear error)."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from edge_sdk.errors import SinkError
from edge_sdk.sinks.base import Sink


def has_display() -> bool:
    if sys.platform.startswith(("win", "darwin")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class WindowSink(Sink):
    kind = "window"
    needs_image = True

    def __init__(self, target: str = "", *, title: str = "edge-sdk") -> None:
        self.title = target or title
        self._cv2: Any = None

    def open(self, info: dict[str, Any]) -> None:
        if not has_display():
            raise SinkError("window sink: no display here (DISPLAY is not set); use the live view --sink http://:8080")
        from edge_sdk.sources._opencv import import_cv2

        cv2 = import_cv2()
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise SinkError(
                "window sink: this OpenCV has no GUI support (opencv-python-headless); "
                "replace it, never beside it (two OpenCVs break each other): pip uninstall -y "
                "opencv-python-headless && pip install opencv-python; or use --sink http://:8080"
            ) from None
        self._cv2 = cv2

    def write(self, frame: Any, result: Any, event: dict[str, Any], image: np.ndarray | None) -> None:
        if image is not None and self._cv2 is not None:
            self._cv2.imshow(self.title, self._cv2.cvtColor(image, self._cv2.COLOR_RGB2BGR))
            self._cv2.waitKey(1)

    def close(self) -> None:
        if self._cv2 is not None:
            self._cv2.destroyWindow(self.title)
