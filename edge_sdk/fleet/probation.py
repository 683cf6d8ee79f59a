"""Probation: a candidate model runs beside the current one on the same frames before it may go live.

OTA engines roll back when an install fails, not when the new model is worse. Here the candidate passes
only when, on the same frames fed to both models:

* it raised no error (and gave finite outputs);
* its latency p95 over the frames (per frame, the fastest of ``repeats`` runs) is within budget:
  ``<= max(latency_factor x current p95, current p95 + latency_slack_ms)``, or ``<= latency_budget_ms``
  when that absolute budget is given (the slack keeps sub-millisecond models from failing on jitter);
* it agrees with the current model: classification: top-1 agreement ``>= min_agreement`` and mean cosine
  of the outputs ``>= min_cosine``; detection: share of boxes matched at IoU >= 0.5 ``>= min_agreement``.

Without a current model (a first install) the candidate's own shipped validation figures (signed into
the bundle) stand in for the comparison: the record must not say it failed, and each agreement-like
figure must be ``>= min_agreement`` (cosines ``>= min_cosine``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np


@dataclass
class ProbationRules:
    """Thresholds of a probation (see the module docstring)."""

    frames: int = 30
    repeats: int = 3  # runs per frame per model; the fastest is that frame's latency
    latency_factor: float = 1.5
    latency_slack_ms: float = 5.0
    latency_budget_ms: float | None = None
    min_agreement: float = 0.9
    min_cosine: float = 0.98
    require_figures: bool = True  # a first install needs shipped validation figures (False: no errors suffices)


@dataclass
class ProbationReport:
    """What a probation measured and its verdict; ``reason`` says why it failed (empty when it passed)."""

    passed: bool
    reason: str
    frames: int
    task: str
    errors: int = 0
    agreement: float | None = None
    cosine: float | None = None
    candidate_ms: dict[str, float] = field(default_factory=dict)
    current_ms: dict[str, float] = field(default_factory=dict)
    reference: str = "current model"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pcts(times: Sequence[float]) -> dict[str, float]:
    if not times:
        return {}
    a = np.asarray(times) * 1000.0
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3)}


def _task(model: Any) -> str:
    meta = getattr(model, "metadata", None)
    task = getattr(meta, "task", None) if meta is not None else None
    return "detect" if task == "detect" else "classify"


def _preprocess(model: Any) -> Any:
    from edge_sdk.metadata import metadata_of
    from edge_sdk.pipeline.model_info import guess_preprocess, model_preprocess

    return model_preprocess(model) if metadata_of(model) is not None else guess_preprocess(model, warn=False)


class _Runner:
    """Runs one model on frames; classification -> first output, detection -> boxes. A frame's latency is the
    fastest of ``repeats`` runs: on a busy CPU a preempted run measures the scheduler, not the model."""

    def __init__(self, model: Any, task: str, repeats: int = 3) -> None:
        self.model, self.task, self.repeats = model, task, max(1, repeats)
        self.spec = _preprocess(model) if task == "classify" else None
        self.times: list[float] = []
        self.errors: list[str] = []

    def warm(self, image: np.ndarray) -> None:
        """One untimed run: a runtime's first call pays for allocations the model's steady state does not."""
        self(image)
        self.times.clear()
        self.errors.clear()  # the same frame runs again, timed, and errs again if it errs at all

    def __call__(self, image: np.ndarray) -> Any:
        best, out = float("inf"), None
        for i in range(self.repeats):
            t = time.perf_counter()
            try:
                res = self._once(image)
            except Exception as e:  # any failure of the candidate is a probation failure, with its reason
                self.errors.append(f"{type(e).__name__}: {e}")
                return None
            finally:
                best = min(best, time.perf_counter() - t)
            out = res if i == 0 else out
        self.times.append(best)
        return out

    def _once(self, image: np.ndarray) -> np.ndarray:
        if self.task == "detect":
            return np.asarray(self.model.predict(image).xyxy, dtype=np.float64).reshape(-1, 4)
        outs = self.model.run(self.spec.apply(image), dequantize=True)
        out = np.asarray(next(iter(outs.values())), dtype=np.float64).ravel()
        if not np.all(np.isfinite(out)):
            raise ValueError("non-finite output")
        return out


def _iou_match(a: np.ndarray, b: np.ndarray, thr: float = 0.5) -> float:
    """Share of boxes (of the larger set) matched one-to-one at IoU >= thr; 1.0 when both are empty."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    if len(a) == 0 or len(b) == 0:
        return 0.0
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    iou = inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)
    matched = 0
    while iou.size and iou.max() >= thr:
        i, j = np.unravel_index(int(iou.argmax()), iou.shape)
        matched += 1
        iou[i, :], iou[:, j] = -1, -1
    return matched / max(len(a), len(b))


WORDS = ("agreement", "top1", "top-1", "top_1", "cosine", "iou", "accuracy", "map")


def shipped_figures(validation: Mapping[str, Any] | None) -> dict[str, float]:
    """Agreement-like figures (0..1) from a bundle's signed validation record, found at any depth (dicts and
    lists, e.g. ``metrics[0].top1_agreement``): keys containing agreement, top1, cosine, iou, accuracy, map."""
    found: dict[str, float] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            key = path.lower().rsplit(".", 1)[-1]
            if any(w in key for w in WORDS) and 0.0 <= float(node) <= 1.0:
                found[path] = float(node)

    walk(validation or {}, "")
    return found


def _shipped_verdict(validation: Mapping[str, Any] | None, rules: ProbationRules) -> str:
    """Judge a first install by the figures signed into its bundle (no current model to compare with)."""
    validation = validation or {}
    if validation.get("passed") is False:
        failures = validation.get("failures") or []
        return "the bundle's own validation failed" + (f": {failures[0]}" if failures else "")
    figures = shipped_figures(validation)
    if not figures:
        if not rules.require_figures:
            return ""
        return ("no current model to compare with and no validation figures shipped in the bundle "
                "(edge-sdk agent --accept-unvalidated takes it on errors and latency alone)")  # fmt: skip

    def floor(key: str) -> float:
        return rules.min_cosine if "cosine" in key.lower() else rules.min_agreement

    low = {k: v for k, v in figures.items() if v < floor(k)}
    if low:
        return "shipped figures below threshold: " + ", ".join(f"{k}={v:g} < {floor(k):g}" for k, v in low.items())
    return ""


def run_probation(
    candidate: Any,
    frames: Sequence[np.ndarray],
    *,
    current: Any | None = None,
    validation: Mapping[str, Any] | None = None,
    rules: ProbationRules | None = None,
) -> ProbationReport:
    """Feed the same ``frames`` (RGB uint8 images) to ``current`` and ``candidate`` alternately; the verdict."""
    rules = rules or ProbationRules()
    task = _task(candidate)
    cand = _Runner(candidate, task, rules.repeats)
    cur = _Runner(current, task, rules.repeats) if current is not None else None
    agree: list[float] = []
    cosines: list[float] = []
    if frames:
        for r in (cur, cand):
            if r is not None:
                r.warm(frames[0])
    for image in frames:
        b = cur(image) if cur is not None else None
        a = cand(image)
        if a is None or b is None:
            continue
        if task == "detect":
            agree.append(_iou_match(a, b))
        else:
            agree.append(float(a.shape == b.shape and int(a.argmax()) == int(b.argmax())))
            if a.shape == b.shape:
                den = float(np.linalg.norm(a) * np.linalg.norm(b))
                cosines.append(float(a @ b) / den if den > 0 else float(np.allclose(a, b)))
    rep = ProbationReport(
        passed=False, reason="", frames=len(frames), task=task, errors=len(cand.errors),
        candidate_ms=_pcts(cand.times), current_ms=_pcts(cur.times) if cur is not None else {},
    )  # fmt: skip
    rep.agreement = round(float(np.mean(agree)), 4) if agree else None
    rep.cosine = round(float(np.mean(cosines)), 5) if cosines else None
    rep.reason = _verdict(rep, cur, validation, rules)
    rep.passed = not rep.reason
    return rep


def _verdict(rep: ProbationReport, cur: Any, validation: Mapping[str, Any] | None, rules: ProbationRules) -> str:
    """Empty string when the candidate passes, else the first rule it broke, with the numbers."""
    if not rep.frames:
        return "no frames to run the probation on (is --source readable?)"
    if rep.errors:
        return f"candidate raised {rep.errors} error(s) on {rep.frames} frames"
    if cur is not None and cur.errors:
        return f"current model raised {len(cur.errors)} error(s); cannot compare (first: {cur.errors[0]})"
    p95 = rep.candidate_ms.get("p95", math.inf)
    if rules.latency_budget_ms is not None:
        if p95 > rules.latency_budget_ms:
            return f"latency p95 {p95:.2f} ms over the budget {rules.latency_budget_ms:g} ms"
    elif cur is not None:
        ref = rep.current_ms.get("p95", 0.0)
        budget = max(rules.latency_factor * ref, ref + rules.latency_slack_ms)
        if p95 > budget:
            return f"latency p95 {p95:.2f} ms over the budget {budget:.2f} ms (current p95 {ref:.2f} ms)"
    if cur is None:
        rep.reference = "shipped validation figures"
        return _shipped_verdict(validation, rules)
    if rep.agreement is None or rep.agreement < rules.min_agreement:
        return f"agreement with the current model {rep.agreement} < {rules.min_agreement:g}"
    if rep.task == "classify" and (rep.cosine is None or rep.cosine < rules.min_cosine):
        return f"output cosine with the current model {rep.cosine} < {rules.min_cosine:g}"
    return ""
