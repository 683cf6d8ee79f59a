"""Ops a target has no kernel for: rewritten into ops it has where exact enough, else a typed error naming
the op and the node (never the converter's MLIR dump or an invalid file)."""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

from converters import convert  # noqa: E402
from edge_sdk.errors import UnsupportedOperatorError  # noqa: E402


def _dense_gelu(path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((16,), batch_size=1, name="features")
    x = keras.layers.Dense(32, activation=keras.activations.gelu)(inp)  # exact GELU: tf2onnx writes Erfc
    keras.Model(inp, keras.layers.Dense(10)(x)).save(path)
    return path


def test_keras_exact_gelu_reaches_onnx(tmp_path):
    """tf2onnx writes the non-standard op Erfc for Keras' exact GELU; it becomes 1 - Erf and the ONNX loads."""
    import onnx

    result = convert(_dense_gelu(tmp_path / "gelu.keras"), to=["onnx"], output_dir=tmp_path / "o", progress=False)
    assert result.passed and result.artifacts[0].metrics[0].cosine > 0.99999
    ops = {n.op_type for n in onnx.load(str(result.artifacts[0].path)).graph.node}
    assert "Erf" in ops and "Erfc" not in ops


def test_tflite_op_without_builtin_is_named_with_its_node():
    from converters.routes.tf_routes import raise_unsupported_or

    mlir = ("Could not translate MLIR to FlatBuffer.<unknown>:0: error: loc(callsite(fused[\"Erf:\", "
            "\"functional_1/erf_1/Erf@__inference_serving_default_88\"] at ...)): 'tf.Erf' op is neither a custom op "
            "nor a flex op")  # fmt: skip
    with pytest.raises(UnsupportedOperatorError) as e:
        raise_unsupported_or(RuntimeError(mlir), "TFLite")
    assert str(e.value).startswith("TFLite has no builtin op for TF op Erf (node 'functional_1/erf_1/Erf'): replace")


def test_onnx_op_unknown_to_onnx_is_a_typed_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from converters.routes.onnx_decompose import standard_onnx

    graph = helper.make_graph([helper.make_node("Frobnicate", ["x"], ["y"], name="weird_1")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])  # fmt: skip
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(UnsupportedOperatorError, match=r"tf2onnx wrote op\(s\) ONNX does not define: Frobnicate "
                       r"\(node 'weird_1'\); convert to TFLite or OpenVINO"):  # fmt: skip
        standard_onnx(path, "tf2onnx")


@pytest.mark.slow
def test_keras_grouped_conv_reaches_onnx_through_tflite(tmp_path):
    """Keras 3 runs a grouped conv (ConvNeXt's depthwise) as an XLA-compiled function that tf2onnx leaves as a
    StatefulPartitionedCall; the route goes through TFLite (every function inlined) and says so."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 8), batch_size=1)
    x = keras.layers.Conv2D(8, 7, padding="same", groups=8)(inp)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.LayerNormalization()(x))
    keras.Model(inp, keras.layers.Dense(10)(x)).save(tmp_path / "grouped.keras")
    result = convert(tmp_path / "grouped.keras", to=["onnx"], output_dir=tmp_path / "o", progress=False)
    assert result.passed and result.artifacts[0].metrics[0].cosine > 0.99999
    assert "tf2onnx --tflite" in result.artifacts[0].route
