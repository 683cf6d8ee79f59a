"""A folder of images (``.jpg``, ``.png``, ...), in name order; ``mode`` and ``fps`` as for video files.

Each frame carries its file name (``frame.meta["file"]``, and so every result). A file that cannot be
read is reported (an ``UNREADABLE`` source event naming it and why, a warning, ``source.unreadable``)
and the next one is read.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import SourceError
from edge_sdk.sources._opencv import import_cv2
from edge_sdk.sources.base import SourceEvent
from edge_sdk.sources.capture import CaptureSource

log = logging.getLogger("edge_sdk.sources")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class ImageFolderSource(CaptureSource):
    kind = "folder"
    is_live = False

    def __init__(
        self, folder: str | os.PathLike[str], *, mode: str = "fast", fps: float = 10.0, loop: bool = False,
        **opts: Any,
    ) -> None:  # fmt: skip
        if mode not in ("fast", "paced", "live"):
            raise SourceError(f"image folder source: mode must be fast, paced or live, got {mode!r}")
        opts.setdefault("policy", "latest" if mode == "live" else "queue")
        super().__init__(str(folder), **opts)
        self.folder = Path(folder)
        self.mode, self.rate, self.loop = mode, float(fps), loop
        self._files: list[Path] = []
        self.unreadable: list[str] = []  # names of the files that could not be read (each also an event)
        self._i = 0
        self._t0 = 0.0

    def _open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder {self.folder} does not exist or is not a folder")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"image folder {self.folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
        self._cv2 = import_cv2()
        self._t0 = time.monotonic()

    def _grab(self) -> np.ndarray | None:
        while True:
            if self._i >= len(self._files):
                if not self.loop:
                    return None
                self._i = 0
            path = self._files[self._i]
            self._i += 1
            img = self._read_image(path)
            if img is not None:
                break
        if self.mode != "fast":
            delay = self._t0 + (self.produced + self.dropped) / self.rate - time.monotonic()
            if delay > 0:
                self._stopped.wait(delay)
        self._current = path.name
        return self._cv2.cvtColor(img, self._cv2.COLOR_BGR2RGB)

    def _read_image(self, path: Path) -> np.ndarray | None:
        """The image as BGR, or None after reporting why it cannot be read (an UNREADABLE event + a warning)."""
        try:
            data = path.read_bytes()
        except OSError as e:
            why = e.strerror or str(e)
        else:
            img = self._cv2.imdecode(np.frombuffer(data, np.uint8), self._cv2.IMREAD_COLOR) if data else None
            if img is not None:
                return img
            why = "empty file" if not data else "not a decodable image (corrupt, or a format OpenCV cannot read)"
        if path.name not in self.unreadable:  # once per file, also when looping
            self.unreadable.append(path.name)
            log.warning("image folder %s: %s cannot be read: %s", self.folder, path.name, why)
            self._emit(SourceEvent.UNREADABLE, f"{path.name}: {why}")
        return None

    def _frame_meta(self) -> dict[str, Any]:
        return {"file": getattr(self, "_current", "")}
