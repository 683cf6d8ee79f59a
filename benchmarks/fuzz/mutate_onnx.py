"""Structure-aware ONNX mutations: parse the seed with ``onnx``, change one field, serialise again.

Fields a hostile file controls and a loader trusts: declared dims and element types, attribute
values, operator names and opsets, tensor names (including bytes that are not UTF-8), external-data
locations/offsets in every place ONNX allows them, nesting depth of ``If`` subgraphs, and huge
declared shapes. Names that must not be UTF-8 are written as a marker and patched in the bytes
after serialisation (protobuf refuses to serialise them).
"""

from __future__ import annotations

import random
from typing import Callable

import numpy as np
from case import Symlink
from mutate_bytes import INTERESTING_32, INTERESTING_64, mutate_bytes
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, helper, numpy_helper
from onnx_bytes import len_field, nested_if_graph

DIMS = (0, -1, 1, 2, 3, 2**31 - 1, 10**9, 2**32, 2**62, 2**63 - 1, -(2**63))
ELEM_TYPES = tuple(range(0, 27)) + (40, 999, 2**31 - 1, -1)
LOCATIONS = ("../weights.data", "../../../../etc/passwd", "/etc/passwd", "\0", "weights.data\0.txt", "", ".", "./",
             "C:\\Windows\\win.ini", "\\\\server\\share\\w", "sub/../../weights.data", "a" * 300, "weights.data/",
             "link.data", "%2e%2e/weights.data", "weights.data")  # fmt: skip
BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80")
MARKER = "\x01NU{:04d}\x01"
OPS = ("Relu", "Conv", "MatMul", "Reshape", "Gather", "Loop", "Scan", "If", "Unknown", "", "Constant", "Resize",
       "TopK", "Slice", "NonMaxSuppression", "Einsum", "QLinearConv", "Split", "Concat", "Where", "Pad")  # fmt: skip
DOMAINS = ("", "ai.onnx", "com.microsoft", "ai.onnx.ml", "bogus.domain", "local")


class OnnxState:
    """The model being mutated, the companion files, and the non-UTF-8 markers to patch in."""

    def __init__(self, model: ModelProto, files: dict[str, bytes | Symlink]) -> None:
        self.model = model
        self.files = files
        self.markers: list[str] = []
        self.graph_bytes = b""  # a graph too deep for protobuf's encoder, appended as field 7

    def marker(self) -> str:
        m = MARKER.format(len(self.markers))
        self.markers.append(m)
        return m


def graphs(model: ModelProto) -> list[GraphProto]:
    """Every graph: main, attribute subgraphs (recursively), training-info graphs."""
    out: list[GraphProto] = []

    def walk(g: GraphProto) -> None:
        out.append(g)
        for node in g.node:
            for a in node.attribute:
                if a.type == AttributeProto.GRAPH:
                    walk(a.g)
                for sub in a.graphs:
                    walk(sub)

    walk(model.graph)
    for ti in model.training_info:
        walk(ti.initialization)
        walk(ti.algorithm)
    return out


def nodes(model: ModelProto) -> list[NodeProto]:
    return [n for g in graphs(model) for n in g.node] + [n for f in model.functions for n in f.node]


def tensors(model: ModelProto) -> list[TensorProto]:
    """Every tensor with data: initializers, sparse values, attribute tensors (Constant values)."""
    out = []
    for g in graphs(model):
        out.extend(g.initializer)
        for sp in g.sparse_initializer:
            out.extend((sp.values, sp.indices))
    for n in nodes(model):
        for a in n.attribute:
            if a.type == AttributeProto.TENSOR:
                out.append(a.t)
            out.extend(a.tensors)
    return out


def value_infos(model: ModelProto) -> list:
    return [v for g in graphs(model) for v in (*g.input, *g.output, *g.value_info)]


def _pick(rng: random.Random, items: list):
    return rng.choice(items) if items else None


# --------------------------------------------------------------------------- mutations


def m_dims(rng: random.Random, st: OnnxState) -> str:
    vis = [v for v in value_infos(st.model) if v.type.HasField("tensor_type")]
    v = _pick(rng, vis)
    if v is None:
        return "dims(none)"
    shape = v.type.tensor_type.shape
    how = rng.randrange(5)
    if how == 0 or not shape.dim:
        for _ in range(rng.choice((1, 8, 64))):
            shape.dim.add().dim_value = rng.choice(DIMS[:5])
        return f"dims({v.name!r}: rank {len(shape.dim)})"
    d = rng.choice(list(shape.dim))
    if how == 1:
        d.dim_param = rng.choice(("", "N", "batch", "1e9", "-1", st.marker()))
        return f"dims({v.name!r}: dim_param {d.dim_param!r})"
    if how == 2:
        v.type.tensor_type.ClearField("shape")
        return f"dims({v.name!r}: no shape)"
    d.dim_value = rng.choice(DIMS)
    return f"dims({v.name!r}: {d.dim_value})"


def m_tensor_dims(rng: random.Random, st: OnnxState) -> str:
    t = _pick(rng, tensors(st.model))
    if t is None:
        return "tensor_dims(none)"
    how = rng.randrange(4)
    if how == 0:
        t.dims[:] = [rng.choice((10**9, 2**31, 2**40))] * rng.choice((1, 2, 3))
    elif how == 1 and t.dims:
        t.dims[rng.randrange(len(t.dims))] = rng.choice(DIMS)
    elif how == 2:
        t.dims.append(rng.choice((0, 1, 7, 10**6)))
    else:
        del t.dims[:]
    return f"tensor_dims({t.name!r}: {list(t.dims)})"


def m_elem_type(rng: random.Random, st: OnnxState) -> str:
    if rng.random() < 0.5:
        t = _pick(rng, tensors(st.model))
        if t is None:
            return "elem_type(none)"
        t.data_type = rng.choice(ELEM_TYPES)
        return f"tensor_type({t.name!r}: {t.data_type})"
    v = _pick(rng, [v for v in value_infos(st.model) if v.type.HasField("tensor_type")])
    if v is None:
        return "elem_type(none)"
    v.type.tensor_type.elem_type = rng.choice(ELEM_TYPES)
    return f"elem_type({v.name!r}: {v.type.tensor_type.elem_type})"


def m_attribute(rng: random.Random, st: OnnxState) -> str:
    node = _pick(rng, nodes(st.model))
    if node is None:
        return "attribute(none)"
    if not node.attribute or rng.random() < 0.25:
        name = rng.choice(("axis", "kernel_shape", "pads", "strides", "perm", "to", "group", "dilations", "mode",
                           "then_branch", "value", st.marker()))  # fmt: skip
        value = rng.choice((2**62, -(2**31), [0] * 3, [2**31 - 1, 1], "nearest", 1e300))
        node.attribute.append(helper.make_attribute(name, value))
        return f"attribute({node.op_type}: add {name!r}={value!r})"
    a = rng.choice(list(node.attribute))
    how = rng.randrange(6)
    if how == 0:
        node.attribute.remove(a)
        return f"attribute({node.op_type}.{a.name}: removed)"
    if how == 1:
        a.type = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 13, 99))
        return f"attribute({node.op_type}.{a.name}: type {a.type})"
    if a.ints or how == 2:
        a.ints[:] = [rng.choice(INTERESTING_64) for _ in range(rng.choice((0, 1, 2, 4, 8, 300)))]
        return f"attribute({node.op_type}.{a.name}: ints {list(a.ints)[:8]})"
    if how == 3:
        a.i = rng.choice(INTERESTING_64)
        return f"attribute({node.op_type}.{a.name}: i {a.i})"
    if how == 4:
        a.f = rng.choice((float("nan"), float("inf"), -0.0, 3.4e38, -1.0))
        return f"attribute({node.op_type}.{a.name}: f {a.f})"
    a.s = rng.choice((b"\xff\xfe", b"", b"x" * 5000, b"nearest\0"))
    return f"attribute({node.op_type}.{a.name}: s {a.s[:16]!r})"


def m_op(rng: random.Random, st: OnnxState) -> str:
    node = _pick(rng, nodes(st.model))
    if node is None:
        return "op(none)"
    if rng.random() < 0.7:
        node.op_type = rng.choice(OPS)
    else:
        node.domain = rng.choice(DOMAINS)
    return f"op({node.name or node.output[:1]}: {node.domain}:{node.op_type})"


def m_opset(rng: random.Random, st: OnnxState) -> str:
    m = st.model
    how = rng.randrange(3)
    if how == 0:
        m.ir_version = rng.choice((0, 1, 2, 3, 10, 11, 99, 2**62))
        return f"ir_version({m.ir_version})"
    if how == 1 and m.opset_import:
        op = rng.choice(list(m.opset_import))
        op.version = rng.choice((0, 1, 6, 7, 12, 23, 24, 99, -1, 2**62))
        return f"opset({op.domain!r}: {op.version})"
    del m.opset_import[:]
    return "opset(none)"


def _rename_everywhere(model: ModelProto, old: str, new: str) -> None:
    for g in graphs(model):
        for coll in (g.input, g.output, g.value_info, g.initializer):
            for item in coll:
                if item.name == old:
                    item.name = new
    for n in nodes(model):
        n.input[:] = [new if x == old else x for x in n.input]
        n.output[:] = [new if x == old else x for x in n.output]


def m_names(rng: random.Random, st: OnnxState) -> str:
    m = st.model
    how = rng.randrange(6)
    names = sorted({x for n in nodes(m) for x in (*n.input, *n.output) if x} | {v.name for v in m.graph.input})
    if how == 0 and names:  # one tensor renamed everywhere, to bytes that are not UTF-8
        old = rng.choice(names)
        _rename_everywhere(m, old, st.marker())
        return f"names({old!r} -> non-UTF-8)"
    if how == 1:
        target = rng.choice([m.graph, *nodes(m)[:3], *m.metadata_props[:1]])
        if isinstance(target, (NodeProto, GraphProto)):
            target.name = st.marker()
        else:
            target.value = st.marker()
        m.producer_name = st.marker()
        return "names(graph/node/producer non-UTF-8)"
    node = _pick(rng, nodes(m))
    if node is None:
        return "names(none)"
    if how == 2 and node.input:
        node.input[rng.randrange(len(node.input))] = rng.choice(("", "missing", names[0] if names else "x"))
        return f"names({node.op_type}: input -> {node.input[:]!r})"
    if how == 3 and node.output:
        node.output[0] = rng.choice(("", names[0] if names else "y", "y"))
        return f"names({node.op_type}: output -> {node.output[0]!r})"
    if how == 4 and m.graph.input:
        m.graph.input[0].name = rng.choice(("", m.graph.input[-1].name, st.marker()))
        return "names(graph input renamed)"
    m.graph.output[0].name = rng.choice(("", "nothing_makes_this", m.graph.input[0].name if m.graph.input else ""))
    return f"names(graph output -> {m.graph.output[0].name!r})"


def _make_external(rng: random.Random, st: OnnxState, t: TensorProto) -> None:
    data = t.raw_data
    numel = 1
    for d in t.dims:
        numel *= max(int(d), 0)
    if not data and numel <= 1 << 20:
        try:
            data = numpy_helper.to_array(t).tobytes()
        except Exception:  # noqa: BLE001 - a tensor an earlier mutation broke: its data stays empty
            data = b""
    t.ClearField("raw_data")
    for f in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
        t.ClearField(f)
    blob = st.files.get("weights.data", b"")
    blob = blob if isinstance(blob, bytes) else b""
    st.files["weights.data"] = blob + data
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    for k, v in (("location", "weights.data"), ("offset", str(len(blob))), ("length", str(len(data)))):
        t.external_data.add(key=k, value=v)


def m_external(rng: random.Random, st: OnnxState) -> str:
    m = st.model
    ext = [t for t in tensors(m) if t.data_location == TensorProto.EXTERNAL]
    if not ext or rng.random() < 0.4:  # move a tensor out, in any place ONNX allows it
        where = rng.randrange(4)
        if where == 1 and m.functions:
            t = helper.make_tensor("fn_ext", TensorProto.FLOAT, [2], [1.0, 2.0])
            m.functions[0].node.append(helper.make_node("Constant", [], ["fn_ext_out"], value=t))
            t = m.functions[0].node[-1].attribute[0].t
        elif where == 2:
            ti = m.training_info.add()
            ti.initialization.name = "init"
            t = ti.initialization.initializer.add()
            t.CopyFrom(helper.make_tensor("ti_ext", TensorProto.FLOAT, [2], [1.0, 2.0]))
        else:
            t = _pick(rng, tensors(m))
            if t is None:
                return "external(none)"
        _make_external(rng, st, t)
        ext = [t]
    t = rng.choice(ext)
    how = rng.randrange(6)
    entries = {e.key: e for e in t.external_data}
    if how <= 1 and "location" in entries:
        loc = rng.choice(LOCATIONS)
        entries["location"].value = loc
        if loc == "link.data":
            st.files["link.data"] = Symlink(rng.choice(("/etc/hostname", "../outside.data", "weights.data", "loop")))
        return f"external({t.name!r}: location {loc[:40]!r})"
    if how == 2:
        key = rng.choice(("offset", "length"))
        value = rng.choice(("-1", "0", str(2**63 - 1), str(2**64), "1e9", "0x10", " 4", "", "99999999999"))
        if key in entries:
            entries[key].value = value
        else:
            t.external_data.add(key=key, value=value)
        return f"external({t.name!r}: {key}={value!r})"
    if how == 3:
        del t.external_data[:]
        return f"external({t.name!r}: EXTERNAL without entries)"
    if how == 4:
        t.external_data.add(key=rng.choice(("location", "checksum", "basepath", "")), value=rng.choice(LOCATIONS))
        return f"external({t.name!r}: extra entry)"
    data = st.files.get("weights.data")
    if isinstance(data, bytes):
        st.files["weights.data"] = data[: rng.randrange(len(data) + 1)]
    return f"external({t.name!r}: data file truncated)"


def m_nest_if(rng: random.Random, st: OnnxState) -> str:
    depth = rng.choice((2, 16, 64, 99, 101, 200, 1000, 3000))
    st.model.ClearField("graph")
    st.graph_bytes = nested_if_graph(depth)
    return f"nest_if(depth {depth})"


def _raw_tensor(name: str, dims: list[int], raw: bytes) -> TensorProto:
    """A float tensor whose declared dims need not match its bytes (helper.make_tensor checks that)."""
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, raw_data=raw)
    t.dims.extend(dims)
    return t


def m_huge(rng: random.Random, st: OnnxState) -> str:
    g = st.model.graph
    how = rng.randrange(4)
    big = rng.choice((10**9, 2**31, 2**40, 10**5))
    if how == 0:  # declared huge initializer, few bytes of data
        g.initializer.append(_raw_tensor("huge", [1, big], b"\0\0\0\0"))
        g.node.append(helper.make_node("Identity", ["huge"], ["huge_out"]))
        g.output.append(helper.make_tensor_value_info("huge_out", TensorProto.FLOAT, [1, big]))
    elif how == 1:  # computed at run time from a tiny constant
        g.initializer.append(numpy_helper.from_array(np.int64([big, big]), "huge_shape"))
        g.node.append(helper.make_node("ConstantOfShape", ["huge_shape"], ["huge_out"]))
        g.output.append(helper.make_tensor_value_info("huge_out", TensorProto.FLOAT, None))
    elif how == 2:  # Constant node with a huge declared value
        t = _raw_tensor("v", [big], b"\0" * 8)
        g.node.append(helper.make_node("Constant", [], ["huge_out"], value=t))
        g.output.append(helper.make_tensor_value_info("huge_out", TensorProto.FLOAT, [big]))
    else:  # huge declared input
        if not g.input:
            return "huge(no input)"
        shape = g.input[0].type.tensor_type.shape
        del shape.dim[:]
        for _ in range(rng.choice((2, 4))):
            shape.dim.add().dim_value = big
    return f"huge(kind {how}, {big})"


def m_structure(rng: random.Random, st: OnnxState) -> str:
    g = st.model.graph
    how = rng.randrange(5)
    if how == 0 and g.node:
        i = rng.randrange(len(g.node))
        del g.node[i]
        return f"structure(node {i} removed)"
    if how == 1 and g.node:
        g.node.append(rng.choice(list(g.node)))
        return "structure(node duplicated)"
    if how == 2 and g.node:
        n = rng.choice(list(g.node))
        if n.output:
            n.input.append(n.output[0])
        return f"structure(cycle on {n.op_type})"
    if how == 3 and g.initializer:
        del g.initializer[rng.randrange(len(g.initializer))]
        return "structure(initializer removed)"
    for coll in (g.output, g.input):
        if coll and rng.random() < 0.5:
            del coll[rng.randrange(len(coll))]
            return "structure(graph io removed)"
    g.node.reverse()
    return "structure(nodes reversed)"


def m_sparse(rng: random.Random, st: OnnxState) -> str:
    g = st.model.graph
    if not g.sparse_initializer:
        vals = numpy_helper.from_array(np.float32([1.0, 2.0]), "sp_new")
        g.sparse_initializer.append(helper.make_sparse_tensor(vals, numpy_helper.from_array(np.int64([0, 1]), ""),
                                                              [2]))  # fmt: skip
    sp = rng.choice(list(g.sparse_initializer))
    how = rng.randrange(3)
    if how == 0:
        sp.indices.CopyFrom(numpy_helper.from_array(np.int64([rng.choice(INTERESTING_32), -5]), sp.indices.name))
    elif how == 1:
        sp.dims[:] = [rng.choice(DIMS) for _ in sp.dims] or [10**9]
    else:
        sp.values.dims[:] = [rng.choice((0, 10**9, 3))]
    return f"sparse(kind {how})"


MUTATIONS: tuple[Callable[[random.Random, OnnxState], str], ...] = (
    m_dims, m_dims, m_tensor_dims, m_elem_type, m_elem_type, m_attribute, m_attribute, m_op, m_opset, m_names,
    m_names, m_external, m_external, m_external, m_nest_if, m_huge, m_structure, m_sparse,
)  # fmt: skip


def _patch_markers(rng: random.Random, data: bytes, markers: list[str]) -> bytes:
    for m in markers:
        raw = m.encode()
        bad = (rng.choice(BAD_UTF8) * len(raw))[: len(raw)]
        data = data.replace(raw, bad)
    return data


def mutate(rng: random.Random, files: dict[str, bytes | Symlink], main: str) -> tuple[dict, list[str]]:
    """One ONNX case from a seed's files: structure mutations, raw byte mutations, or both."""
    files = dict(files)
    mode = rng.choices(("struct", "raw", "both"), (0.55, 0.25, 0.2))[0]
    done: list[str] = []
    data = files[main]
    assert isinstance(data, bytes)
    if mode != "raw":
        model = ModelProto()
        model.ParseFromString(data)
        st = OnnxState(model, files)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            done.append(rng.choice(MUTATIONS)(rng, st))
        try:
            data = model.SerializeToString()
        except Exception as e:  # noqa: BLE001 - protobuf refuses some values; keep the seed bytes then
            done.append(f"serialize failed ({type(e).__name__}), seed bytes kept")
        if st.graph_bytes:
            data += len_field(7, st.graph_bytes)
        data = _patch_markers(rng, data, st.markers)
    if mode != "struct":
        data, raw = mutate_bytes(rng, data)
        done.extend(raw)
    files[main] = data
    return files, done
