"""``edge_sdk.load(device=...)`` follows the device plan; missing accelerators fail clearly or fall back with a log."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import devices
import edge_sdk as es
from edge_sdk.errors import BackendOptionError

FIXTURES = Path(__file__).parent / "fixtures" / "devices"


@pytest.fixture
def pretend(monkeypatch):
    """Make ``device="auto"`` see another machine (detected from a fixture tree) instead of this one."""

    def use(fixture: str) -> devices.Plan:
        info = devices.detect(FIXTURES / fixture, env={})
        plan = devices.plan(info)
        monkeypatch.setattr(devices, "current", lambda: (info, plan))
        return plan

    return use


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE_DIR", str(tmp_path / "cache"))


def test_auto_on_this_machine_is_the_cpu_plan(mlp_onnx, three_formats, caplog):
    with caplog.at_level(logging.WARNING, logger="edge_sdk"):
        assert es.load(mlp_onnx).describe()["providers"] == ["CPUExecutionProvider"]
        assert es.load(three_formats["tflite"]).describe()["delegate"] == "xnnpack"
        assert es.load(three_formats["openvino"]).describe()["device"] == "CPU"
    assert "falling back" not in caplog.text


def test_auto_on_a_jetson_without_gpu_runtime_falls_back_with_a_log(pretend, mlp_onnx, caplog):
    pretend("jetson_agx_orin")
    x = np.ones((2, 16), np.float32)
    with caplog.at_level(logging.WARNING, logger="edge_sdk"):
        m = es.load(mlp_onnx, device="auto")
    assert m.describe()["providers"] == ["CPUExecutionProvider"]
    np.testing.assert_allclose(m(x), es.load(mlp_onnx, device="cpu")(x))
    text = caplog.text
    assert "ONNX Runtime TensorRT EP fp16 (engine cache on) [jetson-orin] is not usable" in text
    assert "'TensorrtExecutionProvider' is not in this onnxruntime build" in text and "onnxruntime-gpu" in text
    assert "falling back to ONNX Runtime CUDA EP [jetson-orin]" in text
    assert "falling back to ONNX Runtime CPU [jetson-orin]" in text


def test_named_profile_is_strict_and_says_what_to_install(mlp_onnx, three_formats):
    with pytest.raises(
        BackendOptionError, match="'TensorrtExecutionProvider' is not in this onnxruntime build.*onnxruntime-gpu"
    ):
        es.load(mlp_onnx, device="jetson-orin")
    with pytest.raises(BackendOptionError, match="delegate 'edgetpu' could not be loaded.*libedgetpu1-std"):
        es.load(three_formats["tflite"], device="coral-usb")
    with pytest.raises(BackendOptionError, match="OpenVINO device 'NPU' is not available.*install its driver"):
        es.load(three_formats["openvino"], device="intel-npu")
    # a profile with nothing special for a format runs it on the CPU, no error
    assert es.load(mlp_onnx, device="coral-usb").describe()["providers"] == ["CPUExecutionProvider"]


def test_coral_and_npu_plans_fall_back_to_cpu_under_auto(pretend, three_formats, caplog):
    x = np.ones((1, 16, 16, 3), np.float32)
    pretend("pi5_coral_usb")
    with caplog.at_level(logging.WARNING, logger="edge_sdk"):
        m = es.load(three_formats["tflite"])
    assert m.describe()["delegate"] == "xnnpack" and m(x).shape == (1, 5)
    assert "LiteRT + Edge TPU delegate (usb) [coral-usb] is not usable" in caplog.text
    caplog.clear()
    pretend("intel_core_ultra")
    with caplog.at_level(logging.WARNING, logger="edge_sdk"):
        m = es.load(three_formats["openvino"])
    assert m.describe()["device"] == "CPU"
    assert "OpenVINO NPU [intel-npu] is not usable" in caplog.text and "falling back to OpenVINO GPU" in caplog.text


def test_explicit_backend_and_options_still_win(pretend, three_formats, mlp_onnx):
    pretend("jetson_agx_orin")
    # the plan has no OpenVINO target for ONNX: the requested backend runs with its defaults
    assert es.load(three_formats["onnx"], backend="openvino").backend == "openvino"
    # user options override the plan's (here: plain CPU providers instead of TensorRT)
    m = es.load(mlp_onnx, providers=["CPUExecutionProvider"])
    assert m.describe()["providers"] == ["CPUExecutionProvider"]


def test_backend_device_names_pass_through(three_formats):
    with pytest.raises(BackendOptionError, match="OpenVINO device 'NPU' is not available on this machine"):
        es.load(three_formats["openvino"], device="NPU")


def test_detection_failure_never_stops_a_load(monkeypatch, mlp_onnx, caplog):
    devices.current.cache_clear()

    def broken(*a, **k):
        raise OSError("no /proc here")

    monkeypatch.setattr(devices, "detect", broken)
    try:
        with caplog.at_level(logging.WARNING, logger="edge_sdk"):
            assert es.load(mlp_onnx).backend == "onnxruntime"
        assert "device detection failed (OSError: no /proc here); using the generic CPU plan" in caplog.text
    finally:
        devices.current.cache_clear()


def test_openvino_cache_is_on_by_default_keyed_by_model_device_precision(three_formats, tmp_path):
    m = es.load(three_formats["openvino"])
    folder = Path(m.describe()["cache_dir"])
    assert folder.parent == tmp_path / "cache" / "openvino"
    digest, device, precision = folder.name.split("-")
    assert len(digest) == 16 and (device, precision) == ("CPU", "f32")
    assert any(folder.iterdir()), "OpenVINO wrote no compiled blob"
    again = es.load(three_formats["openvino"])
    assert again.describe()["cache_dir"] == str(folder)
    assert es.load(three_formats["openvino"], cache_dir=None).describe()["cache_dir"] is None
    bf16 = es.load(three_formats["openvino"], inference_precision="bf16").describe()["cache_dir"]
    assert bf16.endswith("-CPU-bf16")


def test_cache_can_be_turned_off_by_env(three_formats, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", "0")
    assert es.load(three_formats["openvino"]).describe()["cache_dir"] is None


def test_ort_tensorrt_engine_cache_options_are_filled_in(mlp_onnx, tmp_path):
    from edge_sdk.backends.onnxruntime_backend import _with_caches
    from edge_sdk.formats import inspect_file

    mf = inspect_file(mlp_onnx)
    trt = devices.plan("jetson-orin").targets_for("onnx")[0].options["providers"]
    (name, opts), *rest = _with_caches(list(trt), "default", mf)
    assert name == "TensorrtExecutionProvider" and rest == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert opts["trt_engine_cache_enable"] and opts["trt_fp16_enable"]
    assert Path(opts["trt_engine_cache_path"]).name.endswith("-Tensorrt-fp16")
    assert opts["trt_timing_cache_path"] == opts["trt_engine_cache_path"]
    kept = _with_caches([("TensorrtExecutionProvider", {"trt_engine_cache_path": "/mine"})], "default", mf)
    assert kept[0][1]["trt_engine_cache_path"] == "/mine"
    assert _with_caches(["TensorrtExecutionProvider"], None, mf) == ["TensorrtExecutionProvider"]
