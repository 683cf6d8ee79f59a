"""How an image (or an audio clip) becomes a model input, as data that travels with the model.

A :class:`PreprocessSpec` is stored inside a converted model (and in its folder's manifest), so the device runs
the exact preprocessing the model was converted and validated with; :func:`with_overrides` changes parts of it::

    spec = PreprocessSpec(size=(224, 224), mean=127.0, std=128.0)
    x = spec.apply(frame_rgb)                 # (1, 3, 224, 224) float32
    PreprocessSpec.from_dict(spec.to_dict()) == spec

numpy only; OpenCV is used for resizing when it is importable (imported on first use),
else a vectorised numpy bilinear resize that matches ``cv2.INTER_LINEAR`` within one grey level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping, Sequence, Union

import numpy as np

from edge_sdk.errors import PreprocessError

RESIZE_MODES = ("stretch", "letterbox", "center_crop")
CHANNEL_ORDERS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "float16", "uint8", "int8")
IMAGENET_MEAN = (123.675, 116.28, 103.53)  # ImageNet mean/std in 0..255 pixel units, RGB order
IMAGENET_STD = (58.395, 57.12, 57.375)

_INT_RANGE = {"uint8": (0, 255), "int8": (-128, 127)}
_IMAGE_FIELDS = ("size", "resize", "mean", "std", "channels", "layout", "dtype", "crop_fraction", "pad_value", "quant")


@dataclass(frozen=True)
class Geometry:
    """Where a source pixel lands in the model input: ``model = source * scale + offset`` per axis."""

    scale_y: float
    scale_x: float
    offset_y: float
    offset_x: float

    def to_source(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Map boxes (..., 4) given in model-input pixels back to source-image pixels."""
        b = np.asarray(boxes_xyxy, dtype=np.float32)
        out = b.copy()
        out[..., 0::2] = (b[..., 0::2] - self.offset_x) / self.scale_x
        out[..., 1::2] = (b[..., 1::2] - self.offset_y) / self.scale_y
        return out


@dataclass(frozen=True)
class PreprocessSpec:
    """An image -> tensor recipe: resize, channel order, ``(x - mean) / std``, layout, dtype.

    ``mean`` and ``std`` are in 0..255 pixel units, per channel in the order the model sees
    (``channels``), or one value for all. ``(x - 127) / 128`` is ``mean=127, std=128``;
    ``x / 255`` is ``mean=0, std=255``. For integer ``dtype`` the normalised value is rounded
    and clipped, or quantized with ``quant=(scale, zero_point)`` when given.
    ``center_crop`` resizes so the target covers ``crop_fraction`` of the shorter side, then
    crops the centre (224 from 256 is ``crop_fraction=0.875``); ``letterbox`` keeps the aspect
    ratio and pads with ``pad_value``.
    """

    size: tuple[int, int]
    resize: str = "stretch"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channels: str = "RGB"
    layout: str = "NCHW"
    dtype: str = "float32"
    crop_fraction: float = 1.0
    pad_value: int = 0
    quant: tuple[float, int] | None = None
    _scale: np.ndarray = field(init=False, repr=False, compare=False)
    _offset: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "size", _check_size(self.size))
        _check_choice("resize", self.resize, RESIZE_MODES)
        _check_choice("channels", self.channels, CHANNEL_ORDERS)
        _check_choice("layout", self.layout, LAYOUTS)
        _check_choice("dtype", self.dtype, DTYPES)
        set_(self, "mean", _check_vector("mean", self.mean))
        set_(self, "std", _check_vector("std", self.std))
        if any(s == 0 for s in self.std):
            raise PreprocessError(f"preprocess spec: std {list(self.std)} contains 0; use 1.0 for 'no scaling'")
        if not _is_real(self.crop_fraction) or not 0 < float(self.crop_fraction) <= 1:
            raise PreprocessError(
                f"preprocess spec: crop_fraction must be in (0, 1], got {self.crop_fraction!r} "
                "(0.875 crops 224 from 256; 1.0 crops to the target exactly)"
            )
        set_(self, "crop_fraction", float(self.crop_fraction))
        if isinstance(self.pad_value, bool) or not isinstance(self.pad_value, int) or not 0 <= self.pad_value <= 255:
            raise PreprocessError(f"preprocess spec: pad_value must be an integer 0..255, got {self.pad_value!r}")
        set_(self, "quant", _check_quant(self.quant, self.dtype))
        std = np.asarray(self.std, dtype=np.float32)
        set_(self, "_scale", (1.0 / std).astype(np.float32))
        set_(self, "_offset", (-np.asarray(self.mean, dtype=np.float32) / std).astype(np.float32))

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The batched model input shape this spec produces for one image."""
        h, w = self.size
        return (1, 3, h, w) if self.layout == "NCHW" else (1, h, w, 3)

    def geometry(self, source_hw: tuple[int, int]) -> Geometry:
        """How a ``source_hw`` image maps into the model input (to map detections back)."""
        H, W = source_hw
        h, w = self.size
        if self.resize == "stretch":
            return Geometry(h / H, w / W, 0.0, 0.0)
        if self.resize == "letterbox":
            s = min(h / H, w / W)
            nh, nw = max(1, round(H * s)), max(1, round(W * s))
            return Geometry(nh / H, nw / W, float((h - nh) // 2), float((w - nw) // 2))
        nh, nw = _cover_size((H, W), (h, w), self.crop_fraction)
        return Geometry(nh / H, nw / W, -float((nh - h) // 2), -float((nw - w) // 2))

    # ---- apply --------------------------------------------------------------------------------
    def resize_image(self, image: np.ndarray) -> np.ndarray:
        """The geometric step alone: uint8 HWC RGB in, uint8 (h, w, 3) RGB out."""
        img = _as_rgb(image)
        h, w = self.size
        H, W = img.shape[:2]
        if self.resize == "stretch":
            return resize(img, (h, w))
        if self.resize == "letterbox":
            g = self.geometry((H, W))
            nh, nw = round(H * g.scale_y), round(W * g.scale_x)
            out = np.full((h, w, 3), self.pad_value, dtype=np.uint8)
            top, left = int(g.offset_y), int(g.offset_x)
            out[top : top + nh, left : left + nw] = resize(img, (nh, nw))
            return out
        nh, nw = _cover_size((H, W), (h, w), self.crop_fraction)
        big = resize(img, (nh, nw))
        top, left = (nh - h) // 2, (nw - w) // 2
        return big[top : top + h, left : left + w]

    def apply(self, image: np.ndarray) -> np.ndarray:
        """One uint8 HWC RGB image (or greyscale / RGBA) -> a batched model input ``input_shape``."""
        return self._finish(self.resize_image(image)[None])

    def apply_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Several images (any sizes) -> one batch ``(N, ...)``."""
        if len(images) == 0:
            raise PreprocessError("preprocess: apply_batch got no images")
        return self._finish(np.stack([self.resize_image(im) for im in images]))

    def _finish(self, batch: np.ndarray) -> np.ndarray:
        # per frame of every stream: transpose the uint8 pixels (a quarter of the bytes), then one scaling pass
        # into a fresh float array and one in-place shift (0.16 ms at 224x224, was 0.84 with four float passes)
        if self.channels == "BGR":
            batch = batch[..., ::-1]
        scale, offset = self._scale, self._offset
        if self.layout == "NCHW":
            batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
            scale, offset = scale[:, None, None], offset[:, None, None]
        x = np.multiply(batch, scale, dtype=np.float32)
        x += offset
        if self.dtype in _INT_RANGE:
            if self.quant is not None:
                x = x / np.float32(self.quant[0]) + np.float32(self.quant[1])
            lo, hi = _INT_RANGE[self.dtype]
            return np.clip(np.rint(x), lo, hi).astype(self.dtype)
        return x.astype(self.dtype, copy=False)

    # ---- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` restores an equal spec."""
        return {
            "kind": "image",
            "size": list(self.size),
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "channels": self.channels,
            "layout": self.layout,
            "dtype": self.dtype,
            "crop_fraction": self.crop_fraction,
            "pad_value": self.pad_value,
            "quant": None if self.quant is None else {"scale": self.quant[0], "zero_point": self.quant[1]},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessSpec:
        """Build a spec from :meth:`to_dict` output; ``scale``/``offset`` (``x * scale + offset``)
        may replace ``mean``/``std``. Unknown or missing fields raise PreprocessError."""
        if not isinstance(data, Mapping):
            raise PreprocessError(f"preprocess spec must be a JSON object, got {type(data).__name__}")
        d = dict(data)
        kind = d.pop("kind", "image")
        if kind != "image":
            raise PreprocessError(f"preprocess spec: kind is {kind!r}, expected 'image' (audio specs use AudioSpec)")
        if "scale" in d or "offset" in d:
            if "mean" in d or "std" in d:
                raise PreprocessError("preprocess spec: give either mean/std or scale/offset, not both")
            scale = _check_vector("scale", d.pop("scale", 1.0))
            offset = _check_vector("offset", d.pop("offset", 0.0))
            if any(s == 0 for s in scale):
                raise PreprocessError(f"preprocess spec: scale {list(scale)} contains 0")
            if len(scale) != len(offset) and 1 not in (len(scale), len(offset)):
                raise PreprocessError("preprocess spec: scale and offset must have the same length (1 or 3)")
            n = max(len(scale), len(offset))
            sc, of = np.broadcast_to(scale, n), np.broadcast_to(offset, n)
            d["std"] = [1.0 / s for s in sc]
            d["mean"] = [-o / s for o, s in zip(of, sc)]
        unknown = sorted(set(d) - set(_IMAGE_FIELDS))
        if unknown:
            raise PreprocessError(
                f"preprocess spec: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(_IMAGE_FIELDS)}"
            )
        if "size" not in d:
            raise PreprocessError("preprocess spec: 'size' [height, width] is required, e.g. \"size\": [224, 224]")
        q = d.get("quant")
        if isinstance(q, Mapping):
            if set(q) != {"scale", "zero_point"}:
                raise PreprocessError('preprocess spec: quant must be {"scale": float, "zero_point": int}')
            d["quant"] = (q["scale"], q["zero_point"])
        return cls(**d)


@dataclass(frozen=True)
class AudioSpec:
    """A streaming audio recipe: mono float32 in [-1, 1] at ``sample_rate``, cut in ``window``
    samples, each preceded by the previous ``context`` samples (Silero VAD: 16000, 512, 64)."""

    sample_rate: int = 16000
    window: int = 512
    context: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("sample_rate", "window", "context"):
            v = getattr(self, name)
            low = 0 if name == "context" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise PreprocessError(f"audio spec: {name} must be an integer >= {low}, got {v!r}")
        if self.dtype not in ("float32", "float16"):
            raise PreprocessError(f"audio spec: dtype must be float32 or float16, got {self.dtype!r}")

    @property
    def input_shape(self) -> tuple[int, int]:
        return (1, self.context + self.window)

    def frames(self, samples: np.ndarray) -> Iterator[np.ndarray]:
        """Yield model inputs ``(1, context + window)`` over a clip; the last window is zero-padded.

        int16 samples are scaled to [-1, 1]; (n, channels) audio is averaged to mono.
        """
        x = np.asarray(samples)
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        elif x.dtype.kind != "f":
            raise PreprocessError(f"audio: expected float samples in [-1, 1] or int16 PCM, got {x.dtype}")
        if x.ndim == 2:
            x = x.mean(axis=1)
        if x.ndim != 1:
            raise PreprocessError(f"audio: expected (samples,) or (samples, channels), got shape {x.shape}")
        x = x.astype(np.float32, copy=False)
        n = math.ceil(len(x) / self.window) * self.window
        x = np.concatenate([np.zeros(self.context, np.float32), x, np.zeros(n - len(x), np.float32)])
        for start in range(self.context, len(x), self.window):
            yield x[None, start - self.context : start + self.window].astype(self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "audio", "sample_rate": self.sample_rate, "window": self.window,
                "context": self.context, "dtype": self.dtype}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AudioSpec:
        d = dict(data)
        if d.pop("kind", "audio") != "audio":
            raise PreprocessError("audio spec: kind must be 'audio'")
        unknown = sorted(set(d) - {"sample_rate", "window", "context", "dtype"})
        if unknown:
            raise PreprocessError(
                f"audio spec: unknown field(s) {', '.join(unknown)}; known: sample_rate, window, context, dtype"
            )
        return cls(**d)


AnySpec = Union[PreprocessSpec, AudioSpec]


def with_overrides(
    spec: PreprocessSpec,
    *,
    size: str | tuple[int, int] | None = None,
    mean: str | float | Sequence[float] | None = None,
    std: str | float | Sequence[float] | None = None,
    resize: str | None = None,
    channels: str | None = None,
) -> PreprocessSpec:
    """``spec`` with the given fields replaced (the rest kept); text as the CLI takes it: ``size="224x224"``,
    ``mean="123.7,116.3,103.5"``, ``channels="bgr"``. A bad value is a :class:`PreprocessError` naming it."""
    changes: dict[str, Any] = {}
    if size is not None:
        changes["size"] = parse_size(size) if isinstance(size, str) else size
    for name, value in (("mean", mean), ("std", std)):
        if value is not None:
            changes[name] = parse_floats(name, value) if isinstance(value, str) else value
    if resize is not None:
        changes["resize"] = resize
    if channels is not None:
        changes["channels"] = channels.upper()
    return replace(spec, **changes) if changes else spec


def parse_size(text: str) -> tuple[int, int]:
    """``"224x224"`` (or ``"224"``) -> (224, 224); anything else is a PreprocessError showing the form."""
    parts = text.lower().replace(" ", "").split("x")
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        hw = []
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) <= 0:
        raise PreprocessError(f"size '{text}' is not HxW with positive integers, e.g. 224x224")
    return (hw[0], hw[1])


def parse_floats(name: str, text: str) -> tuple[float, ...]:
    """``"127"`` or ``"123.7,116.3,103.5"`` -> floats; else a PreprocessError naming ``name``."""
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise PreprocessError(f"{name} '{text}' is not a number or 3 comma-separated numbers, e.g. 127 or "
                              "123.7,116.3,103.5") from None  # fmt: skip


def spec_from_dict(data: Mapping[str, Any]) -> AnySpec:
    """Rebuild an image or audio spec from its dict (``kind`` says which; image by default)."""
    kind = data.get("kind", "image") if isinstance(data, Mapping) else None
    if kind == "audio":
        return AudioSpec.from_dict(data)
    return PreprocessSpec.from_dict(data)


# ---- resizing -------------------------------------------------------------------------------
def resize(image: np.ndarray, size: tuple[int, int], *, use_cv2: bool | None = None) -> np.ndarray:
    """Bilinear resize of an (H, W[, C]) image to ``size`` (h, w), same dtype (uint8 is rounded).

    Uses ``cv2.resize(INTER_LINEAR)`` when OpenCV is importable (``use_cv2=None``), else numpy
    with the same pixel-centre convention.
    """
    h, w = int(size[0]), int(size[1])
    if image.shape[0] == h and image.shape[1] == w:
        return image
    if use_cv2 is not False:
        cv2 = _cv2()
        if cv2 is not None:
            return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        if use_cv2:
            raise PreprocessError('resize: OpenCV is not installed; pip install "edge-sdk[camera]"')
    return _resize_numpy(image, (h, w))


def _resize_numpy(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    y0, y1, wy = _axis(size[0], image.shape[0])
    x0, x1, wx = _axis(size[1], image.shape[1])
    a = image.astype(np.float32)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[..., None]
    top, bottom = a[y0], a[y1]
    rows = top + (bottom - top) * wy[:, None, None]
    left, right = rows[:, x0], rows[:, x1]
    out = left + (right - left) * wx[None, :, None]
    if squeeze:
        out = out[..., 0]
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(image.dtype, copy=False)


def _axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights along one axis (half-pixel centres, clamped like OpenCV)."""
    f = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    f = np.clip(f, 0.0, n_in - 1)
    i0 = np.floor(f).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (f - i0).astype(np.float32)


_CV2: Any = None


def _cv2() -> Any:
    global _CV2
    if _CV2 is None:
        try:
            import cv2

            _CV2 = cv2
        except ImportError:
            _CV2 = False
    return _CV2 or None


# ---- validation helpers ---------------------------------------------------------------------
def _cover_size(src: tuple[int, int], dst: tuple[int, int], crop_fraction: float) -> tuple[int, int]:
    s = max(dst[0] / src[0], dst[1] / src[1]) / crop_fraction
    return max(dst[0], round(src[0] * s)), max(dst[1], round(src[1] * s))


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise PreprocessError(f"preprocess: expected a numpy image array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise PreprocessError(
            f"preprocess: expected a uint8 image (0..255), got {image.dtype}; "
            "convert with (img * 255).clip(0, 255).astype(np.uint8) if it is 0..1 float"
        )
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape[:2]:
        raise PreprocessError(f"preprocess: expected an image shaped (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[..., :3] if image.shape[2] == 4 else image


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _check_size(size: Any) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    ok = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)
    )
    if not ok:
        raise PreprocessError(f"preprocess spec: size must be [height, width] of positive integers, got {size!r}")
    return (int(size[0]), int(size[1]))


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise PreprocessError(f"preprocess spec: {name} {value!r} is not one of {', '.join(choices)}")


def _check_vector(name: str, value: Any) -> tuple[float, ...]:
    vals = value if isinstance(value, (tuple, list, np.ndarray)) else (value,)
    if len(vals) not in (1, 3) or not all(_is_real(v) for v in vals):
        raise PreprocessError(
            f"preprocess spec: {name} must be a number or a list of 3 numbers (one per channel), got {value!r}"
        )
    return tuple(float(v) for v in vals)


def _check_quant(quant: Any, dtype: str) -> tuple[float, int] | None:
    if quant is None:
        return None
    if dtype not in _INT_RANGE:
        raise PreprocessError(f"preprocess spec: quant applies to uint8/int8 inputs, but dtype is {dtype}")
    ok = isinstance(quant, (tuple, list)) and len(quant) == 2 and _is_real(quant[0]) and quant[0] > 0
    if not ok or isinstance(quant[1], bool) or not isinstance(quant[1], (int, np.integer)):
        raise PreprocessError(f"preprocess spec: quant must be (scale > 0, integer zero_point), got {quant!r}")
    return (float(quant[0]), int(quant[1]))
