"""TensorSpec: what a model input or output looks like, independent of the runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization of a tensor: ``real = scale * (q - zero_point)``.

    ``axis`` is set for per-channel parameters (then scale/zero_point are arrays).
    """

    scale: Any
    zero_point: Any
    axis: int | None = None

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Integer tensor -> float32 using these parameters."""
        scale, zp = self._broadcast(q.ndim)
        return ((q.astype(np.float32) - zp) * scale).astype(np.float32, copy=False)

    def quantize(self, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Float tensor -> integer ``dtype`` (rounded half to even, saturated)."""
        scale, zp = self._broadcast(np.ndim(x))
        info = np.iinfo(dtype)
        q = np.rint(np.asarray(x, dtype=np.float32) / scale) + zp
        return np.clip(q, info.min, info.max).astype(dtype)

    def _broadcast(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        scale = np.asarray(self.scale, dtype=np.float32)
        zp = np.asarray(self.zero_point, dtype=np.float32)
        if self.axis is not None and scale.ndim == 1 and ndim > 0:
            shape = [1] * ndim
            shape[self.axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        return scale, zp


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape, dtype and quantization of one model input or output.

    ``shape`` holds ``None`` for a dynamic dimension; ``dim_names`` keeps the
    symbolic name of such a dimension when the format stores one (``"batch"``).
    ``layout`` is a hint (``"NCHW"``, ``"NHWC"``, ``"NC"``...) or ``None``.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype
    layout: str | None = None
    quant: QuantParams | None = None
    dim_names: tuple[str | None, ...] = field(default=())

    @property
    def is_dynamic(self) -> bool:
        return any(d is None for d in self.shape)

    @property
    def is_quantized(self) -> bool:
        return self.quant is not None

    def shape_str(self) -> str:
        """Readable shape: dynamic dims shown by name or ``?``."""
        names = self.dim_names or (None,) * len(self.shape)
        parts = [str(d) if d is not None else (n or "?") for d, n in zip(self.shape, names)]
        return "[" + ",".join(parts) + "]"

    def concrete_shape(self, fill: int = 1) -> tuple[int, ...]:
        """Shape with every dynamic dim replaced by ``fill``."""
        return tuple(fill if d is None else d for d in self.shape)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": np.dtype(self.dtype).name,
            "layout": self.layout,
        }
        if self.dim_names and any(self.dim_names):
            d["dim_names"] = list(self.dim_names)
        if self.quant is not None:
            d["quantization"] = {
                "scale": np.asarray(self.quant.scale).tolist(),
                "zero_point": np.asarray(self.quant.zero_point).tolist(),
                "axis": self.quant.axis,
            }
        return d


def guess_layout(shape: tuple[int | None, ...]) -> str | None:
    """Best-effort layout hint from a shape (images: channels of 1, 3 or 4)."""
    if len(shape) == 4:
        c_first, c_last = shape[1], shape[3]
        if c_first in (1, 3, 4) and c_last not in (1, 3, 4):
            return "NCHW"
        if c_last in (1, 3, 4) and c_first not in (1, 3, 4):
            return "NHWC"
        return None
    if len(shape) == 3:
        return "NTC" if shape[-1] is not None and shape[-1] > 1 else None
    if len(shape) == 2:
        return "NC"
    return None
