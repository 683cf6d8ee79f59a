"""The one Model API over every runtime: specs, running, errors at run time, lifetime."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import edge_sdk as es
from edge_sdk.errors import ConcurrentUseError, InputMismatchError, ModelClosedError


def test_specs_mark_dynamic_dims_and_layout(mlp_onnx, three_formats):
    m = es.load(mlp_onnx)
    (x,) = m.inputs
    assert (x.name, x.shape, x.dtype, x.is_dynamic) == ("x", (None, 16), np.float32, True)
    assert x.dim_names[0] == "batch" and x.shape_str() == "[batch,16]"
    assert m.outputs[0].name == "y"
    t = es.load(three_formats["tflite"])
    assert t.inputs[0].layout == "NHWC" and t.inputs[0].shape == (None, 16, 16, 3)


def test_run_call_and_dynamic_batch_on_every_backend(three_formats):
    x4 = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    for fmt in ("tflite", "onnx", "openvino"):
        with es.load(three_formats[fmt]) as m:
            out = m(x4)
            assert out.shape == (4, 5), fmt
            named = m.run({m.inputs[0].name: x4[:1]})
            assert list(named) == [m.outputs[0].name]
            np.testing.assert_allclose(named[m.outputs[0].name], out[:1], rtol=1e-4, atol=1e-5)


def test_multi_input_multi_output(two_io_onnx):
    m = es.load(two_io_onnx)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 2, dtype=np.int64)
    out = m.run({"a": a, "b": b})
    np.testing.assert_array_equal(out["sum"], a + 2)
    np.testing.assert_array_equal(out["prod"], a * 2)
    assert set(m([a, b])) == {"sum", "prod"}  # several outputs -> dict
    with pytest.raises(InputMismatchError, match=r"model takes 2 inputs \(a, b\); pass a dict"):
        m(a)


@pytest.mark.parametrize(
    "feeds, message",
    [
        ({"x": np.zeros((1, 15), np.float32)}, "input 'x' expects shape [batch,16], got [1,15]"),
        ({"x": np.zeros((16,), np.float32)}, "input 'x' expects shape [batch,16], got [16]"),
        ({"x": np.zeros((1, 16), np.float64)}, "input 'x' expects dtype float32, got float64; convert with x.astype"),
        ({"input": np.zeros((1, 16), np.float32)}, "unknown input name(s) ['input']; the model's inputs are ['x']"),
        ({}, "missing input(s) ['x']"),
        ([np.zeros((1, 16), np.float32)] * 2, "model takes 1 input(s) (x), got 2"),
    ],
)
def test_wrong_inputs_name_what_was_expected(mlp_onnx, feeds, message):
    m = es.load(mlp_onnx)
    with pytest.raises(InputMismatchError) as info:
        m.run(feeds)
    assert message in str(info.value)


def test_int8_model_quantizes_and_dequantizes_for_the_caller(three_formats):
    x = np.random.default_rng(2).random((1, 16, 16, 3), dtype=np.float32)
    ref = es.load(three_formats["tflite"])(x)
    q = es.load(three_formats["tflite_int8"])
    spec = q.inputs[0]
    assert spec.dtype == np.int8 and spec.quant is not None and spec.is_quantized
    with pytest.raises(InputMismatchError, match="pass dequantize=True to quantize float input"):
        q(x)
    out = q.run({spec.name: x}, dequantize=True)[q.outputs[0].name]
    assert out.dtype == np.float32
    assert np.abs(out - ref).max() < 0.05 * max(1.0, np.abs(ref).max())
    raw = q(spec.quant.quantize(x, np.int8))
    assert raw.dtype == np.int8  # without dequantize the caller gets the model's own integers
    np.testing.assert_allclose(q.outputs[0].quant.dequantize(raw), out)
    # the load-time option does the same for every call
    np.testing.assert_allclose(es.load(three_formats["tflite_int8"], dequantize=True)(x), out)


def test_close_and_context_manager(mlp_onnx):
    with es.load(mlp_onnx) as m:
        m(np.zeros((1, 16), np.float32))
    with pytest.raises(ModelClosedError, match="is closed; load it again"):
        m(np.zeros((1, 16), np.float32))
    assert "closed" in repr(m)


def test_second_thread_during_a_run_gets_a_clear_error(three_formats):
    m = es.load(three_formats["onnx"])
    x = np.zeros((64, 16, 16, 3), np.float32)
    errors: list[BaseException] = []

    def worker():
        for _ in range(200):
            try:
                m(x)
            except ConcurrentUseError as e:
                errors.append(e)
                return

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors, "concurrent calls were not detected"
    assert "safe from one thread at a time" in str(errors[0])


def test_warmup_and_describe(three_formats):
    m = es.load(three_formats["openvino"], warmup=2, threads=1)
    d = m.describe()
    assert d["backend"] == "openvino" and d["device"] == "CPU" and d["inputs"][0]["shape"] == [None, 16, 16, 3]
    assert es.load(three_formats["onnx"]).describe()["providers"] == ["CPUExecutionProvider"]
    assert es.load(three_formats["tflite"]).describe()["delegate"] == "xnnpack"
