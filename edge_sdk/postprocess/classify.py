"""Classification: top-k classes with labels and probabilities from a model's score vector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edge_sdk.errors import OutputMismatchError


@dataclass
class Classification:
    """Top-k of one frame: class indices, their labels and probabilities (softmax of logits)."""

    classes: list[int]
    labels: list[str]
    scores: list[float]

    def to_event(self) -> dict[str, Any]:
        return {"top": [{"class": c, "label": lab, "score": round(s, 4)}
                        for c, lab, s in zip(self.classes, self.labels, self.scores)]}  # fmt: skip

    def annotate(self, image: np.ndarray) -> np.ndarray:
        from edge_sdk.postprocess.draw import text_lines

        return text_lines(image.copy(), [f"{lab} {s:.0%}" for lab, s in zip(self.labels, self.scores)])


class Classifier:
    """``Classifier(model, top_k=5, labels=None, output=None)``: picks the model's score output,
    checks it is ``(1, C)``, and returns :class:`Classification` with softmax probabilities
    (kept as they are when the output already is a probability vector)."""

    def __init__(
        self, model: Any, *, top_k: int = 5, labels: Sequence[str] | None = None, output: str | None = None,
        **_: Any,
    ) -> None:  # fmt: skip
        outs = {s.name: s for s in model.outputs}
        if output is None:
            if len(outs) != 1:
                raise OutputMismatchError(
                    f"task 'classify' needs one score output, but the model has {len(outs)}: "
                    + ", ".join(f"'{n}' {s.shape_str()}" for n, s in outs.items())
                    + "; if it is not a classifier give its task (--task, task: in a serve config, task= in Python), "
                    "else pick the score output: output=NAME (--post-opt output=NAME)"
                )
            output = next(iter(outs))
        if output not in outs:
            raise OutputMismatchError(f"task 'classify': model has no output '{output}'; its outputs: {list(outs)}")
        shape = list(outs[output].shape)
        dims = [d for d in shape[1:] if d != 1]
        if len(shape) < 2 or len(dims) != 1 or (dims[0] is not None and dims[0] < 2):
            raise OutputMismatchError(
                f"task 'classify': output '{output}' has shape {outs[output].shape_str()}, expected class scores "
                "(1, C) with C >= 2; this model looks like a different task (try --task detect)"
            )
        self.output = output
        self.top_k = max(1, int(top_k))
        self.num_classes = dims[0]
        self.labels = list(labels) if labels is not None else None
        if self.labels is None and self.num_classes in (1000, 1001):
            from edge_sdk.labels import imagenet_labels

            names = imagenet_labels()
            self.labels = names if self.num_classes == 1000 else ["background", *names]

    def __call__(self, outputs: dict[str, np.ndarray], frame: Any = None) -> Classification:
        scores = np.asarray(outputs[self.output], dtype=np.float32).reshape(-1)
        if not (scores.min() >= 0 and abs(float(scores.sum()) - 1.0) < 1e-3):
            e = np.exp(scores - scores.max())
            scores = e / e.sum()
        k = min(self.top_k, scores.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        labels = [self.labels[i] if self.labels and i < len(self.labels) else str(int(i)) for i in top]
        return Classification([int(i) for i in top], labels, [float(scores[i]) for i in top])
