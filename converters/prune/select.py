"""Which layers to prune: the default skips (first conv, classifier, depthwise, tiny) and the user's overrides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from converters.prune.spec import PruneSpec
from edge_sdk.errors import PruneError


@dataclass
class Candidate:
    """A layer with a prunable weight, in execution order."""

    name: str
    kind: str  # "conv", "linear", "depthwise"
    shape: tuple[int, ...]
    params: int


def choose(candidates: Sequence[Candidate], spec: PruneSpec, *, framework: str) -> dict[str, str]:
    """Layer name -> skip reason ("" = prune it). Raises PruneError for unknown names or nothing to prune."""
    names = [c.name for c in candidates]
    if not candidates:
        raise PruneError(
            f"the {framework} model has no prunable layer (no convolution or fully-connected weight); "
            "pruning needs Conv/Linear/Dense/Gemm/MatMul layers with weights"
        )
    known = set(names)
    for what, given in (("--skip", spec.skip), ("--include", spec.include), ("layer amount", spec.layer_amounts)):
        unknown = [n for n in given if n not in known]
        if unknown:
            shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
            raise PruneError(
                f"{what} names layer(s) {', '.join(map(repr, unknown))} that the model does not have; "
                f"its prunable layers are: {shown} (see `edge-sdk prune SRC --list-layers`)"
            )
    reasons: dict[str, str] = {}
    convs = [c for c in candidates if c.kind in ("conv", "depthwise")]
    for c in candidates:
        reason = ""
        if c.name in spec.skip:
            reason = "skipped by user"
        elif spec.default_skips and c.name not in spec.include:
            if convs and c is convs[0]:
                reason = "first conv (default skip)"
            elif c is candidates[-1] and c.kind == "linear":
                reason = "classifier (default skip)"
            elif c.kind == "depthwise":
                reason = "depthwise (default skip)"
            elif c.params < spec.min_params:
                reason = f"tiny: {c.params} < {spec.min_params} params (default skip)"
        reasons[c.name] = reason
    if all(reasons.values()):
        raise PruneError(
            f"no layer left to prune: all {len(candidates)} candidate layers are skipped "
            f"({'; '.join(f'{n}: {r}' for n, r in list(reasons.items())[:6])}); "
            "pass --include NAME or --no-default-skips to prune them anyway"
        )
    return reasons


def amount_for(name: str, spec: PruneSpec) -> float:
    return spec.layer_amounts.get(name, spec.amount)
