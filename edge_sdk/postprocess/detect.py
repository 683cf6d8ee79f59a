"""Detection: boxes mapped back to frame pixels, from CenterFace heatmaps or YOLO-style box tensors.

``make_detector(model, preprocess=spec, threshold=0.5, nms=0.45, max_det=100, pre_nms_topk=1000,
blur=False)`` looks at the model's outputs and picks the decoder (``decoder="centerface"|"yolo"`` forces one):

- CenterFace: four stride-4 maps, ``heatmap`` (1 channel), ``scale`` (2), ``offset`` (2),
  ``landmarks`` (10), NCHW or NHWC;
- YOLO: one output ``(1, N, 5 + C)`` (x, y, w, h, objectness, class scores: v5 style) or
  ``(1, 4 + C, N)`` (no objectness: v8 style), boxes in input pixels or normalised to 0..1.

Candidates above ``threshold`` are capped to the ``pre_nms_topk`` best before non-maximum suppression
(vectorised numpy, class-aware, :func:`edge_sdk.postprocess.boxes.nms`), which keeps at most ``max_det``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from edge_sdk.errors import OutputMismatchError, TaskError
from edge_sdk.postprocess.boxes import nms as nms_numpy

CENTERFACE_CHANNELS = {"heatmap": 1, "scale": 2, "offset": 2, "landmarks": 10}


@dataclass
class Detections:
    """Boxes (N, 4) xyxy in frame pixels, scores, class ids and labels; landmarks for faces."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    labels: list[str]
    landmarks: np.ndarray | None = None
    blur: bool = False
    frame_hw: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    def to_event(self) -> dict[str, Any]:
        return {
            "count": len(self),
            "detections": [
                {"box": [round(float(v), 1) for v in b], "score": round(float(s), 4), "class": int(c), "label": lab}
                for b, s, c, lab in zip(self.boxes, self.scores, self.classes, self.labels)
            ],
        }

    def annotate(self, image: np.ndarray) -> np.ndarray:
        from edge_sdk.postprocess.draw import boxes

        names = [f"{lab} {s:.0%}" for lab, s in zip(self.labels, self.scores)]
        return boxes(image.copy(), self.boxes, names, blur=self.blur)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, **kw: Any) -> np.ndarray:
    """Indices kept by greedy NMS, best first (see :func:`edge_sdk.postprocess.boxes.nms` for ``kw``)."""
    return nms_numpy(boxes, scores, threshold, **kw)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TaskError(f"task 'detect': {name} must be a whole number >= 1, got {value!r}; e.g. --post-opt {name}=100")
    return int(value)


class _Detector:
    def __init__(self, model: Any, preprocess: Any, threshold: float, nms_threshold: float, blur: bool,
                 max_det: int = 100, pre_nms_topk: int = 1000) -> None:  # fmt: skip
        if preprocess is None:
            from edge_sdk.pipeline.model_info import model_preprocess

            preprocess = model_preprocess(model)
        self.spec = preprocess
        self.threshold = float(threshold)
        self.nms_threshold = float(nms_threshold)
        self.blur = blur
        self.max_det = _count("max_det", max_det)
        self.pre_nms_topk = _count("pre_nms_topk", pre_nms_topk)

    def _to_frame(self, boxes: np.ndarray, frame: Any) -> tuple[np.ndarray, tuple[int, int]]:
        if frame is None:
            return boxes, tuple(self.spec.size)
        hw = tuple(np.asarray(frame.data if hasattr(frame, "data") else frame).shape[:2])
        out = self.spec.geometry(hw).to_source(boxes) if len(boxes) else boxes
        if len(out):
            out[:, 0::2] = np.clip(out[:, 0::2], 0, hw[1])
            out[:, 1::2] = np.clip(out[:, 1::2], 0, hw[0])
        return out, hw


class CenterFaceDetector(_Detector):
    """Faces from CenterFace's four maps (see :mod:`edge_sdk.postprocess.centerface`)."""

    def __init__(self, model: Any, names: dict[str, str], preprocess: Any, threshold: float, nms_threshold: float,
                 blur: bool, max_det: int = 100, pre_nms_topk: int = 1000) -> None:  # fmt: skip
        super().__init__(model, preprocess, threshold, nms_threshold, blur, max_det, pre_nms_topk)
        self.names = names

    def __call__(self, outputs: dict[str, np.ndarray], frame: Any = None) -> Detections:
        from edge_sdk.postprocess.centerface import decode

        n = self.names
        lms = outputs.get(n["landmarks"]) if "landmarks" in n else None
        faces = decode(outputs[n["heatmap"]], outputs[n["scale"]], outputs[n["offset"]], lms, tuple(self.spec.size),
                       threshold=self.threshold, nms_threshold=self.nms_threshold, max_det=self.max_det,
                       pre_nms_topk=self.pre_nms_topk)  # fmt: skip
        boxes, hw = self._to_frame(faces.boxes, frame)
        pts = faces.landmarks
        if frame is not None and len(pts):
            g = self.spec.geometry(hw)
            pts = pts.copy()
            pts[:, 0::2] = (pts[:, 0::2] - g.offset_x) / g.scale_x
            pts[:, 1::2] = (pts[:, 1::2] - g.offset_y) / g.scale_y
        k = len(faces.scores)
        return Detections(boxes, faces.scores, np.zeros(k, np.int64), ["face"] * k, pts, self.blur, hw)


class YoloDetector(_Detector):
    """Boxes from one YOLO-style output (v5: with objectness; v8: without, transposed)."""

    def __init__(self, model: Any, output: str, version: str, preprocess: Any, threshold: float,
                 nms_threshold: float, blur: bool, labels: Sequence[str] | None, max_det: int = 100,
                 pre_nms_topk: int = 1000) -> None:  # fmt: skip
        super().__init__(model, preprocess, threshold, nms_threshold, blur, max_det, pre_nms_topk)
        self.output, self.version = output, version
        self.labels = list(labels) if labels is not None else None

    def __call__(self, outputs: dict[str, np.ndarray], frame: Any = None) -> Detections:
        y = np.asarray(outputs[self.output], dtype=np.float32)[0]
        if self.version == "v8":
            y = y.T  # (N, 4 + C)
            cls_scores = y[:, 4:]
        else:
            cls_scores = y[:, 5:] * y[:, 4:5] if y.shape[1] > 5 else y[:, 4:5]
        cls = cls_scores.argmax(axis=1) if cls_scores.shape[1] > 1 else np.zeros(len(y), np.int64)
        score = cls_scores[np.arange(len(y)), cls]
        keep = score > self.threshold
        y, cls, score = y[keep], cls[keep], score[keep]
        cx, cy, w, h = y[:, 0], y[:, 1], y[:, 2], y[:, 3]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        if len(boxes) and float(np.abs(boxes).max()) <= 1.5:  # normalised coordinates
            ih, iw = self.spec.size
            boxes = boxes * np.array([iw, ih, iw, ih], np.float32)
        if len(boxes):
            idx = nms(boxes, score, self.nms_threshold, max_det=self.max_det, pre_nms_topk=self.pre_nms_topk,
                      classes=cls)  # fmt: skip
            boxes, cls, score = boxes[idx], cls[idx], score[idx]
        boxes, hw = self._to_frame(boxes.astype(np.float32), frame)
        names = [self.labels[c] if self.labels and c < len(self.labels) else str(int(c)) for c in cls]
        return Detections(boxes, score.astype(np.float32), cls.astype(np.int64), names, None, self.blur, hw)


def make_detector(
    model: Any, *, preprocess: Any = None, labels: Sequence[str] | None = None, threshold: float = 0.5,
    nms: float = 0.45, blur: bool = False, decoder: str | None = None, max_det: int = 100,
    pre_nms_topk: int = 1000, **_: Any,
) -> _Detector:  # fmt: skip
    """The detector that fits ``model``'s outputs; OutputMismatchError says which output does not fit and why.

    ``pre_nms_topk``: candidates kept (best scores) before NMS; ``max_det``: detections kept after it.
    """
    caps = {"max_det": _count("max_det", max_det), "pre_nms_topk": _count("pre_nms_topk", pre_nms_topk)}
    outs = {s.name: list(s.shape) for s in model.outputs}
    listing = ", ".join(f"'{n}' [{','.join('?' if d is None else str(d) for d in sh)}]" for n, sh in outs.items())
    if decoder not in (None, "centerface", "yolo"):
        raise OutputMismatchError(f"task 'detect': decoder must be centerface or yolo, got {decoder!r}")
    if decoder in (None, "centerface") and len(outs) >= 3:
        names, why = _centerface_names(outs)
        if names is not None:
            return CenterFaceDetector(model, names, preprocess, threshold, nms, blur, **caps)
        if decoder == "centerface":
            raise OutputMismatchError(f"task 'detect' (centerface): {why}; the model's outputs: {listing}")
    if decoder in (None, "yolo") and len(outs) == 1:
        name, shape = next(iter(outs.items()))
        if len(shape) == 3 and all(isinstance(d, int) for d in shape[1:]):
            a, b = shape[1], shape[2]
            if a >= 5 and b > a:  # (1, 4 + C, N): many more boxes than values per box
                return YoloDetector(model, name, "v8", preprocess, threshold, nms, blur, labels, **caps)
            if b >= 5:
                return YoloDetector(model, name, "v5", preprocess, threshold, nms, blur, labels, **caps)
        raise OutputMismatchError(
            f"task 'detect': output '{name}' has shape [{','.join(map(str, shape))}], which is not a YOLO box tensor "
            "(1, N, 5 + classes) or (1, 4 + classes, N) with static sizes; is this a classifier (--task classify)?"
        )
    raise OutputMismatchError(
        f"task 'detect': the model's outputs ({listing}) fit no detector: CenterFace needs four maps "
        "heatmap (1 channel), scale (2), offset (2), landmarks (10); "
        "YOLO needs one output (1, N, 5 + C) or (1, 4 + C, N)"
    )


def _centerface_names(outs: dict[str, list[Any]]) -> tuple[dict[str, str] | None, str]:
    """Map role -> output name by name, else by channel count in output order."""
    if set(CENTERFACE_CHANNELS) - {"landmarks"} <= set(outs):
        names = {r: r for r in CENTERFACE_CHANNELS if r in outs}
    else:
        by_ch: dict[int, list[str]] = {}
        for n, sh in outs.items():
            if len(sh) == 4:
                ch = sh[1] if sh[1] in (1, 2, 10) else sh[3]
                by_ch.setdefault(ch, []).append(n)
        if len(by_ch.get(1, [])) != 1 or len(by_ch.get(2, [])) != 2:
            return None, "expected 4-D outputs with 1 (heatmap), 2 (scale), 2 (offset) and 10 (landmarks) channels"
        names = {"heatmap": by_ch[1][0], "scale": by_ch[2][0], "offset": by_ch[2][1]}
        if len(by_ch.get(10, [])) == 1:
            names["landmarks"] = by_ch[10][0]
    for role, name in names.items():
        sh = outs[name]
        ch = CENTERFACE_CHANNELS[role]
        if len(sh) != 4 or ch not in (sh[1], sh[3]):
            return None, f"output '{name}' ({role}) has shape {sh}, expected 4-D with {ch} channel(s)"
    return names, ""
