"""A GStreamer pipeline ending in ``appsink`` (``gst:...``), e.g. a Jetson CSI camera::

gst:nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv !
    video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1 max-buffers=1
"""

from __future__ import annotations

from typing import Any

from edge_sdk.errors import SourceError
from edge_sdk.sources._opencv import OpenCVSource


class GStreamerSource(OpenCVSource):
    kind = "gst"
    is_live = True

    def __init__(self, pipeline: str, **opts: Any) -> None:
        super().__init__(f"gst:{pipeline}", **opts)
        self.pipeline = pipeline.strip()
        if not self.pipeline:
            raise SourceError("gst: source needs a pipeline after 'gst:', ending in '! appsink'")
        if "appsink" not in self.pipeline:
            self.pipeline += " ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1 max-buffers=1"

    def _capture(self) -> Any:
        cv2 = self._cv2
        info = [ln for ln in cv2.getBuildInformation().splitlines() if "GStreamer:" in ln]
        if not any("YES" in ln for ln in info):
            raise SourceError(
                f"source '{self.name}': this OpenCV build has no GStreamer support; install OpenCV from your "
                "distribution (apt install python3-opencv) or JetPack, which is built with GStreamer"
            )
        cap = cv2.VideoCapture(self.pipeline, cv2.CAP_GSTREAMER)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open GStreamer pipeline '{self.pipeline}'; try it with gst-launch-1.0 first")
        return cap
