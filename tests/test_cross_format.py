"""The same network exported to TFLite, ONNX and OpenVINO IR gives the same outputs through edge_sdk."""

from __future__ import annotations

import numpy as np
import pytest

import edge_sdk as es


@pytest.mark.parametrize(
    "fmt, backend",
    [("onnx", None), ("openvino", None), ("onnx", "openvino"), ("tflite", "openvino"), ("tflite", "litert")],
)
def test_same_network_same_outputs(three_formats, fmt, backend):
    x = np.random.default_rng(7).random((3, 16, 16, 3), dtype=np.float32)
    reference = es.load(three_formats["tflite"], backend="litert")(x)
    with es.load(three_formats[fmt], backend=backend) as m:
        out = m(x)
    assert out.shape == reference.shape == (3, 5)
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-5)
    assert out.argmax(1).tolist() == reference.argmax(1).tolist()
