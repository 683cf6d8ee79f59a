"""A minimal, allocation-light reader of the ONNX protobuf wire format.

Why not ``onnx.load``: a device may have onnxruntime without the ``onnx``
package, and an untrusted file must be checked *before* any native parser sees
it. This reader walks ModelProto -> GraphProto -> nodes / initializers, skipping
tensor payloads by length, so it costs milliseconds even on large models and
fails with a clear message on truncated or non-protobuf bytes.

It reaches every place ONNX stores a tensor (and so an external-data location):
graph initializers and sparse initializers, node attributes (``t``, ``tensors``,
``sparse_tensor``, ``sparse_tensors``) in the main graph, in every subgraph
(``g``, ``graphs``), in model-local functions (their nodes and attribute defaults)
and in ``training_info`` (initialization and algorithm graphs). Identifiers
(names, op types, domains, external-data keys) must be UTF-8, as the runtimes'
Python APIs decode them; subgraphs may nest at most :data:`MAX_GRAPH_DEPTH` deep.

Field numbers come from onnx/onnx.proto3.
"""

from __future__ import annotations

import struct
from typing import Any, Iterator

# wire types
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
#: If/Loop/Scan bodies nested deeper than this are refused (real models nest a few levels; the
#: runtimes' protobuf parsers stop at 100 message levels, ~33 graphs, and Python's recursion earlier)
MAX_GRAPH_DEPTH = 32
_HIGH_BYTES = bytes(range(128))


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    if pos < end and buf[pos] < 0x80:  # one byte: most keys and small lengths (a third of a file's parse time)
        return buf[pos], pos + 1
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def _signed(v: int) -> int:
    """int64 fields are varints of the two's complement: 2**64 - 1 is -1."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def iter_fields(buf: memoryview, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, object]]:
    """Yield ``(field_number, wire_type, value)``; LEN values are ``(start, end)`` spans."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        fnum, wtype = key >> 3, key & 7
        if fnum == 0:
            raise WireError("field number 0")
        if wtype == _VARINT:
            val, pos = _read_varint(buf, pos, end)
            yield fnum, wtype, val
        elif wtype == _LEN:
            length, pos = _read_varint(buf, pos, end)
            if pos + length > end:
                raise WireError(f"field {fnum} claims {length} bytes but only {end - pos} remain (truncated file?)")
            yield fnum, wtype, (pos, pos + length)
            pos += length
        elif wtype == _I64:
            if pos + 8 > end:
                raise WireError("truncated 64-bit field")
            yield fnum, wtype, pos
            pos += 8
        elif wtype == _I32:
            if pos + 4 > end:
                raise WireError("truncated 32-bit field")
            yield fnum, wtype, pos
            pos += 4
        else:
            raise WireError(f"invalid wire type {wtype} for field {fnum}")


def _fields(buf: memoryview, start: int, end: int) -> list[tuple[int, int, Any]]:
    """The fields of one message, as :func:`iter_fields` yields them, in a list.

    The structure walk's inner loop (a model's nodes, attributes and value shapes: most of a file's parse
    time): no generator to resume per field, and one-byte keys, lengths and values are read inline."""
    out: list[tuple[int, int, Any]] = []
    append = out.append
    pos = start
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(buf, pos, end)
        fnum, wtype = key >> 3, key & 7
        if fnum == 0:
            raise WireError("field number 0")
        if wtype == _LEN:
            if pos < end and buf[pos] < 0x80:
                length = buf[pos]
                pos += 1
            else:
                length, pos = _read_varint(buf, pos, end)
            if pos + length > end:
                raise WireError(f"field {fnum} claims {length} bytes but only {end - pos} remain (truncated file?)")
            append((fnum, _LEN, (pos, pos + length)))
            pos += length
        elif wtype == _VARINT:
            if pos < end and buf[pos] < 0x80:
                append((fnum, _VARINT, buf[pos]))
                pos += 1
            else:
                val, pos = _read_varint(buf, pos, end)
                append((fnum, _VARINT, val))
        elif wtype == _I64:
            if pos + 8 > end:
                raise WireError("truncated 64-bit field")
            append((fnum, wtype, pos))
            pos += 8
        elif wtype == _I32:
            if pos + 4 > end:
                raise WireError("truncated 32-bit field")
            append((fnum, wtype, pos))
            pos += 4
        else:
            raise WireError(f"invalid wire type {wtype} for field {fnum}")
    return out


def _text(buf: memoryview, span: tuple[int, int]) -> str:
    """Free text (producer, doc): undecodable bytes replaced."""
    return bytes(buf[span[0] : span[1]]).decode("utf-8", errors="replace")


def _name(buf: memoryview, span: tuple[int, int], what: str) -> str:
    """An identifier: must be UTF-8 (onnxruntime and OpenVINO hand names to Python, which decodes them)."""
    try:
        return str(buf[span[0] : span[1]], "utf-8")
    except UnicodeDecodeError:
        raise WireError(f"a {what} is not UTF-8 text ({bytes(buf[span[0] : span[1]])[:40]!r})") from None


class _Record:
    """A plain record with a dataclass's repr and equality. Not a dataclass: building the five classes costs a
    few ms at every start that checks a model, and a walk makes thousands of these."""

    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.__slots__)})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq


class WireTensor(_Record):
    """A tensor as seen on the wire (payload not copied, only measured)."""

    __slots__ = ("name", "dims", "data_type", "external", "data_location", "raw_bytes", "typed_counts", "where",
                 "int_values")  # fmt: skip

    def __init__(self, where: str = "initializer") -> None:
        self.name = ""
        self.dims: list[int] = []
        self.data_type = 0
        self.external: dict[str, str] = {}
        self.data_location = 0  # 1 == EXTERNAL
        self.raw_bytes: int | None = None  # length of raw_data, None if absent
        #: elements stored in the typed fields, by field number (float_data=4, int32_data=5, ...)
        self.typed_counts: dict[int, int] = {}
        self.where = where
        #: the values of a small int32/int64 tensor (shapes, repeats), None for others
        self.int_values: list[int] | None = None

    @property
    def numel(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n


class WireValueInfo(_Record):
    __slots__ = ("name", "elem_type", "dims")

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.elem_type = 0
        self.dims: list[int | str | None] = []


class WireNode(_Record):
    __slots__ = ("op_type", "domain", "name", "inputs", "outputs", "tensors")

    def __init__(self) -> None:
        self.op_type = ""
        self.domain = ""
        self.name = ""
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        #: tensors of this node's attributes (a Constant's value, ConstantOfShape's fill value)
        self.tensors: list[WireTensor] = []


class WireGraph(_Record):
    __slots__ = ("nodes", "initializers", "inputs", "outputs", "value_info", "subgraphs", "attribute_tensors", "name")

    def __init__(self) -> None:
        self.nodes: list[WireNode] = []
        self.initializers: list[WireTensor] = []
        self.inputs: list[WireValueInfo] = []
        self.outputs: list[WireValueInfo] = []
        self.value_info: list[WireValueInfo] = []
        self.subgraphs: list[WireGraph] = []
        #: tensors held by node attributes (Constant values, defaults), including sparse values/indices
        self.attribute_tensors: list[WireTensor] = []
        self.name = ""


class WireModel(_Record):
    __slots__ = ("ir_version", "opsets", "producer", "graph", "functions", "training_graphs")

    def __init__(self) -> None:
        self.ir_version = 0
        self.opsets: dict[str, int] = {}
        self.producer = ""
        self.graph: WireGraph | None = None
        #: model-local functions, each as a graph of its nodes and attribute defaults
        self.functions: list[WireGraph] = []
        #: training_info's initialization and algorithm graphs
        self.training_graphs: list[WireGraph] = []

    def all_graphs(self) -> Iterator[WireGraph]:
        """The main graph, functions and training graphs, and every subgraph inside them."""
        stack = [*([self.graph] if self.graph else []), *self.functions, *self.training_graphs]
        while stack:
            g = stack.pop()
            yield g
            stack.extend(g.subgraphs)

    def all_tensors(self) -> Iterator[WireTensor]:
        """Every tensor stored in the model: initializers and attribute tensors, everywhere ONNX allows one."""
        for g in self.all_graphs():
            yield from g.initializers
            yield from g.attribute_tensors


def _count_typed(buf: memoryview, fnum: int, wtype: int, val: object) -> int:
    """Elements in one occurrence of a typed data field (packed or not)."""
    if wtype != _LEN:
        return 1
    start, end = val
    if fnum == 4:  # float_data: fixed 4 bytes
        return (end - start) // 4
    if fnum == 10:  # double_data: fixed 8 bytes
        return (end - start) // 8
    if fnum == 6:  # string_data: one bytes value per occurrence
        return 1
    data = bytes(buf[start:end])  # packed varints: one element per byte without the continuation bit
    return len(data) - len(data.translate(None, _HIGH_BYTES))


#: int tensors up to this many elements keep their values (shape inputs of ConstantOfShape, Expand, Tile)
SMALL_INT_ELEMENTS = 64


def _small_ints(buf: memoryview, t: WireTensor, raw: tuple[int, int] | None, packed: list[tuple[int, int]]) -> None:
    """Decode the values of a small int32/int64 tensor from raw_data or int32_data/int64_data."""
    if t.data_type not in (6, 7) or t.numel > SMALL_INT_ELEMENTS or any(d < 0 for d in t.dims):
        return
    if raw is not None:
        size = 8 if t.data_type == 7 else 4
        data = bytes(buf[raw[0] : raw[1]])
        if len(data) == size * t.numel:
            t.int_values = list(struct.unpack(f"<{t.numel}{'q' if size == 8 else 'i'}", data))
        return
    values: list[int] = []
    for p, e in packed:
        while p < e and len(values) <= SMALL_INT_ELEMENTS:
            v, p = _read_varint(buf, p, e)
            values.append(_signed(v))
    if len(values) == t.numel:
        t.int_values = values


def _parse_tensor(buf: memoryview, span: tuple[int, int], where: str = "initializer") -> WireTensor:
    t = WireTensor(where=where)
    raw: tuple[int, int] | None = None
    packed: list[tuple[int, int]] = []
    for fnum, wtype, val in _fields(buf, *span):
        if fnum == 1:
            if wtype == _VARINT:
                t.dims.append(_signed(int(val)))
            elif wtype == _LEN:  # packed
                p, e = val
                while p < e:
                    d, p = _read_varint(buf, p, e)
                    t.dims.append(_signed(d))
        elif fnum == 2 and wtype == _VARINT:
            t.data_type = int(val)
        elif fnum == 8 and wtype == _LEN:
            t.name = _name(buf, val, "tensor name")
        elif fnum == 9 and wtype == _LEN:
            t.raw_bytes = val[1] - val[0]
            raw = val
        elif fnum in (4, 5, 6, 7, 10, 11):
            t.typed_counts[fnum] = t.typed_counts.get(fnum, 0) + _count_typed(buf, fnum, wtype, val)
            if fnum in (5, 7) and wtype == _LEN and len(packed) < 4:
                packed.append(val)
        elif fnum == 13 and wtype == _LEN:
            key = value = ""
            for f2, w2, v2 in _fields(buf, *val):
                if w2 == _LEN and f2 == 1:
                    key = _name(buf, v2, "external_data key")
                elif w2 == _LEN and f2 == 2:
                    value = _name(buf, v2, "external_data value")
            t.external[key] = value
        elif fnum == 14 and wtype == _VARINT:
            t.data_location = int(val)
    _small_ints(buf, t, raw, packed)
    return t


def _parse_sparse(buf: memoryview, span: tuple[int, int], out: list[WireTensor], where: str) -> None:
    """SparseTensorProto: values=1, indices=2 (both TensorProto, both may be external)."""
    for f2, w2, v2 in _fields(buf, *span):
        if f2 in (1, 2) and w2 == _LEN:
            out.append(_parse_tensor(buf, v2, f"{where} ({'values' if f2 == 1 else 'indices'})"))


def _parse_value_info(buf: memoryview, span: tuple[int, int]) -> WireValueInfo:
    vi = WireValueInfo(name="")
    for fnum, wtype, val in _fields(buf, *span):
        if fnum == 1 and wtype == _LEN:
            vi.name = _name(buf, val, "value name")
        elif fnum == 2 and wtype == _LEN:  # TypeProto
            for f2, w2, v2 in _fields(buf, *val):
                if f2 == 1 and w2 == _LEN:  # tensor_type
                    for f3, w3, v3 in _fields(buf, *v2):
                        if f3 == 1 and w3 == _VARINT:
                            vi.elem_type = int(v3)
                        elif f3 == 2 and w3 == _LEN:  # shape
                            for f4, w4, v4 in _fields(buf, *v3):
                                if f4 == 1 and w4 == _LEN:
                                    dim: int | str | None = None
                                    for f5, w5, v5 in _fields(buf, *v4):
                                        if f5 == 1 and w5 == _VARINT:
                                            dim = _signed(int(v5))
                                        elif f5 == 2 and w5 == _LEN:
                                            dim = _name(buf, v5, "dimension name")
                                    vi.dims.append(dim)
    return vi


def _parse_attribute(
    buf: memoryview, span: tuple[int, int], graph: WireGraph, depth: int, node: WireNode | None = None
) -> None:
    for fnum, wtype, val in _fields(buf, *span):
        if wtype != _LEN:
            continue
        if fnum in (5, 10):  # t, tensors
            graph.attribute_tensors.append(_parse_tensor(buf, val, "attribute tensor"))
            if node is not None:
                node.tensors.append(graph.attribute_tensors[-1])
        elif fnum in (22, 23):  # sparse_tensor, sparse_tensors
            _parse_sparse(buf, val, graph.attribute_tensors, "sparse attribute tensor")
        elif fnum in (6, 11):  # g, graphs
            graph.subgraphs.append(_parse_graph(buf, val, depth + 1))


def _parse_node(buf: memoryview, span: tuple[int, int], graph: WireGraph, depth: int) -> WireNode:
    n = WireNode()
    for fnum, wtype, val in _fields(buf, *span):
        if wtype != _LEN:
            continue
        if fnum == 1:
            n.inputs.append(_name(buf, val, "node input name"))
        elif fnum == 2:
            n.outputs.append(_name(buf, val, "node output name"))
        elif fnum == 3:
            n.name = _name(buf, val, "node name")
        elif fnum == 4:
            n.op_type = _name(buf, val, "node op_type")
        elif fnum == 5:
            _parse_attribute(buf, val, graph, depth, n)
        elif fnum == 7:
            n.domain = _name(buf, val, "node domain")
    return n


def _parse_graph(buf: memoryview, span: tuple[int, int], depth: int = 0) -> WireGraph:
    if depth > MAX_GRAPH_DEPTH:
        raise WireError(
            f"subgraphs (If/Loop/Scan bodies) are nested more than {MAX_GRAPH_DEPTH} levels deep; "
            "no real model does this"
        )
    g = WireGraph()
    for fnum, wtype, val in _fields(buf, *span):
        if wtype != _LEN:
            continue
        if fnum == 1:
            g.nodes.append(_parse_node(buf, val, g, depth))
        elif fnum == 2:
            g.name = _text(buf, val)
        elif fnum == 5:
            g.initializers.append(_parse_tensor(buf, val))
        elif fnum == 15:  # sparse_initializer
            _parse_sparse(buf, val, g.initializers, "sparse initializer")
        elif fnum == 11:
            g.inputs.append(_parse_value_info(buf, val))
        elif fnum == 12:
            g.outputs.append(_parse_value_info(buf, val))
        elif fnum == 13:
            g.value_info.append(_parse_value_info(buf, val))
    return g


def _parse_function(buf: memoryview, span: tuple[int, int]) -> WireGraph:
    """FunctionProto: name=1, node=7, attribute_proto=11 (defaults, may hold tensors and graphs), value_info=12."""
    g = WireGraph()
    for fnum, wtype, val in _fields(buf, *span):
        if wtype != _LEN:
            continue
        if fnum == 1:
            g.name = _text(buf, val)
        elif fnum == 7:
            g.nodes.append(_parse_node(buf, val, g, 0))
        elif fnum == 11:
            _parse_attribute(buf, val, g, 0)
        elif fnum == 12:
            g.value_info.append(_parse_value_info(buf, val))
    return g


def parse_model(data: bytes | memoryview) -> WireModel:
    """Parse the structure of an ONNX ModelProto; raise :class:`WireError` if it is not one."""
    buf = memoryview(data)
    m = WireModel()
    for fnum, wtype, val in iter_fields(buf):
        if fnum == 1 and wtype == _VARINT:
            m.ir_version = int(val)
        elif fnum == 2 and wtype == _LEN:
            m.producer = _text(buf, val)
        elif fnum == 7 and wtype == _LEN:
            m.graph = _parse_graph(buf, val)
        elif fnum == 8 and wtype == _LEN:
            domain, version = "", 0
            for f2, w2, v2 in _fields(buf, *val):
                if f2 == 1 and w2 == _LEN:
                    domain = _name(buf, v2, "opset domain")
                elif f2 == 2 and w2 == _VARINT:
                    version = int(v2)
            m.opsets[domain] = version
        elif fnum == 20 and wtype == _LEN:  # TrainingInfoProto: initialization=1, algorithm=2
            for f2, w2, v2 in _fields(buf, *val):
                if f2 in (1, 2) and w2 == _LEN:
                    m.training_graphs.append(_parse_graph(buf, v2))
        elif fnum == 25 and wtype == _LEN:
            m.functions.append(_parse_function(buf, val))
    if m.ir_version <= 0 or m.graph is None:
        raise WireError("no ir_version or graph: this is not an ONNX ModelProto")
    if not m.graph.nodes and not m.graph.outputs:
        raise WireError("the graph has no nodes and no outputs")
    return m
