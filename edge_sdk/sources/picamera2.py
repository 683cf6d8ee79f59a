"""The Raspberry Pi camera through ``picamera2`` (``picamera2:`` or ``picamera2:?width=640&height=480``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_sdk.errors import SourceError
from edge_sdk.sources.capture import CaptureSource


class PiCamera2Source(CaptureSource):
    kind = "picamera2"
    is_live = True

    def __init__(self, target: str = "", *, width: int = 640, height: int = 480, camera: int = 0, **opts: Any) -> None:
        super().__init__("picamera2", **opts)
        self.size = (int(width), int(height))
        self.camera = int(target) if str(target).isdigit() else int(camera)
        self._cam: Any = None

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(
                "picamera2: source needs the picamera2 package (Raspberry Pi OS: sudo apt install python3-picamera2)"
            ) from None
        try:
            cam = Picamera2(self.camera)
            cam.configure(cam.create_video_configuration(main={"size": self.size, "format": "RGB888"}))
            cam.start()
        except Exception as e:
            raise SourceError(f"cannot open Raspberry Pi camera {self.camera}: {e}") from None
        self._cam = cam

    def _grab(self) -> np.ndarray | None:
        img = self._cam.capture_array("main") if self._cam is not None else None
        # picamera2's "RGB888" is BGR in memory order
        return None if img is None else np.ascontiguousarray(img[..., 2::-1])

    def _close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            cam.stop()
            cam.close()
