"""Per-layer error of a diff: accumulated over samples, the first divergence, JSON and a compact table.

**First divergence**: the first matched layer, in the reference's topological order, whose cosine is below
``threshold`` (default 0.99), or whose SNR is more than ``snr_jump_db`` (default 20 dB) below the SNR of the
tensors it is computed from and below ``NOISE_FLOOR_DB`` (40 dB: above it, differences are float rounding).
Inputs that are bit-exact (SNR +inf) do not count: a quantized model's first layer always loses that much
and it is not a jump. A layer's input SNR is that of its nearest matched ancestors (the worst of them).
**Worst jump**: the layer (below the noise floor) whose SNR falls most below its inputs'.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.99
DEFAULT_SNR_JUMP_DB = 20.0
NOISE_FLOOR_DB = 40.0  # fp32 artifacts sit at 100+ dB; their ups and downs are rounding, not error


class Accumulator:
    """Sums that give the cosine and SNR of one pair of tensors over all samples (as if stacked)."""

    def __init__(self) -> None:
        self.dot = self.ref2 = self.art2 = self.noise = self.max_abs = 0.0

    def add(self, ref: np.ndarray, art: np.ndarray) -> None:
        r = np.asarray(ref, dtype=np.float64).ravel()
        a = np.asarray(art, dtype=np.float64).ravel()
        d = r - a
        self.dot += float(np.dot(r, a))
        self.ref2 += float(np.dot(r, r))
        self.art2 += float(np.dot(a, a))
        self.noise += float(np.dot(d, d))
        self.max_abs = max(self.max_abs, float(np.max(np.abs(d))) if d.size else 0.0)

    @property
    def cosine(self) -> float:
        denom = math.sqrt(self.ref2 * self.art2)
        return self.dot / denom if denom > 0 else float(self.noise == 0)

    @property
    def snr_db(self) -> float:
        if self.noise == 0:
            return math.inf
        return 10 * math.log10(max(self.ref2, 1e-30) / self.noise)


@dataclass
class LayerDiff:
    """One matched tensor: where it is on both sides and how far apart they are."""

    index: int  # position in the reference's topological order
    name: str  # the reference's tensor name
    node: str
    op: str
    shape: list[int]
    artifact: str  # the artifact's tensor name
    artifact_node: str  # the node / op that made it there
    artifact_op: str
    match: str  # "name" or "position"
    layout: str | None  # how the artifact's tensor was brought to the reference's shape
    quantized: bool
    cosine: float
    snr_db: float
    max_abs_error: float
    inputs: list[str] = field(default_factory=list)  # reference tensors it is computed from
    input_snr_db: float = math.inf  # SNR of its nearest matched ancestors (the worst one)

    @property
    def snr_drop_db(self) -> float:
        """How much SNR this layer loses against its inputs (0 when they were bit-exact)."""
        if math.isinf(self.input_snr_db):
            return 0.0
        return self.input_snr_db - self.snr_db

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["snr_db"] = _num(self.snr_db)
        d["input_snr_db"] = _num(self.input_snr_db)
        d["snr_drop_db"] = _num(self.snr_drop_db)
        return d


@dataclass
class DiffReport:
    """The result of ``diff``: every matched layer in reference order, the first divergence, the outputs."""

    original: str
    artifact: str
    reference: str  # what the original was traced as (itself, or its ONNX export)
    inputs: dict[str, Any]
    layers: list[LayerDiff]
    outputs: list[dict[str, Any]]
    threshold: float = DEFAULT_THRESHOLD
    snr_jump_db: float = DEFAULT_SNR_JUMP_DB
    unmatched_reference: list[str] = field(default_factory=list)
    unmatched_artifact: int = 0
    notes: list[str] = field(default_factory=list)

    def diverged(self, layer: LayerDiff) -> str | None:
        """Why ``layer`` counts as a divergence, or None."""
        if layer.cosine < self.threshold:
            return f"cosine {layer.cosine:.4f} < {self.threshold}"
        if layer.snr_drop_db > self.snr_jump_db and layer.snr_db < NOISE_FLOOR_DB:
            return f"SNR {layer.snr_db:.1f} dB, {layer.snr_drop_db:.1f} dB below its inputs' (> {self.snr_jump_db})"
        return None

    @property
    def first_divergence(self) -> LayerDiff | None:
        return next((layer for layer in self.layers if self.diverged(layer)), None)

    @property
    def worst_jump(self) -> LayerDiff | None:
        jumps = [layer for layer in self.layers if layer.snr_drop_db > 0 and layer.snr_db < NOISE_FLOOR_DB]
        return max(jumps, key=lambda layer: layer.snr_drop_db, default=None)

    def to_dict(self) -> dict[str, Any]:
        first, worst = self.first_divergence, self.worst_jump
        return {
            "original": self.original,
            "artifact": self.artifact,
            "reference": self.reference,
            "inputs": self.inputs,
            "rule": {"threshold": self.threshold, "snr_jump_db": self.snr_jump_db},
            "first_divergence": None if first is None else {**_brief(first), "reason": self.diverged(first)},
            "worst_jump": None if worst is None else {**_brief(worst), "snr_drop_db": _num(worst.snr_drop_db)},
            "outputs": [{**o, "snr_db": _num(o["snr_db"])} for o in self.outputs],
            "output_cosine": min((o["cosine"] for o in self.outputs), default=None),
            "matched": len(self.layers),
            "matched_by_name": sum(layer.match == "name" for layer in self.layers),
            "unmatched_reference": self.unmatched_reference,
            "unmatched_artifact": self.unmatched_artifact,
            "notes": self.notes,
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def table(self) -> str:
        """The readable report: a header, one row per matched layer, the verdict."""
        from edge_sdk.cli.base import format_table

        first = self.first_divergence
        rows = []
        for layer in self.layers:
            mark = "<< first divergence" if layer is first else ("*" if self.diverged(layer) else "")
            rows.append(
                [
                    layer.index,
                    _short(layer.node),
                    layer.op,
                    "name" if layer.match == "name" else "pos",
                    f"{layer.cosine:.5f}",
                    _fmt_snr(layer.snr_db),
                    mark,
                ]
            )
        lines = [
            f"original:  {self.original}",
            f"reference: {self.reference}",
            f"artifact:  {self.artifact}",
            f"inputs:    {self.inputs.get('count')} x {self.inputs.get('origin')}",
            f"matched:   {len(self.layers)} tensors ({sum(x.match == 'name' for x in self.layers)} by name), "
            f"{len(self.unmatched_reference)} reference tensors unmatched",
            "",
            format_table(["#", "layer", "op", "match", "cosine", "SNR dB", ""], rows),
            "",
        ]
        for o in self.outputs:
            lines.append(f"output {o['name']}: cosine {o['cosine']:.5f}, SNR {_fmt_snr(o['snr_db'])} dB")
        if first is None:
            lines.append(f"first divergence: none (every layer cosine >= {self.threshold})")
        else:
            lines.append(f"first divergence: #{first.index} {_named(first)}: {self.diverged(first)}")
        worst = self.worst_jump
        if worst is not None:
            lines.append(f"worst jump: #{worst.index} {_named(worst)} loses {worst.snr_drop_db:.1f} dB")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def input_snrs(layers: Sequence[LayerDiff], parents: dict[str, tuple[str, ...]]) -> None:
    """Set each layer's ``input_snr_db``: the worst SNR among its nearest matched ancestors.

    ``parents``: every reference tensor name -> the tensors it is computed from (graph inputs have none:
    both sides get the same inputs, their SNR is +inf)."""
    snr = {layer.name: layer.snr_db for layer in layers}
    memo: dict[str, float] = {}

    def effective(name: str, depth: int = 0) -> float:
        if name in snr:
            return snr[name]
        if name in memo or depth > 200:
            return memo.get(name, math.inf)
        memo[name] = min((effective(p, depth + 1) for p in parents.get(name, ())), default=math.inf)
        return memo[name]

    for layer in layers:
        layer.input_snr_db = min((effective(p) for p in layer.inputs), default=math.inf)


def _named(layer: LayerDiff) -> str:
    where = layer.name if layer.node in (layer.name, "") else f"{layer.name} (node {layer.node}"
    return f"{where}, {layer.op})" if "(" in where else f"{where} ({layer.op})"


def _brief(layer: LayerDiff) -> dict[str, Any]:
    return {
        "index": layer.index,
        "name": layer.name,
        "node": layer.node,
        "op": layer.op,
        "artifact": layer.artifact,
        "cosine": layer.cosine,
        "snr_db": _num(layer.snr_db),
    }


def _num(x: float) -> float | str:
    """JSON has no infinity: a bit-exact tensor's SNR is written as the string "inf"."""
    return "inf" if math.isinf(x) else round(x, 3)


def _fmt_snr(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.1f}"


def _short(name: str, width: int = 60) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3) :]
