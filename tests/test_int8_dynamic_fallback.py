"""int8-dynamic that meets its tolerance: a model with one weight matrix int8 cannot hold (a huge row that only ever
multiplies zeros, so per-channel int8 rounds every other weight of its columns away) fails plain int8-dynamic on
ONNX Runtime, OpenVINO and TFLite; the fallback quantizes each op alone, finds that one by the model's outputs,
keeps it float by name (``nodes_to_exclude`` / NNCF ``ignored_scope`` / ai-edge-quantizer ``NO_QUANTIZE``) and
passes. ``--no-fallback`` keeps the failure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from converters import convert
from edge_sdk.errors import ValidationFailedError

WIDTH = 64


@pytest.fixture(scope="module")
def one_bad_weight(tmp_path_factory) -> tuple[Path, Path]:
    """(x[1,64] -> MatMul 'first' -> Relu -> MatMul 'sensitive' -> Relu -> MatMul 'last' -> logits[1,10], 60
    samples of the user's data). 'first' writes 0 to channel 0; 'sensitive' multiplies that channel by 1000.
    64 wide: TFLite leaves weights under 1024 values float."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w1 = rng.normal(0, 0.3, (WIDTH, WIDTH)).astype(np.float32)
    w1[:, 0] = 0
    w2 = rng.normal(0, 0.3, (WIDTH, WIDTH)).astype(np.float32)
    w2[0, :] = 1000.0
    w3 = rng.normal(0, 0.3, (WIDTH, 10)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu1"),
        helper.make_node("MatMul", ["hr", "w2"], ["s"], name="sensitive"),
        helper.make_node("Relu", ["s"], ["sr"], name="relu2"),
        helper.make_node("MatMul", ["sr", "w3"], ["logits"], name="last"),
    ]
    graph = helper.make_graph(
        nodes, "one_bad_weight", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w, n) for w, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"))],
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("dynamic")
    model = folder / "one_bad_weight.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(model))
    data = folder / "data.npy"
    np.save(data, rng.normal(0, 1, (60, 1, WIDTH)).astype(np.float32))
    return model, data


def test_int8_dynamic_fallback_keeps_the_bad_weight_float(one_bad_weight, tmp_path):
    model, data = one_bad_weight
    result = convert(model, to=["onnx", "openvino", "tflite"], precision="int8-dynamic", calibration=str(data),
                     output_dir=tmp_path)  # fmt: skip
    assert result.passed  # no allow_degraded: it would raise otherwise
    manifest = {a["target"]: a for a in json.loads((tmp_path / "manifest.json").read_text())["artifacts"]}
    for a in result.artifacts:
        fb = a.fallback
        assert fb is not None and fb["passed"], a.target
        assert any("cosine" in f for f in fb["plain_int8_failures"]), (a.target, fb)  # plain int8-dynamic failed
        worst = fb["most_sensitive"][0]
        # TFLite names an op by its output tensor ("...matmul_3/MatMul;...relu_1/Relu"), not by the ONNX node
        assert worst["name"] == ("sensitive" if a.target != "tflite" else fb["kept"][0]), (a.target, fb)
        assert fb["kept"] == [worst["name"]] == fb["excluded"], (a.target, fb)
        assert worst["measured_at"] == "model outputs, quantized alone"
        assert worst["snr_out_db"] < min(e["snr_out_db"] for e in fb["most_sensitive"][1:])
        assert len(fb["rounds"]) == 1 and fb["latency"]["backend"]
        assert manifest[a.target]["fallback"]["kept"] == fb["kept"]
        assert a.metrics[0].cosine > 0.98
    _assert_only_sensitive_float(result.artifact("onnx", "int8-dynamic").path)
    assert _float_weight_max(result.artifact("tflite", "int8-dynamic").path) == 1000.0  # 'sensitive' kept float


def _float_weight_max(path: Path) -> float:
    """The largest magnitude among the float 2-D constants of a .tflite (the huge row shows only if kept float)."""
    from converters.quantizers.tflite_quant import _interpreter

    interpreter = _interpreter(path)
    interpreter.allocate_tensors()
    inputs = {d["index"] for d in interpreter.get_input_details()}
    values = [np.abs(interpreter.get_tensor(d["index"])).max() for d in interpreter.get_tensor_details()
              if d["dtype"] == np.float32 and len(d["shape"]) == 2 and d["index"] not in inputs
              and d["shape"][0] == WIDTH]  # fmt: skip
    return float(max(values, default=0.0))


def _assert_only_sensitive_float(path: Path) -> None:
    """'sensitive' is still a float MatMul on its float weight; 'first' and 'last' became MatMulInteger."""
    import onnx

    graph = onnx.load(str(path)).graph
    plain = [n for n in graph.node if n.op_type == "MatMul"]
    assert [n.name for n in plain] == ["sensitive"] and plain[0].input[1] == "w2"
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) == 2


def test_no_fallback_keeps_the_int8_dynamic_failure(one_bad_weight, tmp_path, cli):
    model, _ = one_bad_weight
    with pytest.raises(ValidationFailedError, match=r"one_bad_weight_int8-dynamic.onnx: output 'logits': cosine"):
        convert(model, to="onnx", precision="int8-dynamic", output_dir=tmp_path / "py", fallback=False)
    assert json.loads((tmp_path / "py" / "manifest.json").read_text())["artifacts"][0]["fallback"] is None

    out = tmp_path / "cli"  # without --calib the fallback ranks on generated samples, never the held-out ones
    r = cli("convert", str(model), "--to", "onnx", "--precision", "int8-dynamic", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    art = json.loads(r.stdout)["artifacts"][0]
    assert art["passed"] and art["fallback"]["kept"] == ["sensitive"]
    assert "int8 scales may not fit your data" not in r.stderr  # no scale is fitted to the ranking samples
