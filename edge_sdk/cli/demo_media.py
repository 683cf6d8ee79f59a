"""The embedded default media for the demos: a video clip made from the real photos in scikit-image.

``demo_clip()`` writes (once, then reuses) an MP4 that shows ``chelsea`` (a cat), ``coffee`` (an
espresso) and ``astronaut`` (a face) for ``seconds_each`` each, with a slow pan and zoom so it is
real video, not three stills. ``SEGMENTS`` says which photo is on screen when.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

PHOTOS = ("chelsea", "coffee", "astronaut")
SIZE = (480, 640)  # h, w
FPS = 15


def segments(seconds_each: float = 3.0) -> list[tuple[str, float, float]]:
    """(photo, start s, end s) for each photo in the clip."""
    return [(name, i * seconds_each, (i + 1) * seconds_each) for i, name in enumerate(PHOTOS)]


def media_dir() -> Path:
    from converters.zoo.base import default_cache_dir

    return default_cache_dir().parent / "media"


def demo_clip(path: str | os.PathLike[str] | None = None, seconds_each: float = 3.0) -> Path:
    """The demo clip (640x480, 15 fps, H.264 or MPEG-4), generated on first use."""
    from converters.datasets import named_image
    from edge_sdk.preprocess import resize
    from edge_sdk.sources._opencv import import_cv2

    out = Path(path) if path else media_dir() / f"demo_clip_{seconds_each:g}s.mp4"
    if out.is_file() and out.stat().st_size > 0:
        return out
    cv2 = import_cv2()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial.mp4")
    h, w = SIZE
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
    n = int(round(seconds_each * FPS))
    for name in PHOTOS:
        img = named_image(name)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = resize(np.ascontiguousarray(img[..., :3]), (int(h * 1.15), int(w * 1.15)))  # room to pan
        H, W = img.shape[:2]
        for i in range(n):
            t = i / max(1, n - 1)
            zoom = 1.0 + 0.1 * t  # a slow push-in and pan
            ch, cw = int(H / zoom / 1.0), int(W / zoom / 1.0)
            ch, cw = min(ch, H), min(cw, W)
            y0 = int((H - ch) * (0.5 - 0.2 * (t - 0.5)))
            x0 = int((W - cw) * (0.3 + 0.4 * t))
            frame = resize(img[y0 : y0 + ch, x0 : x0 + cw], (h, w))
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    os.replace(tmp, out)
    return out
