"""Crafted TFLite and ONNX files (issue 18): every failure is a typed EdgeSDKError naming the cause,
resources are bounded. Each test builds its hostile file in ``tmp_path`` (``untrusted_builders``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from untrusted_builders import external_tensor, onnx_model, pb, raises_everywhere, relu_onnx, tflite_bytes, write

import edge_sdk as es
from edge_sdk.errors import (
    InferenceError,
    ModelFileError,
    ModelTooLargeError,
    UnsafeModelError,
)

GiB = 1024**3


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
