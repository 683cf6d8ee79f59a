"""Backend choice and options: what is asked for is used, or the error says what is missing."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import edge_sdk as es
from edge_sdk.errors import BackendOptionError, BackendUnavailableError, UnsupportedFormatError


def test_ort_providers_in_priority_order_strict_and_auto(mlp_onnx, caplog):
    with pytest.raises(
        BackendOptionError, match="'CUDAExecutionProvider' is not in this onnxruntime build.*onnxruntime-gpu"
    ):
        es.load(mlp_onnx, device="cpu", providers=[("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger="edge_sdk"):
        m = es.load(mlp_onnx, device="auto", providers=["TensorrtExecutionProvider", "CPUExecutionProvider"])
    assert m.describe()["providers"] == ["CPUExecutionProvider"]
    assert "TensorrtExecutionProvider" in caplog.text and "falling back" in caplog.text


def test_ort_graph_optimization_and_unknown_option(mlp_onnx):
    x = np.ones((1, 16), np.float32)
    np.testing.assert_allclose(es.load(mlp_onnx, graph_optimization_level="disable")(x), es.load(mlp_onnx)(x))
    with pytest.raises(BackendOptionError, match="unknown onnxruntime option.*delegate"):
        es.load(mlp_onnx, delegate="gpu")


def test_litert_delegates(three_formats):
    x = np.ones((1, 16, 16, 3), np.float32)
    plain = es.load(three_formats["tflite"], delegate="none")
    assert plain.describe()["delegate"] == "none"
    np.testing.assert_allclose(plain(x), es.load(three_formats["tflite"])(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(
        BackendOptionError, match="delegate 'edgetpu' could not be loaded from libedgetpu.so.1.*libedgetpu1-std"
    ):
        es.load(three_formats["tflite"], delegate="edgetpu")
    with pytest.raises(BackendOptionError, match="delegate '/no/such/lib.so' could not be loaded"):
        es.load(three_formats["tflite"], delegate="/no/such/lib.so")


def test_openvino_device_hint_cache(three_formats, tmp_path):
    m = es.load(three_formats["openvino"], performance_hint="throughput", cache_dir=tmp_path / "ovcache")
    assert m(np.ones((1, 16, 16, 3), np.float32)).shape == (1, 5)
    assert any((tmp_path / "ovcache").iterdir()), "OpenVINO cache dir stayed empty"
    with pytest.raises(BackendOptionError, match="OpenVINO device 'NPU' is not available on this machine"):
        es.load(three_formats["openvino"], device="NPU")
    with pytest.raises(BackendOptionError, match="performance_hint must be one of"):
        es.load(three_formats["openvino"], performance_hint="fast")


def test_backend_that_cannot_read_the_format(three_formats):
    with pytest.raises(
        UnsupportedFormatError,
        match="backend 'litert' cannot read onnx models; backends for onnx: onnxruntime, openvino",
    ):
        es.load(three_formats["onnx"], backend="litert")
    with pytest.raises(BackendOptionError, match="unknown backend 'tensorrt'; choose one of"):
        es.load(three_formats["onnx"], backend="tensorrt")


def test_backend_not_installed_names_the_extra(three_formats, cli, hide_module):
    env = hide_module("openvino")
    r = cli("bench", str(three_formats["openvino"]), "--runs", "1", env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "edge-sdk bench: error: backend 'openvino' is not available: its runtime is not installed. "
        'Install it with: pip install "edge-sdk[openvino]" (no installed runtime reads openvino models)'
    )
    # ONNX falls back to the next runtime that reads it when onnxruntime is missing
    r = cli("bench", str(three_formats["onnx"]), "--runs", "1", "--json", env=hide_module("onnxruntime"))
    assert r.returncode == 0, r.stderr
    assert '"backend": "openvino"' in r.stdout


def test_unavailable_backend_error_in_process(monkeypatch, mlp_onnx):
    from edge_sdk.backends.onnxruntime_backend import OnnxRuntimeBackend

    monkeypatch.setattr(OnnxRuntimeBackend, "is_available", classmethod(lambda cls: False))
    with pytest.raises(BackendUnavailableError, match=r'pip install "edge-sdk\[onnx\]"'):
        es.load(mlp_onnx, backend="onnxruntime")
