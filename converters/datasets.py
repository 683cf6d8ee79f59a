"""Real photos for calibration and validation, offline: the sample images inside scikit-image and
scikit-learn, cut into deterministic random-resized crops (with flips).

The two splits never share a crop: calibration windows start on an even column and held-out
windows on an odd one, and each split draws from its own seed stream. Item ``i`` of a split
depends only on ``(split, seed, i)``, so ``calibration_images(8)`` is a prefix of
``calibration_images(64)``. Images are uint8 (H, W, 3) RGB.
"""

from __future__ import annotations

import functools
import io
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from converters.zoo.base import atomic_path, find_package_dir
from edge_sdk.errors import ZooError, ZooPackageMissingError
from edge_sdk.preprocess import resize

#: photo name -> (pip package, import name, file inside the package, loader function for a fallback)
PHOTOS: dict[str, tuple[str, str, str, str]] = {
    "astronaut": ("scikit-image", "skimage", "data/astronaut.png", "astronaut"),
    "chelsea": ("scikit-image", "skimage", "data/chelsea.png", "chelsea"),
    "coffee": ("scikit-image", "skimage", "data/coffee.png", "coffee"),
    "rocket": ("scikit-image", "skimage", "data/rocket.jpg", "rocket"),
    "camera": ("scikit-image", "skimage", "data/camera.png", "camera"),
    "motorcycle": ("scikit-image", "skimage", "data/motorcycle_left.png", "stereo_motorcycle"),
    "china": ("scikit-learn", "sklearn", "datasets/images/china.jpg", "china.jpg"),
    "flower": ("scikit-learn", "sklearn", "datasets/images/flower.jpg", "flower.jpg"),
}
_SPLITS = {"calibration": (0xCA11B, 0), "held_out": (0x4E1D0, 1)}  # split -> (seed tag, column parity)
SCALE = (0.25, 1.0)  # crop area as a fraction of the photo, like RandomResizedCrop (ImageNet uses 0.08)
RATIO = (3 / 4, 4 / 3)


def photo_names() -> list[str]:
    return list(PHOTOS)


def available_photos() -> list[str]:
    """The photos whose package is installed (checked without importing it)."""
    return [n for n, (_, mod, rel, _) in PHOTOS.items() if _photo_file(mod, rel) is not None]


def named_image(name: str) -> np.ndarray:
    """A whole sample photo, e.g. ``named_image("chelsea")`` (a cat, ImageNet class 285), as a fresh array."""
    return _load_photo(name).copy()


def calibration_images(
    n: int, size: int | tuple[int, int] = 224, *, photos: Sequence[str] | None = None, seed: int = 0
) -> np.ndarray:
    """``n`` calibration crops, ``(n, h, w, 3)`` uint8 RGB, round-robin over ``photos`` (default: all installed)."""
    return _crops("calibration", n, size, photos, seed)


def held_out_images(
    n: int, size: int | tuple[int, int] = 224, *, photos: Sequence[str] | None = None, seed: int = 0
) -> np.ndarray:
    """``n`` validation crops that are never calibration crops (disjoint windows and seeds)."""
    return _crops("held_out", n, size, photos, seed)


def crop_windows(
    split: str, n: int, *, photos: Sequence[str] | None = None, seed: int = 0
) -> list[tuple[str, int, int, int, int, bool]]:
    """The crops a split would cut: ``(photo, top, left, height, width, flipped)`` per item."""
    if split not in _SPLITS:
        raise ZooError(f"unknown split {split!r}; use 'calibration' or 'held_out'")
    names = _check_photos(photos)
    tag, parity = _SPLITS[split]
    out = []
    for i in range(_check_count(n)):
        name = names[i % len(names)]
        h_img, w_img = _load_photo(name).shape[:2]
        rng = np.random.default_rng([tag, seed, i])
        out.append((name, *_window(rng, h_img, w_img, parity)))
    return out


def write_image_folder(
    folder: str | os.PathLike[str], images: Sequence[np.ndarray], *, fmt: str = "png", prefix: str = "img"
) -> list[Path]:
    """Save uint8 RGB images as ``prefix_0000.png`` ... (or ``jpg``), each written atomically."""
    if fmt not in ("png", "jpg", "jpeg"):
        raise ZooError(f"image format {fmt!r} is not png or jpg")
    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    encode = _encoder(fmt)
    paths = []
    for i, img in enumerate(images):
        path = out_dir / f"{prefix}_{i:04d}.{fmt}"
        with atomic_path(path) as tmp:
            tmp.write_bytes(encode(np.ascontiguousarray(img)))
        paths.append(path)
    return paths


# ---- internals ------------------------------------------------------------------------------
def _crops(split: str, n: int, size: int | tuple[int, int], photos: Sequence[str] | None, seed: int) -> np.ndarray:
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(hw) < 1:
        raise ZooError(f"image size {size!r} must be positive")
    windows = crop_windows(split, n, photos=photos, seed=seed)
    out = np.empty((len(windows), *hw, 3), dtype=np.uint8)
    for k, (name, top, left, h, w, flip) in enumerate(windows):
        crop = _load_photo(name)[top : top + h, left : left + w]
        out[k] = resize(crop[:, ::-1] if flip else crop, hw)
    return out


def _window(rng: np.random.Generator, H: int, W: int, parity: int) -> tuple[int, int, int, int, bool]:
    """A random-resized-crop window whose left column has the given parity."""
    area = H * W * rng.uniform(*SCALE)
    ratio = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
    w = int(min(W - 1, max(16, round(math.sqrt(area * ratio)))))
    h = int(min(H, max(16, round(math.sqrt(area / ratio)))))
    left = int(rng.integers(0, W - w + 1))
    left = left - left % 2 + parity
    if left > W - w:
        left -= 2
    top = int(rng.integers(0, H - h + 1))
    return top, left, h, w, bool(rng.random() < 0.5)


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ZooError(f"number of images must be a positive integer, got {n!r}")
    return int(n)


def _check_photos(photos: Sequence[str] | None) -> list[str]:
    if photos is None:  # every photo whose package is installed
        names = available_photos()
        if not names:
            raise ZooPackageMissingError("sample images", "scikit-image")
        return names
    names = list(photos)
    unknown = [p for p in names if p not in PHOTOS]
    if unknown or not names:
        raise ZooError(f"unknown photo(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(PHOTOS)}")
    return names


def _photo_file(module: str, relpath: str) -> Path | None:
    folder = find_package_dir(module)
    if folder is None:
        return None
    path = folder / relpath
    return path if path.is_file() else None


@functools.cache
def _load_photo(name: str) -> np.ndarray:
    if name not in PHOTOS:
        raise ZooError(f"no sample image named {name!r}; known: {', '.join(PHOTOS)}")
    package, module, relpath, loader = PHOTOS[name]
    if find_package_dir(module) is None:
        raise ZooPackageMissingError(f"sample image '{name}'", package)
    path = _photo_file(module, relpath)
    img = _decode(path) if path is not None else _load_via_api(module, loader)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    img.flags.writeable = False
    return img


def _load_via_api(module: str, loader: str) -> np.ndarray:
    if module == "skimage":
        import skimage.data

        img = getattr(skimage.data, loader)()
        return img[0] if isinstance(img, tuple) else img
    from sklearn.datasets import load_sample_image

    return load_sample_image(loader)


def _decode(path: Path) -> np.ndarray:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except ImportError:
        pass
    try:
        import cv2
    except ImportError:
        raise ZooPackageMissingError(f"reading {path.name}", "pillow") from None
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ZooError(f"cannot decode sample image {path}")
    return img[..., ::-1]


def _encoder(fmt: str) -> Callable[[np.ndarray], bytes]:
    try:
        from PIL import Image

        def encode_pil(img: np.ndarray) -> bytes:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG" if fmt == "png" else "JPEG", quality=95)
            return buf.getvalue()

        return encode_pil
    except ImportError:
        pass
    try:
        import cv2
    except ImportError:
        raise ZooPackageMissingError("writing images", "pillow") from None

    def encode_cv2(img: np.ndarray) -> bytes:
        ok, data = cv2.imencode(f".{fmt}", img[..., ::-1] if img.ndim == 3 else img)
        if not ok:
            raise ZooError(f"OpenCV could not encode an image of shape {img.shape} as {fmt}")
        return data.tobytes()

    return encode_cv2


#: held-out speech for audio models: sentences no calibration default uses (the demo clip speaks others)
HELD_OUT_UTTERANCES = (
    ("Please switch the kitchen lights off before midnight.", 0.8),
    ("Seven bright ships sailed north across the cold water.", 4.6),
)


def held_out_speech(spec: object, n: int) -> list[np.ndarray] | None:
    """``n`` windows of real speech (espeak-ng) framed by an AudioSpec; None when espeak-ng is missing."""
    from edge_sdk.audio.default_media import make_speech_clip
    from edge_sdk.errors import ToolMissingError

    try:
        clip, _ = make_speech_clip(HELD_OUT_UTTERANCES, seed=7, sample_rate=getattr(spec, "sample_rate", 16000))
    except ToolMissingError:
        return None
    return list(spec.frames(clip))[:n]  # type: ignore[attr-defined]
