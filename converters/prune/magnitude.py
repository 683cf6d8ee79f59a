"""Unstructured magnitude pruning on numpy arrays, shared by the PyTorch, Keras and ONNX pruners."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from converters.prune.select import Candidate, amount_for
from converters.prune.spec import LayerReport, PruneSpec, sparsity


def zero_smallest(weights: Mapping[str, np.ndarray], spec: PruneSpec) -> dict[str, np.ndarray]:
    """The arrays with their smallest-magnitude entries set to 0.

    ``scope="layer"``: each array loses ``amount`` (or its ``layer_amounts`` entry) of its entries.
    ``scope="global"``: one magnitude threshold over all arrays without a per-layer amount, so layers with
    many small weights lose more. Ties are broken by position, so the count removed is exact.
    """
    out: dict[str, np.ndarray] = {}
    pooled = [n for n in weights if spec.scope == "global" and n not in spec.layer_amounts]
    for name, w in weights.items():
        if name not in pooled:
            out[name] = _zero_fraction(w, amount_for(name, spec))
    if pooled:
        flat = np.concatenate([np.abs(weights[n]).ravel() for n in pooled])
        k = int(round(spec.amount * flat.size))
        drop = np.zeros(flat.size, dtype=bool)
        drop[np.argsort(flat, kind="stable")[:k]] = True
        start = 0
        for n in pooled:
            w = weights[n]
            mask = drop[start : start + w.size].reshape(w.shape)
            out[n] = np.where(mask, 0, w).astype(w.dtype)
            start += w.size
    return out


def _zero_fraction(w: np.ndarray, amount: float) -> np.ndarray:
    k = int(round(amount * w.size))
    flat = w.copy().ravel()
    flat[np.argsort(np.abs(flat), kind="stable")[:k]] = 0
    return flat.reshape(w.shape)


def layer_reports(
    candidates: list[Candidate],
    reasons: Mapping[str, str],
    before: Mapping[str, np.ndarray],
    after: Mapping[str, np.ndarray],
) -> list[LayerReport]:
    """One report per candidate layer (sparsity before / after, or why it was skipped)."""
    reports = []
    for c in candidates:
        b = before[c.name]
        a = after.get(c.name, b)
        reports.append(
            LayerReport(c.name, c.kind, tuple(b.shape), int(b.size), sparsity(b), sparsity(a), skipped=reasons[c.name])
        )
    return reports
