"""Validation after every conversion: the converted model against the original on held-out inputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converters.layout import adapt_feeds, align_output, pair_outputs
from converters.metrics import OutputMetrics, compare, failures
from converters.sources import SourceModel

log = logging.getLogger("edge_sdk")


@dataclass
class HeldOut:
    """Validation inputs (never the calibration ones) and what the original model made of them."""

    samples: list[list[np.ndarray]]
    origin: str
    synthetic: bool
    reference: list[np.ndarray] = field(default_factory=list)  # per output, stacked over samples

    def describe(self) -> dict[str, Any]:
        return {"count": len(self.samples), "origin": self.origin, "synthetic": self.synthetic}


def synthetic_held_out(inputs: Sequence[Any], n: int, seed: int = 12345) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s.concrete_shape()).astype(s.dtype) for s in inputs] for _ in range(n)]


def run_reference(source: SourceModel, held: HeldOut) -> HeldOut:
    per_sample = [source.run(s) for s in held.samples]
    held.reference = [np.concatenate([o[i] for o in per_sample]) for i in range(len(per_sample[0]))]
    return held


def is_classifier(source: SourceModel, reference: list[np.ndarray]) -> list[bool]:
    """Which outputs are class scores (top-1 agreement applies): (N, C) with C >= 10, or the task says so."""
    flags = []
    for r in reference:
        flags.append((source.task == "classify" or r.shape[-1] >= 10) and r.ndim == 2)
    return flags


def validate_artifact(
    source: SourceModel, artifact: Path, held: HeldOut, precision: str, tolerances: dict[str, float] | None = None
) -> tuple[list[OutputMetrics], list[str]]:
    """Per-output metrics of ``artifact`` against the original, and why it fails its tolerance (if it does)."""
    source_names = [i.name for i in source.inputs]
    outs_per_sample, names = _run_artifact(artifact, held.samples, source_names)
    candidate = [np.concatenate([o[i] for o in outs_per_sample]) for i in range(len(names))]
    order = pair_outputs(held.reference, candidate)
    flags = is_classifier(source, held.reference)
    metrics = [
        compare(
            source.output_names[i] if i < len(source.output_names) else names[j],
            ref,
            align_output(candidate[j], ref),
            classifier=flags[i],
        )
        for i, (ref, j) in enumerate(zip(held.reference, order))
    ]
    return metrics, failures(metrics, precision, tolerances)


def _run_artifact(artifact: Path, samples: Sequence[Sequence[np.ndarray]],
                  source_names: Sequence[str]) -> tuple[list[list[np.ndarray]], list[str]]:  # fmt: skip
    """Each sample's outputs (dequantized) and the output names. A TFLite file with TensorFlow (Flex) ops runs
    under an interpreter with the Flex delegate (:mod:`converters.routes.tflite_flex`), which LiteRT's wheel lacks."""
    import edge_sdk

    if artifact.suffix == ".tflite":
        from converters.routes.tflite_flex import flex_ops, run_with_flex

        if flex_ops(artifact):
            return run_with_flex(artifact, samples, source_names)
    with edge_sdk.load(artifact) as model:
        outs = [list(model.run(adapt_feeds(s, model.inputs, source_names), dequantize=True).values()) for s in samples]
        return outs, [s.name for s in model.outputs]
