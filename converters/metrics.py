"""How close is a converted model to its original: cosine, SNR, max abs error, top-1 agreement."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CONFIDENT_MARGIN = 0.1
#: top-1 agreement is judged on the confident samples when at least this many are confident: a flip between
#: two near-tied classes is not damage (any perturbation, fp16 rounding included, flips some of them), and one
#: such flip in 32 samples failed a correct fp16 conversion
MIN_CONFIDENT_SAMPLES = 10

#: default tolerance per precision: (min cosine, min SNR dB, min top-1 agreement)
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"cosine": 0.9999, "snr_db": 40.0, "top1": 0.99},
    "fp16": {"cosine": 0.999, "snr_db": 30.0, "top1": 0.98},
    "int8-dynamic": {"cosine": 0.98, "snr_db": 12.0, "top1": 0.90},
    "int8": {"cosine": 0.97, "snr_db": 10.0, "top1": 0.90},
}


@dataclass
class OutputMetrics:
    name: str
    cosine: float
    snr_db: float
    max_abs_error: float
    mean_abs_error: float
    top1_agreement: float | None = None  # only for classifier-like outputs (N, classes)
    #: top-1 agreement on the inputs the original is sure about (softmax top-1 minus top-2 >= 0.1):
    #: separates real damage from flips between near-tied classes, which any perturbation causes
    top1_agreement_confident: float | None = None
    confident_fraction: float | None = None
    samples: int | None = None  # how many samples the figures are over

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(name: str, reference: np.ndarray, candidate: np.ndarray, *, classifier: bool = False) -> OutputMetrics:
    """Metrics of ``candidate`` against ``reference`` (both stacked over samples on axis 0)."""
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        if ref.size != cand.size:
            raise ValueError(f"output '{name}': shape {cand.shape} differs from the original's {ref.shape}")
        cand = cand.reshape(ref.shape)
    r, c = ref.ravel(), cand.ravel()
    denom = np.linalg.norm(r) * np.linalg.norm(c)
    cosine = float(np.dot(r, c) / denom) if denom > 0 else float(np.array_equal(r, c))
    noise = np.sum((r - c) ** 2)
    signal = np.sum(r**2)
    snr = float("inf") if noise == 0 else float(10 * np.log10(max(signal, 1e-30) / noise))
    top1 = top1_confident = confident_fraction = None
    if classifier and ref.ndim >= 2:
        ref2, cand2 = ref.reshape(ref.shape[0], -1), cand.reshape(cand.shape[0], -1)
        same = ref2.argmax(1) == cand2.argmax(1)
        top1 = float(np.mean(same))
        probs = np.exp(ref2 - ref2.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        top2 = np.sort(probs, axis=1)[:, -2:]
        confident = (top2[:, 1] - top2[:, 0]) >= CONFIDENT_MARGIN
        confident_fraction = float(confident.mean())
        top1_confident = float(same[confident].mean()) if confident.any() else None
    return OutputMetrics(
        name,
        cosine,
        snr,
        float(np.max(np.abs(r - c))),
        float(np.mean(np.abs(r - c))),
        top1,
        top1_confident,
        confident_fraction,
        int(ref.shape[0]) if ref.ndim else 1,
    )


def failures(metrics: list[OutputMetrics], precision: str, overrides: dict[str, float] | None = None) -> list[str]:
    """Human-readable reasons the metrics miss the precision's tolerance (empty list: it passes)."""
    tol = {**TOLERANCES[precision], **(overrides or {})}
    reasons = []
    for m in metrics:
        if m.cosine < tol["cosine"]:
            reasons.append(f"output '{m.name}': cosine {m.cosine:.5f} < {tol['cosine']}")
        if m.snr_db < tol["snr_db"]:
            reasons.append(f"output '{m.name}': SNR {m.snr_db:.1f} dB < {tol['snr_db']} dB")
        agreement, over = top1_judged(m)
        if agreement is not None and agreement < tol["top1"]:
            reasons.append(f"output '{m.name}': top-1 agreement {agreement:.1%} < {tol['top1']:.0%}{over}")
    return reasons


def top1_judged(m: OutputMetrics) -> tuple[float | None, str]:
    """The top-1 agreement a tolerance is checked against, and over which samples (for the message)."""
    confident = round((m.confident_fraction or 0) * (m.samples or 0))
    if m.top1_agreement_confident is not None and confident >= MIN_CONFIDENT_SAMPLES:
        return m.top1_agreement_confident, f" (on the {confident} samples the original is confident about)"
    return m.top1_agreement, ""
