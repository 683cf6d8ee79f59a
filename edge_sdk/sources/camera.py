"""A local camera by index (``0``) or V4L2 device path (``/dev/video0``), through OpenCV."""

from __future__ import annotations

import sys
from typing import Any

from edge_sdk.errors import SourceError
from edge_sdk.sources._opencv import OpenCVSource


class CameraSource(OpenCVSource):
    kind = "camera"
    is_live = True

    def __init__(
        self, device: str | int, *, width: int | None = None, height: int | None = None,
        fps: float | None = None, fourcc: str | None = None, **opts: Any,
    ) -> None:  # fmt: skip
        super().__init__(f"camera {device}", **opts)
        self.device = int(device) if str(device).isdigit() else str(device)
        self.want = {"width": width, "height": height, "fps": fps, "fourcc": fourcc}

    def _capture(self) -> Any:
        cv2 = self._cv2
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(self.device, api)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open camera {self.device}: no such device or it is busy "
                "(list cameras with `v4l2-ctl --list-devices` or `ls /dev/video*`; another program may hold it)"
            )
        w = self.want
        if w["fourcc"]:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*str(w["fourcc"])[:4]))
        for prop, key in ((cv2.CAP_PROP_FRAME_WIDTH, "width"), (cv2.CAP_PROP_FRAME_HEIGHT, "height"),
                          (cv2.CAP_PROP_FPS, "fps")):  # fmt: skip
            if w[key]:
                cap.set(prop, float(w[key]))
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver keeps one frame: no stale backlog
        return cap
