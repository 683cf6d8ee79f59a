"""Static int8 graph rules shared by every model (issue 13): a per-channel affine after a Conv is folded into it
before ONNX quantization; squeeze-excitation gates and a recurrent state's path stay float; OpenVINO
int8-dynamic steps around the CPU plugin's ConvertWeightCompressedConv1x1ToMatmul failure."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.quantizers import onnx_quant, openvino_quant


def _save(tmp_path: Path, name: str, nodes, inputs, outputs, inits) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # compare the graphs as written
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def test_conv_followed_by_an_unfolded_batchnorm_becomes_one_conv(tmp_path):
    """Keras DepthwiseConv2D through tf2onnx: Conv (no bias) -> Mul[1,C,1,1] -> Add[1,C,1,1] -> Clip."""
    rng = np.random.default_rng(0)
    c = 8
    inits = {"w": rng.normal(size=(c, 1, 3, 3)).astype(np.float32),
             "scale": rng.uniform(0.01, 30, size=(1, c, 1, 1)).astype(np.float32),
             "shift": rng.normal(size=(1, c, 1, 1)).astype(np.float32),
             "lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}  # fmt: skip
    nodes = [helper.make_node("Conv", ["x", "w"], ["dw"], name="dw", group=c, pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["dw", "scale"], ["bn_mul"], name="bn_mul"),
             helper.make_node("Add", ["bn_mul", "shift"], ["bn_add"], name="bn_add"),
             helper.make_node("Clip", ["bn_add", "lo", "hi"], ["y"], name="relu6")]  # fmt: skip
    path = _save(tmp_path, "dwbn", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 10, 10])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 10, 10])], inits)  # fmt: skip
    folded = onnx_quant._fold_conv_affine(path, SimpleNamespace(workdir=tmp_path))
    assert folded != path
    ops = [n.op_type for n in onnx.load(str(folded)).graph.node]
    assert ops == ["Conv", "Clip"]
    x = rng.normal(size=(1, c, 10, 10)).astype(np.float32)
    np.testing.assert_allclose(_run(folded, {"x": x})[0], _run(path, {"x": x})[0], rtol=1e-4, atol=1e-4)
    assert onnx_quant._fold_conv_affine(folded, SimpleNamespace(workdir=tmp_path)) == folded  # nothing left


def test_a_conv_whose_output_is_read_twice_is_not_folded(tmp_path):
    inits = {"w": np.ones((2, 2, 1, 1), np.float32), "s": np.full((1, 2, 1, 1), 2, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Mul", ["c", "s"], ["m"], name="mul"),
             helper.make_node("Add", ["c", "m"], ["y"], name="add")]  # fmt: skip
    path = _save(tmp_path, "shared", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], inits)  # fmt: skip
    assert onnx_quant._fold_conv_affine(path, SimpleNamespace(workdir=tmp_path)) == path


def _se_block(tmp_path: Path) -> Path:
    """x -> Conv -> Relu -> [GlobalAveragePool -> Conv -> Relu -> Conv -> HardSigmoid] -> Mul(x, gate) -> Conv."""
    rng = np.random.default_rng(1)
    c = 16
    inits = {"w0": rng.normal(size=(c, 3, 3, 3)).astype(np.float32), "w1": rng.normal(size=(4, c, 1, 1)).astype(
        np.float32), "b1": np.zeros(4, np.float32), "w2": rng.normal(size=(c, 4, 1, 1)).astype(np.float32),
        "b2": np.zeros(c, np.float32), "w3": rng.normal(size=(8, c, 1, 1)).astype(np.float32)}  # fmt: skip
    nodes = [helper.make_node("Conv", ["x", "w0"], ["f0"], name="stem", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["f0"], ["f"], name="stem_relu"),
             helper.make_node("GlobalAveragePool", ["f"], ["p"], name="se_pool"),
             helper.make_node("Conv", ["p", "w1", "b1"], ["h0"], name="se_fc1"),
             helper.make_node("Relu", ["h0"], ["h"], name="se_relu"),
             helper.make_node("Conv", ["h", "w2", "b2"], ["g0"], name="se_fc2"),
             helper.make_node("HardSigmoid", ["g0"], ["g"], name="se_gate", alpha=1 / 6),
             helper.make_node("Mul", ["f", "g"], ["s"], name="se_scale"),
             helper.make_node("Conv", ["s", "w3"], ["y"], name="project")]  # fmt: skip
    return _save(tmp_path, "se", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], inits)  # fmt: skip


def test_squeeze_excitation_gate_is_found_in_onnx_and_openvino(tmp_path):
    import openvino as ov

    path = _se_block(tmp_path)
    assert set(onnx_quant.gate_nodes(path)) == {"se_pool", "se_fc1", "se_relu", "se_fc2", "se_gate"}
    types = {op.get_friendly_name(): op.get_type_name() for op in ov.convert_model(str(path)).get_ops()}
    found = openvino_quant.gate_ops(ov.convert_model(str(path)))
    assert found and not any(types[n] == "Multiply" and "scale" in n for n in found)
    assert {"ReduceMean", "Convolution"} <= {types[n] for n in found}
    assert not any(n.startswith("stem") or n.startswith("project") for n in found)


def test_recurrent_state_path_is_found_and_nothing_else(tmp_path):
    """(x, state) -> (y, stateN): stateN = tanh(state @ A + x @ B), y = x @ C (the non-recurrent head)."""
    import openvino as ov

    rng = np.random.default_rng(2)
    inits = {k: rng.normal(size=(8, 8)).astype(np.float32) for k in ("A", "B", "C")}
    nodes = [helper.make_node("MatMul", ["state", "A"], ["sa"], name="rec_state"),
             helper.make_node("MatMul", ["x", "B"], ["xb"], name="rec_input"),
             helper.make_node("Add", ["sa", "xb"], ["pre"], name="rec_add"),
             helper.make_node("Tanh", ["pre"], ["stateN"], name="rec_tanh"),
             helper.make_node("MatMul", ["x", "C"], ["y"], name="head")]  # fmt: skip
    f = TensorProto.FLOAT
    path = _save(tmp_path, "rnn", nodes,
                 [helper.make_tensor_value_info("x", f, [1, 8]), helper.make_tensor_value_info("state", f, [1, 8])],
                 [helper.make_tensor_value_info("y", f, [1, 8]), helper.make_tensor_value_info("stateN", f, [1, 8])],
                 inits)  # fmt: skip
    model = ov.convert_model(str(path))
    found = openvino_quant.recurrent_ops(model)
    types = {op.get_friendly_name(): op.get_type_name() for op in model.get_ops()}
    assert {types[n] for n in found} >= {"MatMul", "Add", "Tanh"}
    assert not any("head" in n or n == "y" for n in found)  # the head reads x only
    assert openvino_quant.recurrent_ops(ov.convert_model(str(_se_block(tmp_path)))) == []  # one input: no state


def test_the_conv1x1_plugin_failure_names_the_conv_and_its_producer():
    message = ("Exception from src/inference/src/cpp/core.cpp:112: Default output not supported "
               "([ConvertWeightCompressedConv1x1ToMatmul] END: node: opset1::Convolution "
               "__module.model.10.m.0.attn.qkv.conv/aten::_convolution/Convolution (opset1::VariadicSplit "
               "__module.model.10/aten::split_with_sizes/VariadicSplit[1]:f32[1,128,10,10], opset1::Multiply x")
    found = openvino_quant._CONV1X1_PASS.search(message)
    assert found is not None
    assert found.groups() == ("__module.model.10.m.0.attn.qkv.conv/aten::_convolution/Convolution", "VariadicSplit")


@pytest.mark.parametrize("rank_shape", [(1, 8, 1, 1), (8, 1, 1), (1,), ()])
def test_per_channel_constant_shapes(rank_shape):
    c = np.arange(int(np.prod(rank_shape)) or 1, dtype=np.float64).reshape(rank_shape)
    got = onnx_quant._per_channel(c, 8, 4)
    assert got is not None and got.shape == (8,)
    assert onnx_quant._per_channel(np.ones((1, 1, 1, 8)), 8, 4) is None  # channels last: not a per-channel scale
