"""Builders of crafted model files for the untrusted-file tests: TFLite with the LiteRT flatbuffer schema,
ONNX with ``onnx.helper`` (or raw protobuf bytes where ``onnx`` refuses to write them), OpenVINO IR by
editing the XML of a tiny saved model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge_sdk as es
from edge_sdk.summary import summarize


def tflite_bytes(
    tensors=(("x", [1, 4], 0, None), ("y", [1, 4], 0, None), ("out", [1, 4], 0, None)),
    inputs=(0, 1),
    outputs=(2,),
    op="ADD",
    op_inputs=(0, 1),
    op_outputs=(2,),
    options=None,
) -> bytes:
    """A one-operator TFLite model; tensors are (name: str | bytes, shape, TensorType, constant bytes or None)."""
    flatbuffers = pytest.importorskip("flatbuffers")
    S = pytest.importorskip("ai_edge_litert.schema_py_generated")
    m = S.ModelT()
    m.version = 3
    code = S.OperatorCodeT()
    code.builtinCode = getattr(S.BuiltinOperator, op)
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)  # 127: "see builtin_code"
    code.version = 1
    m.operatorCodes = [code]
    m.buffers = [S.BufferT()]
    sg = S.SubGraphT()
    sg.tensors = []
    for name, shape, ttype, data in tensors:
        t = S.TensorT()
        t.shape, t.type, t.name = list(shape), ttype, name.encode() if isinstance(name, str) else name
        if data is not None:
            buf = S.BufferT()
            buf.data = list(data)
            m.buffers.append(buf)
            t.buffer = len(m.buffers) - 1
        sg.tensors.append(t)
    sg.inputs, sg.outputs = list(inputs), list(outputs)
    node = S.OperatorT()
    node.opcodeIndex, node.inputs, node.outputs = 0, list(op_inputs), list(op_outputs)
    if options:  # (union name, {field: value}), e.g. ("Pool2DOptions", {"filterHeight": 2})
        kind, values = options
        node.builtinOptionsType = getattr(S.BuiltinOptions, kind)
        node.builtinOptions = getattr(S, kind + "T")()
        for key, value in values.items():
            setattr(node.builtinOptions, key, value)
    sg.operators = [node]
    m.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def onnx_model(nodes, inputs=None, outputs=None, initializers=(), **kw):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "g",
        inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        list(initializers),
    )
    kw.setdefault("opset_imports", [helper.make_opsetid("", 17)])
    return onnx, helper.make_model(graph, ir_version=8, **kw)


def relu_onnx(path: Path) -> Path:
    onnx, model = onnx_model([pytest.importorskip("onnx").helper.make_node("Relu", ["x"], ["y"])])
    return write(path, model.SerializeToString())


def external_tensor(name: str, location: str, dims=(1, 4)):
    """A float TensorProto whose data claims to live in ``location``."""
    from onnx import TensorProto

    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims))
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb(num: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def tiny_ir(folder: Path) -> Path:
    """relu((x[1,4] + const w[1,4]) * const b[1,4]), saved as OpenVINO IR (16 bytes of weights each)."""
    ov = pytest.importorskip("openvino")
    from openvino import opset13 as ops

    x = ops.parameter([1, 4], np.float32, name="x")
    w = ops.constant(np.arange(4, dtype=np.float32).reshape(1, 4), name="w")
    b = ops.constant(np.full((1, 4), 2, np.float32), name="b")
    model = ov.Model([ops.relu(ops.multiply(ops.add(x, w), b), name="y")], [x], "tiny")
    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(folder / "tiny.xml"), compress_to_fp16=False)
    return folder / "tiny.xml"


def edit_ir(src: Path, dst: Path, old: bytes, new: bytes) -> Path:
    data = src.read_bytes()
    assert old in data, old
    dst.write_bytes(data.replace(old, new))
    dst.with_suffix(".bin").write_bytes(src.with_suffix(".bin").read_bytes())
    return dst


def raises_everywhere(path: Path, error: type, message: str, **kw) -> None:
    """``load`` and ``summarize`` both refuse ``path`` with ``error`` whose text contains ``message``."""
    for call in (lambda: es.load(path, **kw), lambda: summarize(path, **kw)):
        with pytest.raises(error) as info:
            call()
        assert message in str(info.value)
