"""Detection: boxes mapped back to frame pixels, from CenterFace heatmaps or YOLO-style box tensors.

``make_detector(model, preprocess=spec, threshold=0.5, nms=0.45, max_det=100, pre_nms_topk=1000,
blur=False, classes=None, layout=None)`` looks at the model's outputs and picks the decoder
(``decoder="centerface"|"yolo"`` forces one):

- CenterFace: four stride-4 maps, ``heatmap`` (1 channel), ``scale`` (2), ``offset`` (2),
  ``landmarks`` (10), NCHW or NHWC;
- YOLO, one output, boxes in input pixels or normalised to 0..1 (``layout=`` forces one of these):

  - ``v5``: ``(1, N, 5 + C)`` x, y, w, h, objectness, class scores (YOLOv5, v7);
  - ``v8``: ``(1, 4 + C, N)`` x, y, w, h, class scores, no objectness (YOLOv8, YOLO11, yolov5u, ultralytics'
    default export), or the same transposed ``(1, N, 4 + C)``;
  - ``end2end``: ``(1, K, 6)`` x1, y1, x2, y2, score, class after the model's own selection (NMS-free
    YOLOv10 / YOLO26, ultralytics ``export(nms=True)``): no NMS here, only threshold, classes and max_det.

  Guessing from the shape: ``(1, a, b)`` with ``b > a`` is v8; ``b == 6`` with at most 1000 rows is end2end;
  else ``b`` = 5 + len(labels) is v5 and 4 + len(labels) the transposed v8, then 85 (v5) and 84 (v8, COCO),
  and v5 otherwise. A model with 80 classes and no labels gets COCO's names (:func:`edge_sdk.labels.coco80_labels`,
  said in a log line); ``labels=`` (``--labels FILE``) overrides.

``classes``: keep only these classes, by name or id (``"person,car"``, ``"0,2"``, ``[0, 2]``); an unknown name is a
TaskError listing close matches. Candidates above ``threshold`` are capped to the ``pre_nms_topk`` best before
non-maximum suppression (vectorised numpy, class-aware, :func:`edge_sdk.postprocess.boxes.nms`), which keeps at most
``max_det``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from edge_sdk.errors import OutputMismatchError, TaskOptionError
from edge_sdk.postprocess.boxes import nms as nms_numpy
from edge_sdk.postprocess.boxes import top_k

log = logging.getLogger("edge_sdk.pipeline")

CENTERFACE_CHANNELS = {"heatmap": 1, "scale": 2, "offset": 2, "landmarks": 10}
#: YOLO output layouts (``layout=``)
YOLO_LAYOUTS = ("v5", "v8", "end2end")
#: at most this many rows in an (1, K, 6) output for it to be taken as an end-to-end (NMS-free) one
END2END_MAX_ROWS = 1000


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
        why = f"task 'detect': {name} must be a whole number >= 1, got {value!r}; e.g. {name}=100"
        raise TaskOptionError(why, [name])
    return int(value)


def _fraction(name: str, value: Any, example: float) -> float:
    """A score or IoU option: a real number from 0 to 1 (a threshold of 7 silently kept nothing, -3 everything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 <= value <= 1:
        why = f"task 'detect': {name} must be a number from 0 to 1, got {value!r}; e.g. {name}={example}"
        raise TaskOptionError(why, [name])
    return float(value)


class _Detector:
    def __init__(self, model: Any, preprocess: Any, threshold: float, nms_threshold: float, blur: bool,
                 max_det: int = 100, pre_nms_topk: int = 1000,
                 class_ids: Sequence[int] | None = None) -> None:  # fmt: skip
        if preprocess is None:
            from edge_sdk.pipeline.model_info import model_preprocess

            preprocess = model_preprocess(model)
        self.spec = preprocess
        self.threshold = float(threshold)
        self.nms_threshold = float(nms_threshold)
        self.blur = blur
        self.max_det = _count("max_det", max_det)
        self.pre_nms_topk = _count("pre_nms_topk", pre_nms_topk)
        self.class_ids = None if class_ids is None else np.asarray(sorted(set(class_ids)), np.int64)

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
                 blur: bool, max_det: int = 100, pre_nms_topk: int = 1000,
                 class_ids: Sequence[int] | None = None) -> None:  # fmt: skip
        super().__init__(model, preprocess, threshold, nms_threshold, blur, max_det, pre_nms_topk, class_ids)
        self.names = names

    def __call__(self, outputs: dict[str, np.ndarray], frame: Any = None) -> Detections:
        from edge_sdk.postprocess.centerface import decode

        n = self.names
        lms = outputs.get(n["landmarks"]) if "landmarks" in n else None
        faces = decode(outputs[n["heatmap"]], outputs[n["scale"]], outputs[n["offset"]], lms, tuple(self.spec.size),
                       threshold=self.threshold, nms_threshold=self.nms_threshold, max_det=self.max_det,
                       pre_nms_topk=self.pre_nms_topk)  # fmt: skip
        if self.class_ids is not None and 0 not in self.class_ids:  # classes= filtered faces out
            faces.boxes, faces.scores, faces.landmarks = faces.boxes[:0], faces.scores[:0], faces.landmarks[:0]
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
    """Boxes from one YOLO-style output; ``version``: ``v5`` (objectness), ``v8`` ((1, 4 + C, N)), ``v8t``
    ((1, N, 4 + C)) or ``end2end`` ((1, K, 6) boxes already selected by the model: no NMS)."""

    def __init__(self, model: Any, output: str, version: str, preprocess: Any, threshold: float,
                 nms_threshold: float, blur: bool, labels: Sequence[str] | None, max_det: int = 100,
                 pre_nms_topk: int = 1000, class_ids: Sequence[int] | None = None) -> None:  # fmt: skip
        super().__init__(model, preprocess, threshold, nms_threshold, blur, max_det, pre_nms_topk, class_ids)
        self.output, self.version = output, version
        self.labels = list(labels) if labels is not None else None

    @property
    def layout(self) -> str:
        """The ``layout=`` name of this decoder (v5, v8 or end2end)."""
        return "v8" if self.version == "v8t" else self.version

    def _decode(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows (N, 4 + ...), class ids (N,) and scores (N,) of every candidate above the threshold."""
        if self.version == "end2end":
            if y.shape[1] < 6:
                raise OutputMismatchError(
                    f"task 'detect' (end2end): output '{self.output}' has {y.shape[1]} values per box; "
                    "expected 6: x1, y1, x2, y2, score, class"
                )
            cls, score = np.rint(y[:, 5]).astype(np.int64), y[:, 4]
        else:
            if self.version == "v8":
                y = y.T  # (N, 4 + C)
            if self.version in ("v8", "v8t"):
                cls_scores = y[:, 4:]
            else:  # v5: class score = objectness x class probability
                cls_scores = y[:, 5:] * y[:, 4:5] if y.shape[1] > 5 else y[:, 4:5]
            cls = cls_scores.argmax(axis=1) if cls_scores.shape[1] > 1 else np.zeros(len(y), np.int64)
            score = cls_scores[np.arange(len(y)), cls]
        keep = score > self.threshold
        if self.class_ids is not None:
            keep &= np.isin(cls, self.class_ids)
        return y[keep], cls[keep], score[keep]

    def __call__(self, outputs: dict[str, np.ndarray], frame: Any = None) -> Detections:
        y, cls, score = self._decode(np.asarray(outputs[self.output], dtype=np.float32)[0])
        if self.version == "end2end":
            boxes = y[:, :4].copy()
        else:
            cx, cy, w, h = y[:, 0], y[:, 1], y[:, 2], y[:, 3]
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        if len(boxes) and float(np.abs(boxes).max()) <= 1.5:  # normalised coordinates
            ih, iw = self.spec.size
            boxes = boxes * np.array([iw, ih, iw, ih], np.float32)
        if len(boxes):
            if self.version == "end2end":  # the model chose them: best first, at most max_det
                idx = top_k(score, self.max_det)
            else:
                idx = nms(boxes, score, self.nms_threshold, max_det=self.max_det, pre_nms_topk=self.pre_nms_topk,
                          classes=cls)  # fmt: skip
            boxes, cls, score = boxes[idx], cls[idx], score[idx]
        boxes, hw = self._to_frame(boxes.astype(np.float32), frame)
        names = [self.labels[c] if self.labels and 0 <= c < len(self.labels) else str(int(c)) for c in cls]
        return Detections(boxes, score.astype(np.float32), cls.astype(np.int64), names, None, self.blur, hw)


def make_detector(
    model: Any, *, preprocess: Any = None, labels: Sequence[str] | None = None, threshold: float = 0.5,
    nms: float = 0.45, blur: bool = False, decoder: str | None = None, max_det: int = 100,
    pre_nms_topk: int = 1000, classes: Any = None, layout: str | None = None, **_: Any,
) -> _Detector:  # fmt: skip
    """The detector that fits ``model``'s outputs; OutputMismatchError says which output does not fit and why.

    ``pre_nms_topk``: candidates kept (best scores) before NMS; ``max_det``: detections kept after it;
    ``classes``: names or ids to keep (``"person,car"``, ``"0,2"``, ``[0, 2]``); ``layout``: v5 | v8 | end2end
    (YOLO only; default: guessed from the output's shape, see the module docstring).
    """
    caps = {"max_det": _count("max_det", max_det), "pre_nms_topk": _count("pre_nms_topk", pre_nms_topk)}
    threshold, nms = _fraction("threshold", threshold, 0.5), _fraction("nms", nms, 0.45)
    outs = {s.name: list(s.shape) for s in model.outputs}
    listing = ", ".join(f"'{n}' [{','.join('?' if d is None else str(d) for d in sh)}]" for n, sh in outs.items())
    if decoder not in (None, "centerface", "yolo"):
        raise OutputMismatchError(f"task 'detect': decoder must be centerface or yolo, got {decoder!r}")
    if layout is not None and layout not in YOLO_LAYOUTS:
        raise TaskOptionError(f"task 'detect': layout must be one of {', '.join(YOLO_LAYOUTS)}, got {layout!r}; "
                              "e.g. layout=v8", ["layout"])  # fmt: skip
    if decoder in (None, "centerface") and len(outs) >= 3 and layout is None:
        names, why = _centerface_names(outs)
        if names is not None:
            ids = class_ids(classes, ["face"], 1)
            return CenterFaceDetector(model, names, preprocess, threshold, nms, blur, **caps, class_ids=ids)
        if decoder == "centerface":
            raise OutputMismatchError(f"task 'detect' (centerface): {why}; the model's outputs: {listing}")
    if decoder in (None, "yolo") and len(outs) == 1:
        name, shape = next(iter(outs.items()))
        version, n_classes = _yolo_layout(name, shape, layout, labels)
        if labels is None and n_classes == 80:
            from edge_sdk.labels import coco80_labels

            labels = coco80_labels()
            who = getattr(getattr(model, "path", None), "name", None) or "the model"
            log.warning("%s: a YOLO output with 80 classes and no class names stored: using COCO's 80 names "
                        "(edge_sdk/data/coco80_labels.txt); give --labels FILE (labels= in Python) if it was "
                        "trained on other classes", who)  # fmt: skip
        elif labels is not None and n_classes is not None and len(labels) != n_classes:
            log.warning("task 'detect': %d class names for an output with %d classes; classes without a name are "
                        "shown by id", len(labels), n_classes)  # fmt: skip
        ids = class_ids(classes, labels, n_classes)
        return YoloDetector(model, name, version, preprocess, threshold, nms, blur, labels, **caps, class_ids=ids)
    raise OutputMismatchError(
        f"task 'detect': the model's outputs ({listing}) fit no detector: CenterFace needs four maps "
        "heatmap (1 channel), scale (2), offset (2), landmarks (10); "
        "YOLO needs one output (1, N, 5 + C) (v5), (1, 4 + C, N) or (1, N, 4 + C) (v8/v11), or (1, K, 6) (end2end)"
    )


def _yolo_layout(name: str, shape: list[Any], layout: str | None,
                 labels: Sequence[str] | None) -> tuple[str, int | None]:  # fmt: skip
    """(decoder version, number of classes or None when the layout does not say) for a YOLO output's shape."""
    dims = ",".join("?" if d is None else str(d) for d in shape)

    def mismatch(why: str) -> OutputMismatchError:
        return OutputMismatchError(
            f"task 'detect': output '{name}' has shape [{dims}], which {why}; YOLO box tensors are (1, N, 5 + C) "
            "(v5), (1, 4 + C, N) or (1, N, 4 + C) (v8/v11), (1, K, 6) (end2end: x1, y1, x2, y2, score, class); "
            "is this a classifier (--task classify)?"
        )

    a, b = (shape[1], shape[2]) if len(shape) == 3 else (None, None)
    if len(shape) != 3 or (a is None and b is None) or shape[0] not in (1, None):
        raise mismatch("is not a YOLO box tensor")
    n_labels = len(labels) if labels is not None else None
    if layout is None:
        if a is not None and a >= 5 and (b is None or b > a):  # (1, 4 + C, N): many more boxes than values per box
            layout = "v8"
        elif b is None:
            raise mismatch("has a dynamic last dimension (values per box)")
        elif b == 6 and (a is not None and a <= END2END_MAX_ROWS):
            layout = "end2end"
        elif n_labels is not None and b in (n_labels + 5, n_labels + 4):
            layout = "v5" if b == n_labels + 5 else "v8"
        elif b in (85, 84):
            layout = "v5" if b == 85 else "v8"
        elif b == 5:  # one score per box: v5 objectness alone and v8 with one class read the same
            layout = "v8"
        elif b >= 6:
            log.info("task 'detect': output '%s' [%s] read as YOLOv5 (x, y, w, h, objectness, %d class scores); "
                     "--post-opt layout=v8 if it has no objectness", name, dims, b - 5)  # fmt: skip
            layout = "v5"
        else:
            raise mismatch("has too few values per box")
    if layout == "end2end":
        if b is None or b < 6:
            raise mismatch("has not 6 values per box (layout=end2end)")
        return "end2end", None
    if layout == "v8":
        if a is not None and a >= 5 and (b is None or b > a):
            return "v8", a - 4
        if b is not None and b >= 5:
            return "v8t", b - 4
        raise mismatch("has not 4 + C values per box (layout=v8)")
    if b is None or b < 5:
        raise mismatch("has not 5 + C values per box (layout=v5)")
    return "v5", max(1, b - 5)


def class_ids(classes: Any, labels: Sequence[str] | None, n_classes: int | None) -> list[int] | None:
    """``classes`` (names or ids: ``"person,car"``, ``"0,2"``, 2, ``["car", 0]``) as class ids; None keeps all.

    A name not among ``labels`` is a TaskError listing close matches; an id outside ``0..n_classes-1`` too.
    """
    if classes is None:
        return None
    if isinstance(classes, (str, int, np.integer)) and not isinstance(classes, bool):
        items: list[Any] = [t.strip() for t in str(classes).split(",") if t.strip()]
    elif isinstance(classes, (list, tuple, set, np.ndarray)):
        items = list(classes)
    else:
        raise TaskOptionError(f"task 'detect': classes must be names or ids, e.g. classes=person,car or "
                              f"classes=0,2; got {classes!r}", ["classes"])  # fmt: skip
    if not items:
        raise TaskOptionError("task 'detect': classes is empty; give names or ids, e.g. classes=person,car",
                              ["classes"])
    names = list(labels) if labels is not None else None
    folded = {n.strip().lower(): i for i, n in reversed(list(enumerate(names or [])))}
    ids: list[int] = []
    unknown: list[str] = []
    for item in items:
        text = str(item).strip()
        if (isinstance(item, (int, np.integer)) and not isinstance(item, bool)) or text.lstrip("-").isdigit():
            i = int(text)
            if i < 0 or (n_classes is not None and i >= n_classes):
                top = f"0..{n_classes - 1}" if n_classes is not None else "0 or more"
                raise TaskOptionError(f"task 'detect': classes: id {i} is not a class of this model (ids {top})",
                                      ["classes"])
            ids.append(i)
        elif names is None:
            raise TaskOptionError(
                f"task 'detect': classes: '{text}' is a name, but the model has no class names; give them with "
                "--labels FILE (labels= in Python) or filter by id, e.g. classes=0,2", ["classes"]
            )
        elif text.lower() in folded:
            ids.append(folded[text.lower()])
        else:
            unknown.append(text)
    if unknown:
        import difflib

        hints = []
        for u in unknown:
            close = difflib.get_close_matches(u.lower(), list(folded), n=3, cutoff=0.6)
            close = [names[folded[c]] for c in close]  # type: ignore[index]
            hints.append(f"'{u}' (close: {', '.join(close)})" if close else f"'{u}' (no close match)")
        shown = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")  # type: ignore[index]
        raise TaskOptionError(f"task 'detect': classes: unknown class name(s) {'; '.join(hints)}; the model's "
                              f"classes: {shown}", ["classes"])  # fmt: skip
    return ids


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
