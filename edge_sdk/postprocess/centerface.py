"""CenterFace decoding: heatmap peaks + scale + offset -> face boxes (and 5 landmarks), vectorised.

Follows the reference decoder (stride 4, ``exp(scale) * 4`` sizes, 0.5-pixel centre
offset) without its per-peak Python loop. Outputs may arrive NCHW (ONNX, OpenVINO)
or NHWC (TFLite from onnx2tf); both are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_sdk.postprocess.boxes import nms

STRIDE = 4


@dataclass
class Faces:
    boxes: np.ndarray  # (N, 4) xyxy in input-image pixels
    scores: np.ndarray  # (N,)
    landmarks: np.ndarray  # (N, 10) x,y pairs


def _nchw(x: np.ndarray, channels: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 4 and x.shape[1] != channels and x.shape[3] == channels:
        x = np.transpose(x, (0, 3, 1, 2))
    return x


def decode(
    heatmap: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    landmarks: np.ndarray | None,
    input_hw: tuple[int, int],
    *,
    threshold: float = 0.5,
    nms_threshold: float = 0.3,
    max_det: int | None = None,
    pre_nms_topk: int | None = None,
) -> Faces:
    """Faces found in one image (batch index 0): at most ``max_det``, from the ``pre_nms_topk`` best peaks."""
    hm = _nchw(heatmap, 1)[0, 0]
    sc, off = _nchw(scale, 2)[0], _nchw(offset, 2)[0]
    rows, cols = np.nonzero(hm > threshold)
    h, w = input_hw
    if rows.size == 0:
        return Faces(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 10), np.float32))
    s0 = np.exp(sc[0, rows, cols]) * STRIDE
    s1 = np.exp(sc[1, rows, cols]) * STRIDE
    x1 = np.clip((cols + off[1, rows, cols] + 0.5) * STRIDE - s1 / 2, 0, w)
    y1 = np.clip((rows + off[0, rows, cols] + 0.5) * STRIDE - s0 / 2, 0, h)
    boxes = np.stack([x1, y1, np.minimum(x1 + s1, w), np.minimum(y1 + s0, h)], axis=1).astype(np.float32)
    scores = hm[rows, cols].astype(np.float32)
    if landmarks is not None:
        lm = _nchw(landmarks, 10)[0][:, rows, cols]  # (10, N): y0, x0, y1, x1, ...
        pts = np.empty((rows.size, 10), np.float32)
        pts[:, 0::2] = lm[1::2].T * s1[:, None] + x1[:, None]
        pts[:, 1::2] = lm[0::2].T * s0[:, None] + y1[:, None]
    else:
        pts = np.zeros((rows.size, 10), np.float32)
    keep = nms(boxes, scores, nms_threshold, max_det=max_det, pre_nms_topk=pre_nms_topk)
    return Faces(boxes[keep], scores[keep], pts[keep])
