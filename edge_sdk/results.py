"""Typed results: what :meth:`edge_sdk.Model.predict` returns and what iterating a :class:`~edge_sdk.Pipeline` yields.

- :class:`Classifications`: the top-k classes of one image (``class_id``, ``class_name``, ``score``; ``top1``);
- :class:`Detections`: boxes of one image as arrays, ``xyxy`` (N, 4) float32 in the original image's pixels,
  ``confidence``, ``class_id``, ``class_name``, ``tracker_id`` (None until a tracker sets it), ``landmarks``
  (faces); ``to_supervision()`` gives a ``supervision.Detections`` (imported only then) and
  :meth:`Detections.from_supervision` takes one back (e.g. after a ByteTrack update);
- :class:`VoiceActivity`: the VAD's verdict for one audio frame (probabilities, speech state, events).

They are built from the task post-processors' results (:func:`typed`): no second decoder. ``to_dict()`` is
the JSON the pipeline's sinks write for a result (``jsonl`` lines add frame, timing and ``type``), produced by
the post-processor's own ``to_event``, so there is one serialisation. numpy only; nothing heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple

import numpy as np

__all__ = ["ClassScore", "Classifications", "Detection", "Detections", "VoiceActivity", "typed"]


class ClassScore(NamedTuple):
    """One class of a classification: its index, name and probability."""

    class_id: int
    class_name: str
    score: float


@dataclass
class Classifications:
    """The top-k classes of one image, best first: ``class_id`` (k,) int64, ``class_name``, ``score`` (k,) float32."""

    class_id: np.ndarray
    class_name: list[str]
    score: np.ndarray

    def __post_init__(self) -> None:
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        self.score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        self.class_name = [str(n) for n in self.class_name]

    @property
    def top1(self) -> ClassScore:
        """The best class (IndexError when the result is empty)."""
        return self[0]

    @property
    def confidence(self) -> np.ndarray:
        """``score`` under supervision's name."""
        return self.score

    def __len__(self) -> int:
        return len(self.class_id)

    def __getitem__(self, i: int) -> ClassScore:
        return ClassScore(int(self.class_id[i]), self.class_name[i], float(self.score[i]))

    def __iter__(self) -> Iterator[ClassScore]:
        return (self[i] for i in range(len(self)))

    def to_dict(self) -> dict[str, Any]:
        """``{"top": [{"class", "label", "score"}, ...]}``: the pipeline's result JSON for this task."""
        return self._raw().to_event()

    def annotate(self, image: np.ndarray) -> np.ndarray:
        """A copy of ``image`` (RGB) with the classes written on it."""
        return self._raw().annotate(image)

    def _raw(self) -> Any:
        from edge_sdk.postprocess.classify import Classification

        return Classification([int(c) for c in self.class_id], list(self.class_name), [float(s) for s in self.score])

    @classmethod
    def from_post(cls, raw: Any) -> Classifications:
        """From the ``classify`` post-processor's :class:`~edge_sdk.postprocess.classify.Classification`."""
        return cls(np.asarray(raw.classes, np.int64), list(raw.labels), np.asarray(raw.scores, np.float32))


class Detection(NamedTuple):
    """One detection: box (4,) xyxy in image pixels, confidence, class id and name, track id (None untracked)."""

    xyxy: np.ndarray
    confidence: float
    class_id: int
    class_name: str
    tracker_id: int | None


@dataclass
class Detections:
    """Boxes of one image: ``xyxy`` (N, 4) float32 in the original image's pixels, ``confidence`` (N,) float32,
    ``class_id`` (N,) int64, ``class_name`` (N names), ``tracker_id`` (N,) int64 or None when not tracked,
    ``landmarks`` (N, 10) x,y pairs for faces (else None), ``image_hw`` the image's (height, width)."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    class_name: list[str]
    tracker_id: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    image_hw: tuple[int, int] = (0, 0)
    blur: bool = field(default=False, repr=False)  # annotate() blurs the boxes (the detect task's blur=True)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        self.class_name = [str(x) for x in self.class_name]
        if self.tracker_id is not None:
            self.tracker_id = np.asarray(self.tracker_id, dtype=np.int64).reshape(-1)
        if self.landmarks is not None:
            lm = np.asarray(self.landmarks, dtype=np.float32)
            self.landmarks = lm.reshape(n, -1) if n else lm.reshape(0, lm.shape[-1] if lm.ndim == 2 else 0)
        for name in ("confidence", "class_id", "class_name", "tracker_id", "landmarks"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"Detections: {name} has {len(v)} entries for {n} boxes")
        self.image_hw = (int(self.image_hw[0]), int(self.image_hw[1]))

    @classmethod
    def empty(cls, image_hw: tuple[int, int] = (0, 0)) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), [],
                   image_hw=image_hw)  # fmt: skip

    def __len__(self) -> int:
        return len(self.xyxy)

    def __iter__(self) -> Iterator[Detection]:
        for i in range(len(self)):
            tid = None if self.tracker_id is None else int(self.tracker_id[i])
            yield Detection(self.xyxy[i], float(self.confidence[i]), int(self.class_id[i]), self.class_name[i], tid)

    def __getitem__(self, index: Any) -> Detections:
        """A subset, as ``supervision`` does: ``dets[dets.confidence > 0.7]``, ``dets[:3]``, ``dets[[0, 2]]``."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return Detections(
            self.xyxy[idx], self.confidence[idx], self.class_id[idx], [self.class_name[i] for i in idx],
            None if self.tracker_id is None else self.tracker_id[idx],
            None if self.landmarks is None else self.landmarks[idx], self.image_hw, self.blur,
        )  # fmt: skip

    # -- conversions ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"count", "detections": [{"box", "score", "class", "label"}]}``: the pipeline's result JSON for
        ``detect``; each detection gets ``"track_id"`` when the detections are tracked."""
        d = self._raw().to_event()
        if self.tracker_id is not None:
            for det, tid in zip(d["detections"], self.tracker_id):
                det["track_id"] = int(tid)
        return d

    def annotate(self, image: np.ndarray) -> np.ndarray:
        """A copy of ``image`` (RGB) with the boxes drawn (or blurred), labelled "name score"."""
        return self._raw().annotate(image)

    def to_supervision(self) -> Any:
        """A ``supervision.Detections`` with the same boxes, confidences, class ids, tracker ids and
        ``data["class_name"]`` (needs ``pip install "edge-sdk[track]"``)."""
        try:
            import supervision as sv
        except ImportError:
            from edge_sdk.errors import MissingExtraError

            raise MissingExtraError("Detections.to_supervision()", "track", "supervision") from None
        data: dict[str, Any] = {"class_name": np.asarray(self.class_name, dtype=object).reshape(-1)}
        if self.landmarks is not None:
            data["landmarks"] = self.landmarks
        return sv.Detections(
            xyxy=self.xyxy.copy(), confidence=self.confidence.copy(), class_id=self.class_id.copy(),
            tracker_id=None if self.tracker_id is None else self.tracker_id.copy(), data=data,
        )  # fmt: skip

    @classmethod
    def from_supervision(cls, detections: Any, image_hw: tuple[int, int] = (0, 0)) -> Detections:
        """Back from a ``supervision.Detections`` (e.g. after ``sv.ByteTrack().update_with_detections``):
        boxes, confidences, class ids, tracker ids and ``data["class_name"]`` (the class id as text if absent)."""
        n = len(detections.xyxy)
        conf = detections.confidence if detections.confidence is not None else np.ones(n, np.float32)
        cls_id = detections.class_id if detections.class_id is not None else np.zeros(n, np.int64)
        names = detections.data.get("class_name") if getattr(detections, "data", None) else None
        names = [str(x) for x in names] if names is not None else [str(int(c)) for c in cls_id]
        lms = detections.data.get("landmarks") if getattr(detections, "data", None) else None
        return cls(detections.xyxy, conf, cls_id, names, detections.tracker_id, lms, image_hw)

    def _raw(self) -> Any:
        from edge_sdk.postprocess.detect import Detections as PostDetections

        return PostDetections(self.xyxy, self.confidence, self.class_id, list(self.class_name), self.landmarks,
                              self.blur, self.image_hw)  # fmt: skip

    @classmethod
    def from_post(cls, raw: Any) -> Detections:
        """From the ``detect`` post-processor's :class:`~edge_sdk.postprocess.detect.Detections`."""
        return cls(raw.boxes, raw.scores, raw.classes, list(raw.labels), None, raw.landmarks,
                   tuple(raw.frame_hw), bool(raw.blur))  # fmt: skip


@dataclass
class VoiceActivity:
    """The VAD's verdict for one audio frame: ``probabilities`` of its windows, ``speech`` (inside a speech
    segment at the frame's end), ``t_s`` (stream time at the frame's end, seconds) and the ``events``
    (``SPEECH_START`` / ``SPEECH_END`` dicts) it completed."""

    probabilities: np.ndarray
    speech: bool
    t_s: float
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.probabilities = np.asarray(self.probabilities, dtype=np.float32).reshape(-1)

    @property
    def probability(self) -> float:
        """The highest window probability of the frame (0 when it had none)."""
        return float(self.probabilities.max()) if self.probabilities.size else 0.0

    def to_dict(self) -> dict[str, Any]:
        """``{"speech_prob", "speech", "t_s", "events"}``: the pipeline's result JSON for ``vad``."""
        return self._raw().to_event()

    def annotate(self, image: np.ndarray) -> np.ndarray:
        return self._raw().annotate(image)

    def _raw(self) -> Any:
        from edge_sdk.postprocess.vad import VadResult

        return VadResult([float(p) for p in self.probabilities], bool(self.speech), float(self.t_s), self.events)

    @classmethod
    def from_post(cls, raw: Any) -> VoiceActivity:
        return cls(np.asarray(raw.probs, np.float32), bool(raw.speech), float(raw.t_s), list(raw.events))


def typed(raw: Any) -> Any:
    """The typed form of a post-processor's result; a result of a custom (registered) post-processor, or one
    already typed, comes back as it is."""
    if isinstance(raw, (Classifications, Detections, VoiceActivity)) or raw is None:
        return raw
    kind = f"{type(raw).__module__}.{type(raw).__qualname__}"
    if kind == "edge_sdk.postprocess.classify.Classification":
        return Classifications.from_post(raw)
    if kind == "edge_sdk.postprocess.detect.Detections":
        return Detections.from_post(raw)
    if kind == "edge_sdk.postprocess.vad.VadResult":
        return VoiceActivity.from_post(raw)
    return raw
