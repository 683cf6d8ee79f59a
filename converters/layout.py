"""Feed the same data to a source and an artifact whose layouts differ (NCHW source, NHWC TFLite)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edge_sdk.tensor_spec import TensorSpec


def _layout_perms(ndim: int) -> tuple[tuple[int, ...], ...]:
    """Channels-first -> channels-last and back for a rank-``ndim`` tensor (NCW/NWC, NCHW/NHWC, NCDHW/NDHWC:
    onnx2tf moves the channels of every input that reaches a convolution, 1-D ones too); () below rank 3."""
    if ndim < 3:
        return ()
    to_last = (0, *range(2, ndim), 1)
    to_first = (0, ndim - 1, *range(1, ndim - 1))
    return (to_last,) if to_last == to_first else (to_last, to_first)


def _matches(shape: Sequence[int | None], target: Sequence[int | None]) -> bool:
    return len(shape) == len(target) and all(t is None or s == t for s, t in zip(shape, target))


def adapt_array(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """``x`` reshaped to ``spec``: as is, channels-first <-> channels-last transposed (any rank >= 3), or
    dtype-cast for float inputs."""
    out = x
    if not _matches(x.shape, spec.shape):
        for perm in _layout_perms(x.ndim):
            if _matches(np.transpose(x, perm).shape, spec.shape):
                out = np.ascontiguousarray(np.transpose(x, perm))
                break
    if out.dtype != spec.dtype and spec.dtype.kind == "f" and out.dtype.kind == "f":
        out = out.astype(spec.dtype)
    return out


def base_name(name: str) -> str:
    """``serving_default_state:0`` -> ``state``: a TFLite signature tensor's name as the source called it."""
    return name.split(":")[0].removeprefix("serving_default_")


def order_by_name(feeds: Sequence[np.ndarray], specs: Sequence[TensorSpec], names: Sequence[str]) -> list[np.ndarray]:
    """``feeds`` (in ``names`` order) put in ``specs``' order when every spec names a distinct feed, else when every
    spec fits exactly one feed by shape (a converter that renamed the inputs: a PyTorch program's ``input_0`` /
    ``input_1`` became TFLite's ``serving_default_y:0`` / ``serving_default_x:0``, sorted), else as given."""
    if len(specs) != len(feeds) or len(feeds) < 2:
        return list(feeds)
    if len(names) == len(feeds):
        index = {n: i for i, n in enumerate(names)}
        picks = [index.get(s.name, index.get(base_name(s.name))) for s in specs]
        if None not in picks and sorted(picks) == list(range(len(names))):  # type: ignore[type-var]
            return [feeds[i] for i in picks]  # type: ignore[index]
    by_shape = [[i for i, x in enumerate(feeds) if _fits(x, s)] for s in specs]
    if all(len(f) == 1 for f in by_shape) and sorted(f[0] for f in by_shape) == list(range(len(feeds))):
        return [feeds[f[0]] for f in by_shape]
    return list(feeds)


def _fits(x: np.ndarray, spec: TensorSpec) -> bool:
    """``x`` can feed ``spec``: same rank, and its dims are the spec's fixed ones as they are or in another layout."""
    if x.ndim != len(spec.shape):
        return False
    if all(d is None or d == g for d, g in zip(spec.shape, x.shape)):
        return True
    fixed = sorted(d for d in spec.shape if d is not None)
    return _sub_multiset(fixed, list(x.shape))


def _sub_multiset(small: list[int], big: list[int]) -> bool:
    rest = list(big)
    for d in small:
        if d not in rest:
            return False
        rest.remove(d)
    return True


def adapt_feeds(
    feeds: Sequence[np.ndarray], specs: Sequence[TensorSpec], names: Sequence[str] = ()
) -> list[np.ndarray]:
    """Source-ordered feeds for an artifact's inputs: matched by name when ``names`` allow, else by position.

    Converters may reorder inputs (TFLite sorts a signature's inputs by name).
    """
    return [adapt_array(x, s) for x, s in zip(order_by_name(feeds, specs, names), specs)]


def align_output(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``candidate`` brought to ``reference``'s layout when it is the channels-last/first transpose of it."""
    if candidate.shape == reference.shape:
        return candidate
    if candidate.ndim == reference.ndim:
        for perm in _layout_perms(candidate.ndim)[::-1]:  # channels-last artifact -> channels-first source first
            if np.transpose(candidate, perm).shape == reference.shape:
                return np.transpose(candidate, perm)
    if candidate.size == reference.size:
        return candidate.reshape(reference.shape)
    return candidate


def pair_outputs(reference: list[np.ndarray], candidate: list[np.ndarray]) -> list[int]:
    """For each reference output, the index of the candidate output that holds it.

    Converters may reorder outputs (tf2onnx sorts, onnx2tf renames); pair by position when the
    shapes agree, else by the unique candidate with the same number of elements and closest values.
    """
    if len(reference) == len(candidate) and all(
        align_output(c, r).shape == r.shape for r, c in zip(reference, candidate)
    ):
        order = list(range(len(reference)))
        if all(_close(r, align_output(c, r)) for r, c in zip(reference, candidate)) or len(reference) == 1:
            return order
    chosen: list[int] = []
    for r in reference:
        options = [i for i, c in enumerate(candidate) if c.size == r.size and i not in chosen]
        if not options:
            raise ValueError(f"no converted output has {r.size} elements like the original's {r.shape}")
        best = min(options, key=lambda i: float(np.mean(np.abs(align_output(candidate[i], r) - r))))
        chosen.append(best)
    return chosen


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    denom = float(np.abs(a).mean()) + 1e-6
    return float(np.abs(a.astype(np.float64) - b).mean()) / denom < 0.5
