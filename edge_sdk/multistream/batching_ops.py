"""Batch geometry for a model shared by many streams: can its inputs be stacked, and how to stack and split.

A model is batched across streams only when every input and output has a leading batch axis that is
dynamic (any size) or fixed at N > 1 (a short batch is padded with its last sample and the padding's
outputs are discarded). A model with batch fixed at 1, or with an input that has no batch axis (a scalar
sample rate, a recurrent state laid out as ``[2, batch, 128]``), runs one request at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: requests per call when the batch axis is dynamic and ``max_batch`` is not given
DEFAULT_DYNAMIC_BATCH = 8


@dataclass(frozen=True)
class BatchPlan:
    """How calls to one model are grouped: ``capacity`` samples per call; ``fixed``: the batch axis is static
    (pad short batches to ``capacity``); ``capacity == 1`` means one request per call."""

    capacity: int
    fixed: bool

    @property
    def batches(self) -> bool:
        return self.capacity > 1


def batch_plan(model: Any, max_batch: int | None = None) -> BatchPlan:
    """The :class:`BatchPlan` for ``model``'s tensors; ``max_batch`` caps a dynamic batch (1 turns batching off)."""
    dims = [s.shape[0] if len(s.shape) >= 2 else "none" for s in (*model.inputs, *model.outputs)]
    if not dims or "none" in dims or (max_batch is not None and max_batch <= 1):
        return BatchPlan(1, False)
    fixed = {d for d in dims if d is not None}
    if not fixed:
        return BatchPlan(max(1, max_batch or DEFAULT_DYNAMIC_BATCH), False)
    if len(fixed) == 1 and None not in dims[: len(model.inputs)]:
        n = int(fixed.pop())
        if n > 1 and (max_batch is None or max_batch >= n):
            return BatchPlan(n, True)
    return BatchPlan(1, False)


def as_list(model: Any, feeds: Any) -> list[np.ndarray] | None:
    """``feeds`` (an array, a list in input order or a ``{name: array}`` dict) as a list in the model's input
    order, or None when it does not name the model's inputs (the model itself then explains the mismatch)."""
    names = [s.name for s in model.inputs]
    if isinstance(feeds, np.ndarray):
        return [feeds] if len(names) == 1 else None
    if isinstance(feeds, Mapping):
        if len(feeds) != len(names) or any(n not in feeds for n in names):
            return None
        return [np.asarray(feeds[n]) for n in names]
    if isinstance(feeds, Sequence) and len(feeds) == len(names):
        return [np.asarray(x) for x in feeds]
    return None


def signature(model: Any, arrays: list[np.ndarray] | None, dequantize: Any) -> tuple[Any, ...] | None:
    """What requests must share to be stacked (per input: sample shape and dtype), or None when this request
    must run alone (not a list of arrays with a batch axis that fits the model's input)."""
    if arrays is None:
        return None
    sig: list[Any] = [dequantize]
    batch = None
    for spec, x in zip(model.inputs, arrays):
        if x.ndim != len(spec.shape) or x.ndim < 2 or x.shape[0] < 1:
            return None
        if any(d is not None and d != g for d, g in zip(spec.shape[1:], x.shape[1:])):
            return None
        if batch is not None and x.shape[0] != batch:
            return None
        batch = x.shape[0]
        sig.append((x.shape[1:], x.dtype.str))
    return tuple(sig)


def stack(requests: Sequence[list[np.ndarray]], capacity: int, fixed: bool) -> list[np.ndarray]:
    """Concatenate each input of ``requests`` along axis 0; a fixed batch is padded with the last sample."""
    out = []
    for i in range(len(requests[0])):
        parts = [r[i] for r in requests]
        x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        if fixed and x.shape[0] < capacity:
            pad = np.repeat(x[-1:], capacity - x.shape[0], axis=0)
            x = np.concatenate([x, pad], axis=0)
        out.append(x)
    return out


def split(outputs: dict[str, np.ndarray], sizes: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """The rows of each output that belong to each request (``sizes``: its samples, in stacking order)."""
    parts: list[dict[str, np.ndarray]] = [{} for _ in sizes]
    for name, arr in outputs.items():
        start = 0
        for j, n in enumerate(sizes):
            parts[j][name] = arr[start : start + n]
            start += n
    return parts
