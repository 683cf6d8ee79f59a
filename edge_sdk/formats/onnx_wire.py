"""A minimal, allocation-light reader of the ONNX protobuf wire format.

Why not ``onnx.load``: a device may have onnxruntime without the ``onnx``
package, and an untrusted file must be checked *before* any native parser sees
it. This reader walks ModelProto -> GraphProto -> nodes / initializers, skipping
tensor payloads by length, so it costs milliseconds even on large models and
fails with a clear message on truncated or non-protobuf bytes.

Field numbers come from onnx/onnx.proto3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

# wire types
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
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


def _text(buf: memoryview, span: tuple[int, int]) -> str:
    return bytes(buf[span[0] : span[1]]).decode("utf-8", errors="replace")


@dataclass
class WireTensor:
    """An initializer as seen on the wire (payload not copied)."""

    name: str = ""
    dims: list[int] = field(default_factory=list)
    data_type: int = 0
    external: dict[str, str] = field(default_factory=dict)
    data_location: int = 0  # 1 == EXTERNAL

    @property
    def numel(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n


@dataclass
class WireValueInfo:
    name: str
    elem_type: int = 0
    dims: list[int | str | None] = field(default_factory=list)


@dataclass
class WireNode:
    op_type: str = ""
    domain: str = ""
    name: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


@dataclass
class WireGraph:
    nodes: list[WireNode] = field(default_factory=list)
    initializers: list[WireTensor] = field(default_factory=list)
    inputs: list[WireValueInfo] = field(default_factory=list)
    outputs: list[WireValueInfo] = field(default_factory=list)
    subgraphs: list[WireGraph] = field(default_factory=list)


@dataclass
class WireModel:
    ir_version: int = 0
    opsets: dict[str, int] = field(default_factory=dict)
    producer: str = ""
    graph: WireGraph | None = None
    function_nodes: list[WireNode] = field(default_factory=list)

    def all_tensors(self) -> Iterator[WireTensor]:
        """Every tensor stored in the model: initializers and attribute tensors, recursively."""
        stack = [self.graph] if self.graph else []
        while stack:
            g = stack.pop()
            yield from g.initializers
            stack.extend(g.subgraphs)


def _parse_tensor(buf: memoryview, span: tuple[int, int]) -> WireTensor:
    t = WireTensor()
    for fnum, wtype, val in iter_fields(buf, *span):
        if fnum == 1:
            if wtype == _VARINT:
                t.dims.append(int(val))
            elif wtype == _LEN:  # packed
                p, e = val
                while p < e:
                    d, p = _read_varint(buf, p, e)
                    t.dims.append(d)
        elif fnum == 2 and wtype == _VARINT:
            t.data_type = int(val)
        elif fnum == 8 and wtype == _LEN:
            t.name = _text(buf, val)
        elif fnum == 13 and wtype == _LEN:
            key = value = ""
            for f2, w2, v2 in iter_fields(buf, *val):
                if w2 == _LEN and f2 == 1:
                    key = _text(buf, v2)
                elif w2 == _LEN and f2 == 2:
                    value = _text(buf, v2)
            t.external[key] = value
        elif fnum == 14 and wtype == _VARINT:
            t.data_location = int(val)
    return t


def _parse_value_info(buf: memoryview, span: tuple[int, int]) -> WireValueInfo:
    vi = WireValueInfo(name="")
    for fnum, wtype, val in iter_fields(buf, *span):
        if fnum == 1 and wtype == _LEN:
            vi.name = _text(buf, val)
        elif fnum == 2 and wtype == _LEN:  # TypeProto
            for f2, w2, v2 in iter_fields(buf, *val):
                if f2 == 1 and w2 == _LEN:  # tensor_type
                    for f3, w3, v3 in iter_fields(buf, *v2):
                        if f3 == 1 and w3 == _VARINT:
                            vi.elem_type = int(v3)
                        elif f3 == 2 and w3 == _LEN:  # shape
                            for f4, w4, v4 in iter_fields(buf, *v3):
                                if f4 == 1 and w4 == _LEN:
                                    dim: int | str | None = None
                                    for f5, w5, v5 in iter_fields(buf, *v4):
                                        if f5 == 1 and w5 == _VARINT:
                                            dim = int(v5)
                                        elif f5 == 2 and w5 == _LEN:
                                            dim = _text(buf, v5)
                                    vi.dims.append(dim)
    return vi


def _parse_attribute(buf: memoryview, span: tuple[int, int], graph: WireGraph) -> None:
    for fnum, wtype, val in iter_fields(buf, *span):
        if wtype != _LEN:
            continue
        if fnum in (5, 10):  # t, tensors
            graph.initializers.append(_parse_tensor(buf, val))
        elif fnum in (6, 11):  # g, graphs
            graph.subgraphs.append(_parse_graph(buf, val))


def _parse_node(buf: memoryview, span: tuple[int, int], graph: WireGraph) -> WireNode:
    n = WireNode()
    for fnum, wtype, val in iter_fields(buf, *span):
        if wtype != _LEN:
            continue
        if fnum == 1:
            n.inputs.append(_text(buf, val))
        elif fnum == 2:
            n.outputs.append(_text(buf, val))
        elif fnum == 3:
            n.name = _text(buf, val)
        elif fnum == 4:
            n.op_type = _text(buf, val)
        elif fnum == 5:
            _parse_attribute(buf, val, graph)
        elif fnum == 7:
            n.domain = _text(buf, val)
    return n


def _parse_graph(buf: memoryview, span: tuple[int, int]) -> WireGraph:
    g = WireGraph()
    for fnum, wtype, val in iter_fields(buf, *span):
        if wtype != _LEN:
            continue
        if fnum == 1:
            g.nodes.append(_parse_node(buf, val, g))
        elif fnum == 5:
            g.initializers.append(_parse_tensor(buf, val))
        elif fnum == 15:  # sparse_initializer: values=1, indices=2
            for f2, w2, v2 in iter_fields(buf, *val):
                if f2 in (1, 2) and w2 == _LEN:
                    g.initializers.append(_parse_tensor(buf, v2))
        elif fnum == 11:
            g.inputs.append(_parse_value_info(buf, val))
        elif fnum == 12:
            g.outputs.append(_parse_value_info(buf, val))
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
            for f2, w2, v2 in iter_fields(buf, *val):
                if f2 == 1 and w2 == _LEN:
                    domain = _text(buf, v2)
                elif f2 == 2 and w2 == _VARINT:
                    version = int(v2)
            m.opsets[domain] = version
        elif fnum == 25 and wtype == _LEN:  # FunctionProto: node=7
            holder = WireGraph()
            for f2, w2, v2 in iter_fields(buf, *val):
                if f2 == 7 and w2 == _LEN:
                    m.function_nodes.append(_parse_node(buf, v2, holder))
            if m.graph is not None:
                m.graph.subgraphs.append(holder)
    if m.ir_version <= 0 or m.graph is None:
        raise WireError("no ir_version or graph: this is not an ONNX ModelProto")
    if not m.graph.nodes and not m.graph.outputs:
        raise WireError("the graph has no nodes and no outputs")
    return m
