"""ONNX channel pruning: remove whole output channels of Conv / Gemm / MatMul nodes and every tensor that
depends on them, by following each channel dimension through the graph.

Every tensor whose channel dimension comes from prunable layers gets *segments*: ``(axis, rank,
[(root, count), ...])`` (a Concat joins segments; an Add/Mul of two such tensors ties their roots into
one group, e.g. a residual connection). Followed: BatchNormalization, activations, pooling, depthwise
Conv, Add/Sub/Mul/Div/Max/Min (with broadcast constants), Concat, Transpose, Flatten/Reshape/Squeeze of
``N x C x 1 x 1``, ReduceMean over spatial axes; consumed: Conv, Gemm, MatMul. A group reaching anything
else (or a graph output) is left whole. Importance: L1 (or L2) norm of each filter, summed over the group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.prune import onnx_prune
from converters.prune.select import amount_for, choose
from converters.prune.spec import LayerReport, PruneResult, PruneSpec, weights_gzip_size
from edge_sdk.errors import PruneError

UNARY = {
    "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh", "Identity", "Dropout", "Cast",
    "Elu", "Selu", "Softplus", "Neg", "Abs", "Exp", "Sqrt", "Erf", "Gelu", "Mish", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "Resize", "Upsample", "LpNormalization", "Softsign",
}  # fmt: skip
BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "PRelu", "Sum"}
TIED = "tied (residual/concat) to a skipped layer, an output, or an op not followed"
Segs = tuple[int, int, tuple[tuple[int, int], ...]]  # (channel axis, rank, ((root, count), ...))


@dataclass
class _Graph:
    proto: Any
    inits: dict[str, Any]
    shapes: dict[str, tuple[Any, ...]]
    users: dict[str, int]
    roots: list[tuple[str, Any, str]] = field(default_factory=list)  # (layer name, node, kind)
    segs: dict[str, Segs] = field(default_factory=dict)
    parent: list[int] = field(default_factory=list)
    blocked: set[int] = field(default_factory=set)
    actions: list[tuple[str, int, tuple[tuple[int, int], ...]]] = field(default_factory=list)  # (init, axis, segs)
    reshapes: list[tuple[str, int, tuple[tuple[int, int], ...]]] = field(default_factory=list)
    depthwise: list[tuple[Any, tuple[tuple[int, int], ...]]] = field(default_factory=list)

    def find(self, r: int) -> int:
        while self.parent[r] != r:
            self.parent[r] = self.parent[self.parent[r]]
            r = self.parent[r]
        return r

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)

    def block(self, segs: Segs | None) -> None:
        if segs:
            self.blocked.update(r for r, _ in segs[2])

    def arr(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None


def channel(model: Any, spec: PruneSpec, example_inputs: Any = None) -> PruneResult:
    """Channel-prune an ONNX model (path or ModelProto); returns a smaller dense ModelProto."""
    from onnx import numpy_helper

    proto = onnx_prune.load(model)
    _constants_to_initializers(proto)
    g = _analyse(proto)
    cands = [c for c, _, _ in onnx_prune.weight_nodes(proto)]
    root_names = [name for name, _, _ in g.roots]
    roots = [c for c in cands if c.name in root_names]
    reasons = choose(roots, spec, framework="ONNX")
    for i, (name, _, _) in enumerate(g.roots):
        if reasons.get(name):
            g.blocked.add(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(g.roots)):
        groups.setdefault(g.find(i), []).append(i)
    free = {
        k: v for k, v in groups.items() if not any(r in g.blocked for r in v) and not (spec.keep_tied and len(v) > 1)
    }
    for k, v in groups.items():
        if k not in free:
            for r in v:
                name = g.roots[r][0]
                reasons[name] = reasons.get(name) or TIED
    if not free:
        raise PruneError(
            "no channel group can be pruned: every prunable layer is skipped or feeds the model output or an op "
            f"this pruner does not follow ({', '.join(f'{n}: {r}' for n, r in list(reasons.items())[:4])})"
        )
    params_before = sum(a.size for a in onnx_prune.all_weights(proto))
    gz_before = weights_gzip_size(onnx_prune.all_weights(proto))
    keep = _choose_channels(g, free, spec)
    before = {name: g.arr(node.input[1]).shape for name, node, _ in g.roots}
    _apply(g, keep)
    for vi in list(proto.graph.value_info):
        proto.graph.value_info.remove(vi)
    layers = []
    for c in cands:
        if c.name not in before:
            continue
        i = root_names.index(c.name)
        node, kind = g.roots[i][1], g.roots[i][2]
        w = numpy_helper.to_array(g.inits[node.input[1]])
        out_axis = _out_axis(kind, w)
        ch_before, ch_after = before[c.name][out_axis], w.shape[out_axis]
        layers.append(
            LayerReport(c.name, c.kind, c.shape, c.params, channels_before=ch_before, channels_after=ch_after,
                        skipped="" if ch_after != ch_before else reasons.get(c.name) or "kept")
        )  # fmt: skip
    return PruneResult(
        model=proto,
        framework="onnx",
        spec=spec,
        layers=layers,
        params_before=params_before,
        params_after=sum(a.size for a in onnx_prune.all_weights(proto)),
        weights_gzip_before=gz_before,
        weights_gzip_after=weights_gzip_size(onnx_prune.all_weights(proto)),
        notes=[f"ONNX channel pruning: {len(free)} of {len(groups)} channel groups cut, importance {spec.importance}"],
    )


# ---- analysis -----------------------------------------------------------------------------------
def _constants_to_initializers(proto: Any) -> None:
    """Constant nodes and Identity-of-initializer become initializers; an initializer used by several nodes
    (exporters share equal zero biases) gets one private copy per use, so cutting one never cuts another."""
    inits = {t.name: t for t in proto.graph.initializer}
    for node in list(proto.graph.node):
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = node.attribute[0].t
            t.name = node.output[0]
        elif node.op_type == "Identity" and node.input[0] in inits:
            t = type(inits[node.input[0]])()
            t.CopyFrom(inits[node.input[0]])
            t.name = node.output[0]
        else:
            continue
        proto.graph.initializer.append(t)
        inits[t.name] = t
        proto.graph.node.remove(node)
    seen: dict[str, int] = {}
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name not in inits:
                continue
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                t = type(inits[name])()
                t.CopyFrom(inits[name])
                t.name = f"{name}__use{seen[name]}"
                proto.graph.initializer.append(t)
                node.input[i] = t.name


def _analyse(proto: Any) -> _Graph:
    import onnx
    from onnx import helper

    inferred = onnx.shape_inference.infer_shapes(proto)
    shapes: dict[str, tuple[Any, ...]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    users: dict[str, int] = {}
    for node in proto.graph.node:
        for name in set(node.input):
            users[name] = users.get(name, 0) + 1
    g = _Graph(proto, {t.name: t for t in proto.graph.initializer}, shapes, users)
    for node in proto.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        ins = {n: g.segs[n] for n in node.input if n in g.segs}
        _visit(g, node, attrs, ins)
    for out in proto.graph.output:
        g.block(g.segs.get(out.name))
    return g


def _new_root(g: _Graph, node: Any, kind: str, count: int, axis: int, rank: int) -> None:
    if g.users.get(node.input[1], 0) > 1 or (len(node.input) > 2 and g.users.get(node.input[2], 0) > 1):
        return  # shared weights: leave whole
    g.roots.append((node.name or node.input[1], node, kind))
    g.parent.append(len(g.parent))
    g.segs[node.output[0]] = (axis, rank, ((len(g.roots) - 1, count),))


def _consume(g: _Graph, init: str, axis: int, segs: Segs) -> None:
    if g.users.get(init, 0) > 1 or init not in g.inits:
        g.block(segs)
    else:
        g.actions.append((init, axis, segs[2]))


def _visit(g: _Graph, node: Any, attrs: dict[str, Any], ins: dict[str, Segs]) -> None:
    op, first = node.op_type, (g.segs.get(node.input[0]) if node.input else None)
    w = g.arr(node.input[1]) if len(node.input) > 1 else None
    weight_ok = w is not None and w.dtype.kind == "f"
    if op == "Conv":
        grp = attrs.get("group", 1)
        if first and (first[0] != 1 or not weight_ok):
            g.block(first)
        elif first and grp > 1:
            if grp == w.shape[0] == sum(c for _, c in first[2]) and w.shape[1] == 1:  # depthwise: follows its input
                _consume(g, node.input[1], 0, first)
                if len(node.input) > 2:
                    _consume(g, node.input[2], 0, first)
                g.depthwise.append((node, first[2]))
                g.segs[node.output[0]] = first
                return
            g.block(first)
        elif first:
            _consume(g, node.input[1], 1, first)
        if weight_ok and grp == 1:
            _new_root(g, node, "conv", w.shape[0], 1, w.ndim)
        return
    if op in ("Gemm", "MatMul") and weight_ok and w.ndim == 2 and not attrs.get("transA", 0):
        trans = attrs.get("transB", 0)
        if first:
            if first[0] != first[1] - 1:
                g.block(first)
            else:
                _consume(g, node.input[1], 1 if trans else 0, first)
        rank = len(g.shapes.get(node.output[0], ())) or 2
        bias = g.arr(node.input[2]) if op == "Gemm" and len(node.input) > 2 else None
        if bias is None or (bias.ndim == 1 and bias.size == w.shape[0 if trans else 1]) or len(node.input) < 3:
            _new_root(g, node, "gemm_t" if trans else ("gemm" if op == "Gemm" else "matmul"),
                      w.shape[0 if trans else 1], rank - 1, rank)  # fmt: skip
        return
    if not ins:
        return
    if op in UNARY:
        if first and len(ins) == 1 and not (op in ("Resize", "Upsample") and first[0] != 1):
            g.segs[node.output[0]] = first
        else:
            _block_all(g, ins)
    elif op == "BatchNormalization" and first and first[0] == 1:
        for name in node.input[1:5]:
            _consume(g, name, 0, first)
        g.segs[node.output[0]] = first
    elif op in BINARY:
        _binary(g, node, ins)
    elif op == "Concat":
        _concat(g, node, attrs, ins)
    elif op == "Transpose" and first:
        perm = list(attrs.get("perm", range(first[1])[::-1]))
        g.segs[node.output[0]] = (perm.index(first[0]), first[1], first[2])
    elif op in ("Flatten", "Reshape", "Squeeze") and first:
        _flatten(g, node, first)
    elif op in ("ReduceMean", "ReduceMax", "ReduceSum") and first:
        axes = attrs.get("axes") or (
            list(g.arr(node.input[1])) if len(node.input) > 1 and g.arr(node.input[1]) is not None else None
        )
        if axes is None or first[0] in [a % first[1] for a in axes]:
            g.block(first)
            return
        axes = [a % first[1] for a in axes]
        if attrs.get("keepdims", 1):
            g.segs[node.output[0]] = first
        else:
            g.segs[node.output[0]] = (first[0] - sum(a < first[0] for a in axes), first[1] - len(axes), first[2])
    else:
        _block_all(g, ins)


def _block_all(g: _Graph, ins: dict[str, Segs]) -> None:
    for s in ins.values():
        g.block(s)


def _binary(g: _Graph, node: Any, ins: dict[str, Segs]) -> None:
    segs = list(ins.values())
    ref = segs[0]
    if any(s[0] != ref[0] or s[1] != ref[1] or [c for _, c in s[2]] != [c for _, c in ref[2]] for s in segs):
        _block_all(g, ins)
        return
    for s in segs[1:]:
        for (a, _), (b, _) in zip(s[2], ref[2]):
            g.union(a, b)
    total = sum(c for _, c in ref[2])
    for name in node.input:
        if name in ins or not name:
            continue
        shape = g.arr(name).shape if name in g.inits else g.shapes.get(name)
        if shape is None:
            _block_all(g, ins)
            return
        axis = ref[0] - (ref[1] - len(shape))
        if axis < 0 or shape[axis] == 1:
            continue
        if shape[axis] == total and name in g.inits:
            _consume(g, name, axis, ref)
        else:
            _block_all(g, ins)
            return
    g.segs[node.output[0]] = ref


def _concat(g: _Graph, node: Any, attrs: dict[str, Any], ins: dict[str, Segs]) -> None:
    first = ins.get(node.input[0])
    if len(ins) != len(node.input) or first is None:
        _block_all(g, ins)
        return
    axis = attrs.get("axis", 0) % first[1]
    if any(s[0] != first[0] or s[1] != first[1] for s in ins.values()) or axis != first[0]:
        _block_all(g, ins)
        return
    g.segs[node.output[0]] = (axis, first[1], tuple(seg for name in node.input for seg in ins[name][2]))


def _flatten(g: _Graph, node: Any, first: Segs) -> None:
    """``N x C x 1 x 1 -> N x C`` keeps the channels on axis 1; anything else is left whole."""
    shape = g.shapes.get(node.input[0])
    out = g.shapes.get(node.output[0])
    total = sum(c for _, c in first[2])
    ok = (
        shape is not None and out is not None and len(out) == 2 and out[1] == total
        and all(d == 1 for i, d in enumerate(shape) if i not in (0, first[0])) and first[0] == 1
    )  # fmt: skip
    if ok and node.op_type == "Reshape":
        target = g.arr(node.input[1])
        if target is None or g.users.get(node.input[1], 0) > 1:
            ok = False
        elif target.size == 2 and target[1] == total:
            g.reshapes.append((node.input[1], 1, first[2]))
    if ok:
        g.segs[node.output[0]] = (1, 2, first[2])
    else:
        g.block(first)


# ---- choosing and applying ----------------------------------------------------------------------
def _out_axis(kind: str, w: np.ndarray) -> int:
    """Output-channel axis of a root's weight: Conv (O, I, ...) and Gemm transB (O, I): 0; MatMul (I, O): 1."""
    return 0 if kind in ("conv", "gemm_t") else w.ndim - 1


def _root_importance(g: _Graph, node: Any, kind: str, p: int) -> np.ndarray:
    w = g.arr(node.input[1])
    axis = _out_axis(kind, w)
    w = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    norms = np.abs(w).sum(1) if p == 1 else np.sqrt((w.astype(np.float64) ** 2).sum(1))
    return norms / max(float(norms.mean()), 1e-12)


def _choose_channels(g: _Graph, free: dict[int, list[int]], spec: PruneSpec) -> dict[int, np.ndarray]:
    """Root index -> kept channel indices (sorted), the same for every root of a group."""
    p = 1 if spec.importance == "l1" else 2
    scores = {k: sum(_root_importance(g, g.roots[r][1], g.roots[r][2], p) for r in v) / len(v) for k, v in free.items()}
    threshold = None
    if spec.scope == "global":
        pooled = np.concatenate(list(scores.values()))
        threshold = np.sort(pooled)[int(round(spec.amount * pooled.size))] if pooled.size else 0
    keep: dict[int, np.ndarray] = {}
    for k, v in free.items():
        s = scores[k]
        n = len(s)
        amount = min(amount_for(g.roots[r][0], spec) for r in v)
        want = int(np.sum(s >= threshold)) if threshold is not None else n - int(round(amount * n))
        want = min(n, max(spec.round_to, int(math.ceil(max(want, 1) / spec.round_to) * spec.round_to)))
        idx = np.sort(np.argsort(-s, kind="stable")[:want])
        for r in v:
            keep[r] = idx
    return keep


def _indices(segs: tuple[tuple[int, int], ...], keep: dict[int, np.ndarray], find: Any) -> np.ndarray:
    out, offset = [], 0
    for root, count in segs:
        out.append(offset + keep[root] if root in keep else offset + np.arange(count))
        offset += count
    return np.concatenate(out)


def _apply(g: _Graph, keep: dict[int, np.ndarray]) -> None:
    from onnx import helper, numpy_helper

    def take(name: str, axis: int, idx: np.ndarray) -> None:
        arr = g.arr(name)
        g.inits[name].CopyFrom(numpy_helper.from_array(np.take(arr, idx, axis=axis), name))

    for r, (_, node, kind) in enumerate(g.roots):
        if r not in keep:
            continue
        w = g.arr(node.input[1])
        axis = _out_axis(kind, w)
        take(node.input[1], axis, keep[r])
        if len(node.input) > 2 and node.input[2] in g.inits:
            take(node.input[2], 0, keep[r])
    for name, axis, segs in g.actions:
        if any(root in keep for root, _ in segs):
            take(name, axis, _indices(segs, keep, g.find))
    for name, axis, segs in g.reshapes:
        if any(root in keep for root, _ in segs):
            target = g.arr(name).copy()
            target[axis] = len(_indices(segs, keep, g.find))
            g.inits[name].CopyFrom(numpy_helper.from_array(target, name))
    for node, segs in g.depthwise:
        if any(root in keep for root, _ in segs):
            n = len(_indices(segs, keep, g.find))
            for a in node.attribute:
                if a.name == "group":
                    a.CopyFrom(helper.make_attribute("group", n))
