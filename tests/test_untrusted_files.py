"""Crafted model files (issue 18): every failure is a typed EdgeSDKError naming the cause, resources are bounded.

Each test builds its hostile file in ``tmp_path``: TFLite with the LiteRT flatbuffer schema, ONNX with
``onnx.helper`` (or raw protobuf bytes where ``onnx`` refuses to write them), OpenVINO IR by editing
the XML of a tiny saved model.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import edge_sdk as es
from edge_sdk.errors import (
    InferenceError,
    ModelClosedError,
    ModelFileError,
    ModelLoadError,
    ModelTooLargeError,
    UnsafeModelError,
    first_line,
)
from edge_sdk.summary import summarize

GiB = 1024**3


# -- builders ----------------------------------------------------------------------------------------


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


# -- TFLite ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"inputs": (-1, 1)}, "subgraph 0 input #0 names tensor index -1, but the subgraph has 3 tensors"),
        ({"outputs": (7,)}, "subgraph 0 output #0 names tensor index 7, but the subgraph has 3 tensors"),
        ({"op_inputs": (0, 9)}, "subgraph 0 operator 0 input #1 names tensor index 9, but the subgraph has 3"),
        ({"op_outputs": (3,)}, "subgraph 0 operator 0 output #0 names tensor index 3"),
    ],
)
def test_tflite_tensor_index_out_of_range_is_a_typed_error(kw, message, tmp_path):
    path = write(tmp_path / "bad.tflite", tflite_bytes(**kw))
    raises_everywhere(path, ModelFileError, message)


def test_tflite_tensor_name_not_utf8_is_a_typed_error(tmp_path):
    tensors = ((b"x\xff", [1, 4], 0, None), ("y", [1, 4], 0, None), ("out", [1, 4], 0, None))
    path = write(tmp_path / "name.tflite", tflite_bytes(tensors=tensors))
    raises_everywhere(path, ModelFileError, "subgraph 0 tensor 0 name is not UTF-8 text (b'x\\xff')")


def test_tflite_declared_tensor_past_the_budget_is_refused_before_the_interpreter(tmp_path, monkeypatch):
    tensors = (("x", [1, 10**9], 0, None), ("y", [1, 4], 0, None), ("out", [1, 10**9], 0, None))
    path = write(tmp_path / "huge.tflite", tflite_bytes(tensors=tensors))
    assert path.stat().st_size < 2048  # a few hundred bytes declare 8 GB
    raises_everywhere(
        path,
        ModelTooLargeError,
        "tensor 'x' (subgraph 0 tensor 0) declares shape [1, 1000000000] of float32: 3.7 GiB",
        max_memory=GiB,
    )
    with pytest.raises(ModelTooLargeError) as info:
        es.load(path, max_memory=GiB)
    assert "above the memory budget of 1.0 GiB" in str(info.value)
    assert "max_memory=" in str(info.value) and "EDGE_SDK_MAX_MODEL_MEMORY" in str(info.value)
    # the environment sets the default budget; each tensor fits 6 GiB, so do the graph's inputs and
    # outputs (x, y), but the ADD needs x and its output together
    monkeypatch.setenv("EDGE_SDK_MAX_MODEL_MEMORY", "6G")
    path = write(tmp_path / "op.tflite", tflite_bytes(tensors=tensors, outputs=(1,)))
    with pytest.raises(ModelTooLargeError, match=r"operator 0's inputs and outputs need 7\.5 GiB .* at the same time"):
        es.load(path)


def test_memory_budget_from_the_environment(monkeypatch):
    from edge_sdk.formats import budget

    monkeypatch.setenv("EDGE_SDK_MAX_MODEL_MEMORY", "512M")
    assert budget.default_budget() == 512 * 1024**2
    monkeypatch.setenv("EDGE_SDK_MAX_MODEL_MEMORY", "off")
    assert budget.default_budget() == budget.UNLIMITED
    monkeypatch.setenv("EDGE_SDK_MAX_MODEL_MEMORY", "lots")
    with pytest.raises(ModelFileError, match=r"EDGE_SDK_MAX_MODEL_MEMORY: not a size: 'lots' \(use bytes or a K/M/G/T"):
        budget.default_budget()
    monkeypatch.delenv("EDGE_SDK_MAX_MODEL_MEMORY")
    assert budget.default_budget() == (budget.machine_memory() or 2 * budget.FALLBACK_BYTES) // 2


def test_tflite_dynamic_dims_count_at_their_allocated_size(tmp_path):
    """shape_signature -1 dims are allocated at ``shape``'s size (1): a [?, 4] input loads within a tiny budget."""
    path = write(tmp_path / "ok.tflite", tflite_bytes())
    with es.load(path, max_memory=4096) as m:
        assert m.run([np.ones((1, 4), np.float32)] * 2)["out"].tolist() == [[2.0] * 4]


F32x4 = np.zeros(4, np.float32).tobytes()


@pytest.mark.parametrize(
    "build, message",
    [
        (  # set_tensor on it would write into the read-only mapping of the file (SIGSEGV on run)
            dict(tensors=(("x", [1, 4], 0, F32x4), ("y", [1, 4], 0, None), ("out", [1, 4], 0, None))),
            "subgraph 0 input #0 is tensor 0, a constant with data in the file",
        ),
        (  # ADD reads its inputs through null tensors (SIGSEGV on load)
            dict(op_inputs=(-1, 1)),
            "subgraph 0 operator 0 (builtin operator 0) has no tensor for its required input #0",
        ),
        (dict(op_inputs=(0, -1)), "subgraph 0 operator 0 (builtin operator 0) has no tensor for its required input #1"),
        (  # RESHAPE's shape tensor read through null (SIGSEGV on load; fuzzer finding)
            dict(op="RESHAPE", op_inputs=(0, -1)),
            "subgraph 0 operator 0 (builtin operator 22) has no tensor for its required input #1",
        ),
        (  # the pooling kernel loops over a filter of -2**31 rows (SIGSEGV on run; fuzzer finding)
            dict(
                tensors=(("x", [1, 4, 4, 1], 0, None), ("out", [1, 2, 2, 1], 0, None)),
                inputs=(0,),
                outputs=(1,),
                op="AVERAGE_POOL_2D",
                op_inputs=(0,),
                op_outputs=(1,),
                options=("Pool2DOptions", dict(strideW=2, strideH=2, filterWidth=2, filterHeight=-(2**31))),
            ),
            "subgraph 0 operator 0 has Pool2DOptions.filter_height = -2147483648; it must be between 1 and 65536",
        ),
        (  # FULLY_CONNECTED may omit its bias (#2), never its weights (#1)
            dict(op="FULLY_CONNECTED", op_inputs=(0, -1, -1)),
            "subgraph 0 operator 0 (builtin operator 9) has no tensor for its required input #1",
        ),
        (  # the kernel would read 4000 bytes from a 16-byte buffer
            dict(tensors=(("x", [1, 4], 0, None), ("w", [1, 1000], 0, F32x4), ("out", [1, 4], 0, None)), inputs=(0,)),
            "tensor 1 ('w') declares shape [1, 1000] of float32 (4000 bytes) but its buffer holds 16 bytes",
        ),
        (  # XNNPACK unpacks fp16 weights at the output's size (SIGSEGV on load)
            dict(
                tensors=(("w16", [4], 1, F32x4[:8]), ("w", [4, 1000], 0, None)),
                inputs=(),
                outputs=(1,),
                op="DEQUANTIZE",
                op_inputs=(0,),
                op_outputs=(1,),
            ),
            "operator 0 (DEQUANTIZE) turns constant tensor 0 of shape [4] into tensor 1 of shape [4, 1000]",
        ),
    ],
)
def test_tflite_structures_that_crash_the_interpreter_are_refused(build, message, tmp_path):
    """Each of these made LiteRT segfault (found by benchmarks/fuzz_loaders.py); checked without the runtime."""
    path = write(tmp_path / "bad.tflite", tflite_bytes(**build))
    with pytest.raises(ModelFileError) as info:
        es.inspect_file(path)
    assert message in str(info.value)


@pytest.mark.parametrize("op", ["FILL", "BROADCAST_TO"])
def test_tflite_constant_shape_of_a_huge_output_is_refused(op, tmp_path):
    """FILL/BROADCAST_TO fed a constant shape: the interpreter would allocate 10^10 elements while loading."""
    dims = np.array([100000, 100000], np.int32).tobytes()
    if op == "FILL":
        tensors, inputs = (("dims", [2], 2, dims), ("value", [], 0, b"\0" * 4), ("out", [1], 0, None)), ()
    else:
        tensors, inputs = (("x", [1], 0, None), ("dims", [2], 2, dims), ("out", [1], 0, None)), (0,)
    path = write(tmp_path / "fill.tflite", tflite_bytes(tensors, inputs, (2,), op, (0, 1), (2,)))
    message = f"the output of subgraph 0 operator 0 ({op}, constant shape input tensor {0 if op == 'FILL' else 1}) "
    raises_everywhere(path, ModelTooLargeError, message + "declares shape [100000, 100000]", max_memory=GiB)


def test_tflite_runtime_failure_in_run_is_an_inference_error(tmp_path):
    """GATHER with an index past the table fails inside invoke(): LiteRT's RuntimeError becomes InferenceError."""
    index = np.array([7], np.int32).tobytes()
    tensors = (("params", [4], 0, None), ("index", [1], 2, index), ("out", [1], 0, None))
    path = write(tmp_path / "gather.tflite", tflite_bytes(tensors, (0,), (2,), "GATHER", (0, 1), (2,)))
    with es.load(path) as m, pytest.raises(InferenceError) as info:
        m.run(np.zeros(4, np.float32))
    assert "litert failed to run gather.tflite" in str(info.value)
    assert "out of bounds" in str(info.value).lower() or "gather" in str(info.value).lower()


# -- ONNX --------------------------------------------------------------------------------------------


def test_onnx_name_not_utf8_is_a_typed_error(tmp_path):
    path = relu_onnx(tmp_path / "relu.onnx")
    data = path.read_bytes()  # "y": node output (field 2) and graph output (ValueInfoProto.name, field 1)
    path.write_bytes(data.replace(b"\x12\x01y", b"\x12\x01\xff").replace(b"\n\x01y", b"\n\x01\xff"))
    raises_everywhere(path, ModelFileError, "a node output name is not UTF-8 text (b'\\xff')")


@pytest.mark.parametrize(
    "location, message",
    [
        ("\0", "contains the control character '\\x00'"),
        ("w.bin\0../../etc/passwd", "contains the control character '\\x00'"),
        ("w\x1b[2J.bin", "contains the control character '\\x1b'"),
        ("a" * 300, "an external data location of 300 characters"),
        ("d/" * 600 + "w.bin", "an external data location of 1205 characters"),
    ],
)
@pytest.mark.parametrize("safe", [False, True])
def test_onnx_external_location_with_control_chars_or_too_long_is_unsafe(location, message, safe, tmp_path):
    onnx, model = onnx_model(
        [pytest.importorskip("onnx").helper.make_node("Add", ["x", "w"], ["y"])],
        initializers=[external_tensor("w", location)],
    )
    path = write(tmp_path / "ext.onnx", model.SerializeToString())
    with pytest.raises(UnsafeModelError) as info:
        es.load(path, safe=safe)
    assert message in str(info.value) and "tensor 'w'" in str(info.value)


def _escaping_tensor_in(where: str, tmp_path: Path) -> Path:
    """A valid-looking model whose only external tensor (pointing at ../secret.bin) sits in ``where``."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    folder = tmp_path / "model"
    folder.mkdir()
    ext = external_tensor("leak", "../secret.bin")
    relu = helper.make_node("Relu", ["x"], ["y"])
    if where == "sparse_value":
        sparse = onnx.SparseTensorProto(dims=[8])
        sparse.values.CopyFrom(external_tensor("leak", "../secret.bin", dims=(4,)))
        sparse.indices.CopyFrom(helper.make_tensor("idx", TensorProto.INT64, [4], [0, 1, 2, 3]))
        nodes = [helper.make_node("Constant", [], ["c"], sparse_value=sparse), relu]
        _, model = onnx_model(nodes)
    elif where == "training_info":
        _, model = onnx_model([relu])
        init = helper.make_graph([], "init", [], [], [ext])
        model.training_info.add().initialization.CopyFrom(init)
    elif where in ("function_default", "function_first"):
        body = [helper.make_node("Relu", ["a"], ["b"])]
        fn = helper.make_function("local", "F", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
        if where == "function_default":  # an attribute default of the function holds the tensor
            fn.attribute_proto.append(helper.make_attribute("bias", ext))
        else:  # the tensor sits in a function node; the function is written before the graph
            fn.node.append(helper.make_node("Constant", [], ["k"], value=ext))
        opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
        _, model = onnx_model([helper.make_node("F", ["x"], ["y"], domain="local")], opset_imports=opsets)
        model.functions.append(fn)
        if where == "function_first":
            graph = pb(7, model.graph.SerializeToString())
            data = model.SerializeToString().replace(graph, b"") + graph  # fields out of the usual order
            return write(folder / "m.onnx", data)
    else:
        raise AssertionError(where)
    return write(folder / "m.onnx", model.SerializeToString())


@pytest.mark.parametrize("where", ["sparse_value", "training_info", "function_default", "function_first"])
def test_onnx_external_data_is_confined_everywhere_onnx_allows_a_location(where, tmp_path):
    path = _escaping_tensor_in(where, tmp_path)
    with pytest.raises(UnsafeModelError) as info:
        es.inspect_file(path)
    assert "external data at '../secret.bin', outside the model's folder" in str(info.value)
    from edge_sdk.formats.onnx_format import read_wire_model

    assert any(t.external.get("location") == "../secret.bin" for t in read_wire_model(path).all_tensors())


def nested_if(depth: int) -> bytes:
    """A ModelProto whose If nodes nest ``depth`` then-branches deep (raw bytes: onnx cannot write this)."""
    graph = pb(1, pb(4, b"Identity") + pb(1, b"x") + pb(2, b"y"))
    for _ in range(depth):
        graph = pb(1, pb(4, b"If") + pb(1, b"c") + pb(2, b"y") + pb(5, pb(1, b"then_branch") + pb(6, graph)))
    return b"\x08\x08" + pb(7, graph)


@pytest.mark.parametrize("depth", [40, 3000])
def test_onnx_deeply_nested_subgraphs_are_refused(depth, tmp_path):
    path = write(tmp_path / "nested.onnx", nested_if(depth))
    raises_everywhere(path, ModelFileError, "subgraphs (If/Loop/Scan bodies) are nested more than 32 levels deep")


def test_onnx_initializer_dims_are_checked_against_payload_and_budget(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    short = numpy_helper.from_array(np.ones((1, 4), np.float32), "w")
    short.raw_data = short.raw_data[:8]
    _, model = onnx_model([helper.make_node("Add", ["x", "w"], ["y"])], initializers=[short])
    path = write(tmp_path / "short.onnx", model.SerializeToString())
    raises_everywhere(path, ModelFileError, "initializer 'w' declares dims [1, 4] of float32 (16 bytes) but stores 8")

    huge = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 10**9], raw_data=b"\0" * 16)
    _, model = onnx_model([helper.make_node("Add", ["x", "w"], ["y"])], initializers=[huge])
    path = write(tmp_path / "huge.onnx", model.SerializeToString())
    raises_everywhere(
        path, ModelTooLargeError, "initializer 'w' declares shape [1, 1000000000] of float32: 3.7 GiB", max_memory=GiB
    )


def test_onnx_declared_graph_input_past_the_budget_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    big = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 10**12])]
    _, model = onnx_model([onnx.helper.make_node("Relu", ["x"], ["y"])], inputs=big)
    path = write(tmp_path / "big.onnx", model.SerializeToString())
    raises_everywhere(path, ModelTooLargeError, "graph input 'x' declares shape [batch, 1000000000000] of float32")


@pytest.mark.parametrize("how", ["initializer", "constant_node", "expand"])
def test_onnx_constant_shape_of_a_huge_run_time_tensor_is_refused(how, tmp_path):
    """ConstantOfShape/Expand fed a constant shape allocate at run time: the shape is checked at load."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    shape = numpy_helper.from_array(np.array([100000, 100000], np.int64), "huge_shape")
    if how == "initializer":
        nodes, inits = [helper.make_node("ConstantOfShape", ["huge_shape"], ["big"], name="fill")], [shape]
    elif how == "constant_node":
        nodes = [
            helper.make_node("Constant", [], ["huge_shape"], value=shape),
            helper.make_node("ConstantOfShape", ["huge_shape"], ["big"], name="fill"),
        ]
        inits = []
    else:
        nodes, inits = [helper.make_node("Expand", ["x", "huge_shape"], ["big"], name="fill")], [shape]
    outputs = [helper.make_tensor_value_info("big", onnx.TensorProto.FLOAT, None)]
    _, model = onnx_model(nodes, outputs=outputs, initializers=inits)
    path = write(tmp_path / "fill.onnx", model.SerializeToString())
    op = "Expand" if how == "expand" else "ConstantOfShape"
    raises_everywhere(
        path,
        ModelTooLargeError,
        f"the output 'big' of {op} node 'fill' (constant 'huge_shape') declares shape [100000, 100000]",
        max_memory=GiB,
    )


def test_onnx_summary_of_an_input_without_type_finishes(tmp_path):
    """ORT's symbolic shape inference loops forever on an input of element type 0; the summary must end."""
    import subprocess
    import sys

    onnx = pytest.importorskip("onnx")
    from onnx import helper

    untyped = [helper.make_tensor_value_info("x", 0, [1, 4])]
    _, model = onnx_model([onnx.helper.make_node("Relu", ["x"], ["y"])], inputs=untyped)
    path = write(tmp_path / "untyped.onnx", model.SerializeToString())
    code = "import sys; from edge_sdk.summary import summarize; print(summarize(sys.argv[1]).ops)"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0 and "Relu" in out.stdout, out.stderr[-2000:]


def test_onnx_runtime_failure_in_run_is_an_inference_error(tmp_path):
    """Reshape to a shape fed at run time: ONNX Runtime's RuntimeException becomes InferenceError."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
        helper.make_tensor_value_info("shape", TensorProto.INT64, [1]),
    ]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    _, model = onnx_model([onnx.helper.make_node("Reshape", ["x", "shape"], ["y"])], inputs=inputs, outputs=out)
    path = write(tmp_path / "reshape.onnx", model.SerializeToString())
    with es.load(path, backend="onnxruntime") as m, pytest.raises(InferenceError) as info:
        m.run({"x": np.zeros((2, 3), np.float32), "shape": np.array([5], np.int64)})
    assert "onnxruntime failed to run reshape.onnx" in str(info.value)
    assert "shape" in str(info.value).lower()


# -- OpenVINO ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("etype", ["dynamic", "undefined"])
def test_openvino_const_of_dynamic_type_is_a_typed_error(etype, tmp_path):
    src = tiny_ir(tmp_path / "src")
    path = edit_ir(
        src, tmp_path / "dyn.xml", b'element_type="f32" shape="1, 4"', f'element_type="{etype}" shape="1, 4"'.encode()
    )
    message = f"Const layer 'w' has element_type '{etype}'; a Const needs a concrete"
    raises_everywhere(path, ModelFileError, message)


def test_openvino_constant_layer_type_that_crashes_the_plugin_is_refused(tmp_path):
    """A 'Constant' (not 'Const') layer is built without data: compile_model segfaulted (found by the fuzzer)."""
    src = tiny_ir(tmp_path / "src")
    path = edit_ir(src, tmp_path / "constant.xml", b'type="Const"', b'type="Constant"')
    with pytest.raises(ModelFileError) as info:
        es.inspect_file(path)
    assert "Constant layer 'w' has type 'Constant'; OpenVINO IR stores constants as 'Const' layers" in str(info.value)


@pytest.mark.parametrize("kind", ["Assign", "ReadValue"])
def test_openvino_state_layer_without_its_variable_is_refused(kind, tmp_path):
    """An Assign/ReadValue with no variable_id is built with a null variable: read_model segfaulted (fuzzer)."""
    src = tiny_ir(tmp_path / "src")
    path = edit_ir(src, tmp_path / "state.xml", b'type="ReLU"', f'type="{kind}"'.encode())
    raises_everywhere(path, ModelFileError, f"{kind} layer 'y' has no <data variable_id=...>; a state layer must")


def test_openvino_declared_shapes_and_weights_are_bounded(tmp_path):
    src = tiny_ir(tmp_path / "src")
    path = edit_ir(
        src, tmp_path / "c.xml", b'shape="1, 4" offset="0" size="16"', b'shape="1, 1000000000" offset="0" size="16"'
    )
    raises_everywhere(path, ModelFileError, "Const layer 'w' declares shape [1, 1000000000] of f32 (4000000000 bytes)")
    path = edit_ir(src, tmp_path / "p.xml", b'shape="1,4" element_type', b'shape="1,1000000000000" element_type')
    raises_everywhere(path, ModelTooLargeError, "Parameter layer 'x' declares shape [1, 1000000000000] of f32")
    # weights read from the .bin count against the budget too
    with pytest.raises(
        ModelTooLargeError, match=r"add up to 32 B \(32 bytes, at weights read from tiny.bin at offset 16"
    ):
        es.load(src, max_memory=24)  # each 16-byte tensor fits, both weights together do not


def test_openvino_broadcast_to_a_constant_huge_shape_is_refused(tmp_path):
    """Broadcast to a Const target shape whose output port claims [1, 1]: the Const's values are checked."""
    ov = pytest.importorskip("openvino")
    from openvino import opset13 as ops

    x = ops.parameter([1], np.float32, name="x")
    big = ops.broadcast(x, ops.constant(np.array([100000, 100000], np.int64), name="target"), name="big")
    src = tmp_path / "bc.xml"
    ov.save_model(ov.Model([big], [x], "bc"), str(src))
    path = edit_ir(src, tmp_path / "lying.xml", b"<dim>100000</dim>", b"<dim>1</dim>")
    message = "the output of Broadcast layer 'big' (constant Const layer 'target') declares shape [100000, 100000]"
    raises_everywhere(path, ModelTooLargeError, message, max_memory=GiB)


def test_openvino_error_keeps_the_runtimes_reason(tmp_path):
    """A shape clash inside the IR: the message names the cause, not only OpenVINO's stage header."""
    src = tiny_ir(tmp_path / "src")
    path = edit_ir(
        src, tmp_path / "clash.xml", b'shape="1, 4" offset="0" size="16"', b'shape="1, 2" offset="0" size="8"'
    )
    with pytest.raises(ModelLoadError) as info:
        es.load(path, backend="openvino", cache_dir=None)
    assert "Argument shapes are inconsistent" in str(info.value)
    assert "Exception from" not in str(info.value) and "Check '" not in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'false' failed at src/frontends/common/src/"
            "frontend.cpp:58:\nFrontEnd API failed with GeneralFailure:\nConverting input model\n"
            "Unsupported data type UNDEFINED for input 'x'\n\n",
            "Unsupported data type UNDEFINED for input 'x'",
        ),
        (
            "Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'false' failed at src/frontends/common/src/"
            'frontend.cpp:47:\nLoading input model\nInput tensor isn\'t found for node "missing"\n',
            'Input tensor isn\'t found for node "missing"',
        ),
        (
            "Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:151:\n"
            "FrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted. Failed operations detailed"
            " log:\n-- MatMul-17 with a message:\nWhile validating ONNX node '<Node(MatMul): y>': Check 'a' failed at "
            "src/core/x.hpp:65:\nIncompatible MatMul matrix dimension.\n\nSummary:\n-- Conversion is failed for: "
            "MatMul-17\n",
            "Incompatible MatMul matrix dimension. (MatMul-17 with a message; While validating ONNX node "
            "'<Node(MatMul): y>'; Conversion is failed for: MatMul-17)",
        ),
        (
            "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad feed",
            "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad feed",
        ),
    ],
)
def test_first_line_keeps_the_reason_after_openvino_headers(text, expected):
    assert first_line(RuntimeError(text)) == expected


# -- Model: runs and close ---------------------------------------------------------------------------


class _SlowBackend:
    """A backend whose run blocks until released, and whose close drops its session (as the real ones do)."""

    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        from edge_sdk.tensor_spec import TensorSpec

        self.inputs = [TensorSpec("x", (1,), np.dtype("float32"))]
        self.outputs = [TensorSpec("y", (1,), np.dtype("float32"))]
        self.session: object = object()
        self.started, self.release, self.fail = threading.Event(), threading.Event(), fail

    def run(self, feeds):
        if self.fail:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned")
        self.started.set()
        self.release.wait(60)
        return [feeds[0] + 1 if self.session is not None else self.session.missing]  # AttributeError once closed

    def close(self) -> None:
        self.session = None


def _model(backend: _SlowBackend, tmp_path: Path) -> es.Model:
    from edge_sdk.formats import ModelFile

    return es.Model(backend, ModelFile(path=tmp_path / "fake.onnx", format="onnx", size=1))


def test_close_while_another_thread_runs_waits_for_the_run(tmp_path):
    backend = _SlowBackend()
    model = _model(backend, tmp_path)
    results: dict[str, object] = {}

    def run() -> None:
        try:
            results["run"] = model.run(np.zeros(1, np.float32))
        except Exception as e:  # recorded, asserted below
            results["run"] = e

    runner = threading.Thread(target=run)
    runner.start()
    assert backend.started.wait(60)
    closer = threading.Thread(target=model.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive() and backend.session is not None  # close waits for the run in flight
    with pytest.raises(ModelClosedError, match="fake.onnx is closed"):  # a run starting now is refused
        model.run(np.zeros(1, np.float32))
    backend.release.set()
    runner.join(60)
    closer.join(60)
    assert not closer.is_alive() and backend.session is None
    assert isinstance(results["run"], dict) and results["run"]["y"].tolist() == [1.0]
    with pytest.raises(ModelClosedError):
        model.run(np.zeros(1, np.float32))


def test_raw_runtime_error_in_run_is_an_inference_error(tmp_path):
    model = _model(_SlowBackend(fail=True), tmp_path)
    with pytest.raises(InferenceError) as info:
        model.run(np.zeros(1, np.float32))
    assert str(info.value) == (
        "fake failed to run fake.onnx: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned"
    )


# -- safety net, cache -------------------------------------------------------------------------------


def test_an_unforeseen_exception_in_a_check_is_still_typed(tmp_path, monkeypatch):
    import edge_sdk.formats as formats

    path = relu_onnx(tmp_path / "m.onnx")
    handler = formats._REGISTRY["onnx"]

    def boom(p, size, max_memory):
        raise KeyError("surprise")

    monkeypatch.setitem(
        formats._REGISTRY, "onnx", formats.FormatHandler("onnx", handler.extensions, handler.sniff, boom)
    )
    with pytest.raises(
        ModelFileError, match=r"is not a valid onnx model \(corrupt file; the check failed with KeyError"
    ):
        es.inspect_file(path)


def test_cache_key_of_a_huge_weights_file_reads_only_samples(tmp_path, monkeypatch):
    """A 10 GB sparse .bin: the OpenVINO cache key must not read it in full (counted by wrapping open)."""
    import builtins

    from edge_sdk import cache
    from edge_sdk.formats import ModelFile

    xml, weights = tmp_path / "big.xml", tmp_path / "big.bin"
    xml.write_text("<net/>")
    with open(weights, "wb") as f:
        f.truncate(10 * GiB)
    read = {"bytes": 0}

    class Counting:
        def __init__(self, f) -> None:
            self._f = f

        def read(self, n=-1):
            data = self._f.read(n)
            read["bytes"] += len(data)
            return data

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def counting_open(*args, **kwargs):
        return Counting(builtins.open(*args, **kwargs))  # noqa: SIM115 (closed by Counting.__exit__)

    monkeypatch.setattr(cache, "open", counting_open, raising=False)
    mf = ModelFile(path=xml, format="openvino", size=6, companions=(weights,))
    first = cache.model_hash(mf)
    assert 0 < read["bytes"] < 16 * 1024**2
    with open(weights, "r+b") as f:  # a rewrite of the same size changes the key (mtime and the sampled head)
        f.write(b"\1" * 16)
    assert cache.model_hash(mf) != first
    small = tmp_path / "small.bin"  # below the threshold the whole content is the key
    small.write_bytes(b"\0" * 4096)
    key = cache._file_digest(small, small.stat())
    small.write_bytes(b"\0" * 2048 + b"\1" + b"\0" * 2047)
    assert cache._file_digest(small, small.stat()) != key


def test_tensor_of_rank_above_numpy_limit_is_refused_at_load(tmp_path):
    """ONNX Runtime loads a rank-66 input, but no numpy array can feed it (found by the fuzzer, seed 7)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    dims = [1] * 66
    _, model = onnx_model(
        [onnx.helper.make_node("Relu", ["x"], ["y"])],
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
    )
    path = write(tmp_path / "deep.onnx", model.SerializeToString())
    with pytest.raises(ModelFileError) as info:
        es.load(path)
    assert "deep.onnx: tensor 'x' has rank 66; numpy arrays have at most 64 dimensions" in str(info.value)
