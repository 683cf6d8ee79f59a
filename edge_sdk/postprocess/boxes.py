"""Box utilities shared by detectors: vectorised IoU and greedy non-maximum suppression (numpy only).

:func:`nms` keeps the ``pre_nms_topk`` best candidates before suppressing (a low threshold on a YOLO
head leaves thousands, and NMS is quadratic), computes their IoU matrix once, and stops as soon as
``max_det`` boxes are kept; the result is an index array, never a Python list. ``classes`` makes it
class-aware (boxes of different classes never suppress each other).
"""

from __future__ import annotations

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N,4 xyxy) against every box in ``b`` (M,4): an (N, M) matrix."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def top_k(scores: np.ndarray, k: int | None) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first (all of them, sorted, when ``k`` is None or larger)."""
    scores = np.asarray(scores).reshape(-1)
    n = scores.size
    if k is not None and 0 < k < n:
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.argsort(-scores[part], kind="stable")]
    return np.argsort(-scores, kind="stable")


def nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float = 0.3, *, max_det: int | None = None,
    pre_nms_topk: int | None = None, classes: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Indices of the boxes kept by greedy NMS (IoU > ``threshold`` with a better kept box suppresses), best first.

    ``pre_nms_topk``: only the best that many candidates take part; ``max_det``: at most that many kept;
    ``classes``: per-box class ids, for class-aware NMS.
    """
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    order = top_k(scores, pre_nms_topk)
    if order.size == 0:
        return np.zeros(0, np.int64)
    overlap = iou(np.asarray(boxes)[order], np.asarray(boxes)[order]) > threshold
    if classes is not None:
        cls = np.asarray(classes).reshape(-1)[order]
        overlap &= cls[:, None] == cls[None, :]
    np.fill_diagonal(overlap, False)
    limit = order.size if max_det is None else max(0, int(max_det))
    alive = np.ones(order.size, bool)
    kept = np.zeros(order.size, bool)
    count, i = 0, 0
    while count < limit:
        rest = np.flatnonzero(alive[i:])
        if rest.size == 0:
            break
        i += int(rest[0])  # the best box not suppressed yet
        kept[i] = True
        count += 1
        alive[i] = False
        alive &= ~overlap[i]
    return order[kept].astype(np.int64)
