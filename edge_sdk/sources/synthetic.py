"""A synthetic live camera: a moving test pattern at a steady rate (``synthetic:?fps=30&size=640x480``).

``fps=0`` produces every frame as fast as the consumer takes them (like a file in ``fast`` mode:
a source faster than any model, without wasting CPU on frames nobody reads);
``frames=N`` ends after N frames; ``image=<photo name or path>`` moves over a real photo instead
of bars (photo names as in ``converters.datasets``, e.g. ``chelsea``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edge_sdk.errors import SourceError, ZooPackageMissingError
from edge_sdk.sources.capture import CaptureSource


def _parse_size(size: Any) -> tuple[int, int]:
    try:
        if isinstance(size, str):
            w, h = (int(v) for v in size.lower().split("x"))
        else:
            w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise SourceError(f"synthetic source: size must be WIDTHxHEIGHT, e.g. 640x480, got {size!r}") from None
    if w < 8 or h < 8:
        raise SourceError(f"synthetic source: size {w}x{h} is too small (at least 8x8)")
    return w, h


class SyntheticSource(CaptureSource):
    kind = "synthetic"
    is_live = True

    def __init__(
        self, target: str = "", *, fps: float = 30.0, size: Any = "640x480", frames: int | None = None,
        image: str | None = None, **opts: Any,
    ) -> None:  # fmt: skip
        opts.setdefault("reconnect", False)
        if fps == 0:
            self.is_live = False
        super().__init__("synthetic:" + (target or f"{fps:g}fps"), **opts)
        if fps < 0:
            raise SourceError(f"synthetic source: fps must be >= 0 (0 = as fast as possible), got {fps!r}")
        self.rate = float(fps)
        self.w, self.h = _parse_size(size)
        self.limit = frames
        self.image = image
        self._base: np.ndarray | None = None
        self._t0 = 0.0
        self._n = 0

    def _open(self) -> None:
        if self.image:
            self._base = _photo(self.image, (self.h, self.w))
        else:
            x = np.linspace(0, 255, self.w, dtype=np.float32)
            y = np.linspace(0, 255, self.h, dtype=np.float32)[:, None]
            self._base = np.stack([np.broadcast_to(x, (self.h, self.w)), np.broadcast_to(y, (self.h, self.w)),
                                   np.full((self.h, self.w), 96.0, np.float32)], axis=2).astype(np.uint8)  # fmt: skip
        self._t0 = time.monotonic()

    def _grab(self) -> np.ndarray | None:
        if self.limit is not None and self._n >= self.limit:
            self.is_live = False  # a finite pattern ends like a file
            return None
        if self.rate > 0:
            delay = self._t0 + self._n / self.rate - time.monotonic()
            if delay > 0 and self._stopped.wait(delay):
                return None
        assert self._base is not None
        n = self._n
        img = np.roll(self._base, (n * 4) % self.w, axis=1)
        s = max(8, min(self.w, self.h) // 6)
        y0 = (n * 3) % max(1, self.h - s)
        img[y0 : y0 + s, (n * 5) % max(1, self.w - s) :][:, :s] = (255, 255, 255)
        self._n += 1
        return img


def _photo(name: str, hw: tuple[int, int]) -> np.ndarray:
    from edge_sdk.preprocess import resize

    img, missing = None, None
    try:
        from converters.datasets import named_image

        img = named_image(name)
    except Exception as e:
        missing = e if isinstance(e, ZooPackageMissingError) else None  # a sample photo whose package is absent
        from edge_sdk.sources._opencv import import_cv2

        cv2 = import_cv2()
        raw = cv2.imread(name, cv2.IMREAD_COLOR)
        if raw is not None:
            img = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)
    if img is None and missing is not None:
        raise SourceError(f"synthetic source: {missing}") from None
    if img is None:
        raise SourceError(f"synthetic source: image {name!r} is neither a sample photo name nor a readable file")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return resize(np.ascontiguousarray(img[..., :3]), hw)
