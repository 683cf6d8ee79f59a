"""TFLite fuses GELU into one op (``GELU``), which ``tf2onnx --tflite`` passes through as ``TFL_GELU``, an op ONNX
does not define: the route rewrites it as its formula (exact: erf; approximate: tanh). Keras ConvNeXt -> ONNX
failed on it (its SavedModel route goes through TFLite when tf2onnx leaves function calls)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters import convert


@pytest.fixture(scope="module")
def gelu_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), batch_size=1)
    x = keras.activations.gelu(keras.layers.Dense(16)(inp), approximate=False)
    y = keras.activations.gelu(keras.layers.Dense(8)(x), approximate=True)
    model = keras.Model(inp, y)
    path = tmp_path_factory.mktemp("gelu") / "gelu.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def test_tflite_gelu_reaches_onnx_as_its_formula(gelu_tflite, tmp_path):
    import onnx

    r = convert(gelu_tflite, to="onnx", precision="fp32", output_dir=tmp_path, progress=False)
    a = r.artifacts[0]
    assert a.passed and min(m.cosine for m in a.metrics) > 0.99999, a.failures
    ops = [n.op_type for n in onnx.load(str(a.path)).graph.node]
    assert "TFL_GELU" not in ops and "Erf" in ops and "Tanh" in ops  # one exact GELU, one approximate
    import edge_sdk as es

    with es.load(gelu_tflite) as ref, es.load(a.path) as got:
        x = np.random.default_rng(1).standard_normal((1, 8)).astype(np.float32) * 3
        np.testing.assert_allclose(next(iter(got.run(x).values())), next(iter(ref.run(x).values())), atol=1e-5)
