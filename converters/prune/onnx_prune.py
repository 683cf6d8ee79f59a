"""ONNX magnitude pruning: zero the smallest weights held in initializers of Conv / Gemm / MatMul nodes."""

from __future__ import annotations

from typing import Any

import numpy as np

from converters.prune.magnitude import layer_reports, zero_smallest
from converters.prune.select import Candidate, choose
from converters.prune.spec import PruneResult, PruneSpec, weights_gzip_size


def load(model: Any) -> Any:
    """An ``onnx.ModelProto`` from a path or a ModelProto (copied, so the caller's is untouched)."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    return onnx.load(str(model))


def weight_nodes(model: Any) -> list[tuple[Candidate, Any, str]]:
    """(candidate, node, weight initializer name) for every Conv/Gemm/MatMul with a float initializer weight,
    in graph (topological) order; the layer name is the node's name (or its weight's name if unnamed)."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if w.dtype.kind != "f" or w.ndim < 2:
            continue
        group = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv":
            kind = "depthwise" if group > 1 and w.shape[1] == 1 else "conv"
        else:
            kind = "linear"
        out.append((Candidate(node.name or node.input[1], kind, tuple(w.shape), int(w.size)), node, node.input[1]))
    return out


def all_weights(model: Any) -> list[np.ndarray]:
    from onnx import numpy_helper

    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    return [a for a in arrays if a.dtype.kind == "f"]


def magnitude(model: Any, spec: PruneSpec, example_inputs: Any = None) -> PruneResult:
    from onnx import numpy_helper

    proto = load(model)
    nodes = weight_nodes(proto)
    cands = [c for c, _, _ in nodes]
    reasons = choose(cands, spec, framework="ONNX")
    inits = {t.name: t for t in proto.graph.initializer}
    before = {c.name: numpy_helper.to_array(inits[w]) for c, _, w in nodes}
    gz_before = weights_gzip_size(all_weights(proto))
    shared = _shared_initializers(proto)
    todo = {c.name: before[c.name] for c, _, w in nodes if not reasons[c.name] and w not in shared}
    for c, _, w in nodes:
        if not reasons[c.name] and w in shared:
            reasons[c.name] = "weight shared with another node (skipped)"
    after = zero_smallest(todo, spec)
    for c, _, w in nodes:
        if c.name in after:
            inits[w].CopyFrom(numpy_helper.from_array(after[c.name].astype(before[c.name].dtype), w))
    n_params = sum(a.size for a in all_weights(proto))
    return PruneResult(
        model=proto,
        framework="onnx",
        spec=spec,
        layers=layer_reports(cands, reasons, before, after),
        params_before=n_params,
        params_after=n_params,
        weights_gzip_before=gz_before,
        weights_gzip_after=weights_gzip_size(all_weights(proto)),
        notes=["magnitude pruning keeps every tensor's shape: a dense runtime does the same work"],
    )


def _shared_initializers(model: Any) -> set[str]:
    seen: dict[str, int] = {}
    for node in model.graph.node:
        for name in set(node.input):
            seen[name] = seen.get(name, 0) + 1
    return {n for n, k in seen.items() if k > 1}
