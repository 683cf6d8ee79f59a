"""A network stream (``rtsp://``, ``rtsps://``, ``http(s)://``) through OpenCV's FFmpeg backend.

Open and read timeouts are passed to FFmpeg, RTSP goes over TCP (no silent UDP loss), and the
capture thread reconnects with backoff when the server goes away (see :mod:`.capture`).
"""

from __future__ import annotations

import os
import re
from typing import Any

from edge_sdk.errors import SourceError
from edge_sdk.sources._opencv import OpenCVSource


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and errors)."""
    return re.sub(r"(//[^:/@]+:)[^@/]+@", r"\1***@", url)


class StreamSource(OpenCVSource):
    kind = "stream"
    is_live = True

    def __init__(self, url: str, *, open_timeout: float | None = None, transport: str = "tcp", **opts: Any) -> None:
        opts.setdefault("read_timeout", 5.0)
        super().__init__(redact(url), **opts)
        self.url = url
        self.kind = url.split(":", 1)[0].lower()
        self.open_timeout = float(open_timeout if open_timeout is not None else self.read_timeout)
        self.transport = transport

    def _capture(self) -> Any:
        cv2 = self._cv2
        if self.url.lower().startswith("rtsp") and "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ:
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{self.transport}"
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000),
            *self._decoder_params(),
        ]  # fmt: skip
        cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open stream {self.name}: nothing answered within {self.open_timeout:g} s or the server "
                "refused it (check the URL, that the server is running, and credentials)"
            )
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap
