"""ONNX protobuf bytes written by hand, for graphs protobuf's own encoder refuses (nested past 100 levels)."""

from __future__ import annotations

from onnx import AttributeProto, TensorProto


def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def len_field(field: int, payload: bytes) -> bytes:
    return key(field, 2) + varint(len(payload)) + payload


def value_info(name: str, dims: list[int], elem: int = TensorProto.FLOAT) -> bytes:
    shape = b"".join(len_field(1, key(1, 0) + varint(d)) for d in dims)
    tensor = key(1, 0) + varint(elem) + len_field(2, shape)
    return len_field(1, name.encode()) + len_field(2, len_field(1, tensor))


def if_node(out: str, then_g: bytes, else_g: bytes) -> bytes:
    def attr(name: str, g: bytes) -> bytes:
        return len_field(1, name.encode()) + len_field(6, g) + key(20, 0) + varint(AttributeProto.GRAPH)

    return (
        len_field(1, b"c")
        + len_field(2, out.encode())
        + len_field(4, b"If")
        + len_field(5, attr("then_branch", then_g))
        + len_field(5, attr("else_branch", else_g))
    )


def nested_if_graph(depth: int) -> bytes:
    """GraphProto bytes: ``If`` nested ``depth`` levels in then_branch (built on the wire: protobuf's
    own encoder refuses messages nested past 100 levels)."""
    leaf = (
        len_field(1, len_field(1, b"x") + len_field(2, b"y0") + len_field(4, b"Identity"))
        + len_field(2, b"leaf")
        + len_field(12, value_info("y0", [1, 4]))
    )
    inner = leaf
    for level in range(1, depth + 1):
        inner = (
            len_field(1, if_node(f"y{level}", inner, leaf))
            + len_field(2, f"g{level}".encode())
            + len_field(12, value_info(f"y{level}", [1, 4]))
        )
    top = len_field(1, if_node("y", inner, leaf)) + len_field(2, b"nested")
    return (
        top
        + len_field(11, value_info("x", [1, 4]))
        + len_field(11, value_info("c", [], TensorProto.BOOL))
        + len_field(12, value_info("y", [1, 4]))
    )
