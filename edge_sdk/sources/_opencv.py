"""Shared by the OpenCV-backed sources (camera, GStreamer, network stream, video file)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_sdk.errors import BackendUnavailableError, SourceError
from edge_sdk.sources.capture import CaptureSource


def import_cv2() -> Any:
    """OpenCV, or a typed error naming the extra to install."""
    try:
        import cv2
    except ImportError as e:
        raise BackendUnavailableError("opencv (video sources and sinks)", "camera", str(e)) from None
    return cv2


class OpenCVSource(CaptureSource):
    """A :class:`CaptureSource` reading a ``cv2.VideoCapture``; frames are delivered as RGB.

    ``decode_threads``: FFmpeg decoder threads (file and network sources; None: FFmpeg's default, one per core).
    Several streams on few cores decode cheaper with one thread each: frame threading costs CPU to
    synchronise (a 640x480 MPEG-4 file here: 0.54 ms of CPU per frame with 2 threads, 0.37 with 1), so
    ``MultiStream`` gives each stream its share of the cores."""

    def __init__(self, name: str, *, decode_threads: int | None = None, **opts: Any) -> None:
        super().__init__(name, **opts)
        if decode_threads is not None and (
            isinstance(decode_threads, bool) or not isinstance(decode_threads, int) or decode_threads < 1
        ):
            raise SourceError(
                f"source {name}: decode_threads must be a positive integer or None, got {decode_threads!r}"
            )
        self.decode_threads = decode_threads
        self._cap: Any = None
        self._cv2: Any = None

    def _decoder_params(self) -> list[int]:
        """``cv2.VideoCapture`` open parameters for :attr:`decode_threads` (none when unset)."""
        n = self.decode_threads
        return [] if n is None else [self._cv2.CAP_PROP_N_THREADS, int(n)]

    def _capture(self) -> Any:
        """Build and return an opened ``cv2.VideoCapture`` (raise SourceError if it does not open)."""
        raise NotImplementedError

    def _open(self) -> None:
        self._cv2 = import_cv2()
        self._cap = self._capture()

    def _grab(self) -> np.ndarray | None:
        cap = self._cap
        if cap is None:
            return None
        ok, img = cap.read()
        if not ok or img is None:
            return None
        if img.ndim == 2:
            return self._cv2.cvtColor(img, self._cv2.COLOR_GRAY2RGB)
        return self._cv2.cvtColor(img, self._cv2.COLOR_BGR2RGB)

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    @property
    def fps(self) -> float:
        """The frame rate the device or file reports (0 when unknown)."""
        if self._cap is None:
            return 0.0
        v = float(self._cap.get(self._cv2.CAP_PROP_FPS) or 0.0)
        return v if 0 < v < 1000 else 0.0
