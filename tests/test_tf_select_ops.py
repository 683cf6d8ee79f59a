"""Select TF ops: an op with no TFLite builtin (tf.math.cumprod) is refused by name with the fix, and with
``tf_select_ops=True`` / ``--tf-select-ops`` it stays a TensorFlow (Flex) op: the file validates under TensorFlow's
Flex delegate, carries a warning naming the Flex ops, and LiteRT's wheel refuses it with a typed error saying so."""

from __future__ import annotations

import json
import logging

import pytest

keras = pytest.importorskip("keras")

from converters import convert  # noqa: E402
from edge_sdk.errors import ConversionError, ModelLoadError, UnsupportedOperatorError  # noqa: E402


@pytest.fixture(scope="module")
def cumprod_keras(tmp_path_factory):
    """Dense -> cumprod (TFLite has CUMSUM but no cumulative product builtin) -> Dense: 8 in, 4 out."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), batch_size=1, name="features")
    x = keras.layers.Dense(8)(inp)
    x = keras.ops.cumprod(keras.ops.tanh(x) * 0.5 + 1.0, axis=-1)
    path = tmp_path_factory.mktemp("flex") / "cumprod.keras"
    keras.Model(inp, keras.layers.Dense(4)(x)).save(path)
    return path


def test_without_the_flag_the_op_is_named_with_the_fix(cumprod_keras, tmp_path):
    with pytest.raises(UnsupportedOperatorError) as e:
        convert(cumprod_keras, to=["tflite"], output_dir=tmp_path / "o", progress=False)
    text = str(e.value)
    assert text.startswith("TFLite has no builtin op for TF op Cumprod (node '")
    assert "--tf-select-ops" in text and "tf_select_ops=True" in text and "Flex delegate" in text


def test_with_the_flag_the_file_keeps_flex_ops_validates_and_says_so(cumprod_keras, tmp_path, caplog):
    import edge_sdk
    from converters.routes.tflite_flex import flex_python
    from edge_sdk.metadata import read_embedded

    try:
        flex_python(cumprod_keras)
    except ConversionError as e:
        pytest.skip(str(e))
    with caplog.at_level(logging.WARNING, logger="edge_sdk.convert"):
        result = convert(cumprod_keras, to=["tflite"], output_dir=tmp_path / "o", progress=False, tf_select_ops=True)
    art = result.artifact("tflite", "fp32")
    assert result.passed and art.metrics[0].cosine > 0.99999  # run by TensorFlow's Flex delegate, vs Keras
    warning = ("Flex ops FlexCumprod: the device needs the Flex delegate (TensorFlow's tf.lite.Interpreter, or a "
               "LiteRT build with Flex; the ai-edge-litert wheel cannot load this file)")  # fmt: skip
    assert warning in caplog.text
    assert art.route == f"keras -> tflite (tf.lite.TFLiteConverter with SELECT_TF_OPS; {warning})"
    manifest = json.loads(result.manifest_path.read_text())
    assert "FlexCumprod" in manifest["artifacts"][0]["route"]
    assert "FlexCumprod" in read_embedded(art.path).conversion["tool"]  # inside the file too

    with pytest.raises(ModelLoadError) as e:
        edge_sdk.load(art.path, backend="litert")
    assert "FlexCumprod" in str(e.value) and "Flex delegate" in str(e.value) and "--tf-select-ops" in str(e.value)


def test_the_flag_refuses_what_it_cannot_make_before_any_work(cumprod_keras, tmp_path):
    from edge_sdk.cli.main import main

    with pytest.raises(ConversionError, match=r"--tf-select-ops makes fp32 TFLite only"):
        convert(cumprod_keras, to=["tflite"], precision=["fp32", "int8"], calibration="synthetic",
                output_dir=tmp_path / "o", progress=False, tf_select_ops=True)  # fmt: skip
    out = tmp_path / "cli"
    argv = [str(cumprod_keras), "--to", "tflite", "--precision", "fp16", "--tf-select-ops", "-o", str(out)]
    assert main(["convert", *argv]) == 2 and not out.exists()


def test_an_op_select_tf_ops_lack_too_is_named_without_suggesting_the_flag():
    from converters.routes.tf_routes import raise_unsupported_or

    mlir = ("error: loc(fused[\"Foo:\", \"model/foo_1/Foo@__inference_serving_default_9\"]): 'tf.Foo' op is neither a "
            "custom op nor a flex op\nerror: loc(fused[\"Bar:\", \"model/bar/Bar@f\"]): 'tf.Bar' op is neither a "
            "custom op nor a flex op")  # fmt: skip
    with pytest.raises(UnsupportedOperatorError) as e:
        raise_unsupported_or(RuntimeError(mlir), "TFLite", select_tf_ops=True)
    assert str(e.value).startswith("TFLite has no builtin op for TF ops Foo (node 'model/foo_1/Foo'), Bar (node "
                                   "'model/bar/Bar'), and Select TF ops (--tf-select-ops) have no kernel")  # fmt: skip


@pytest.mark.slow
def test_onnx_det_reaches_tflite_through_onnx2tf_with_the_flag(tmp_path):
    """ONNX Det becomes tf.MatrixDeterminant in onnx2tf's SavedModel; our TFLiteConverter keeps it as a Flex op."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    from converters.routes.onnx_routes import onnx2tf_executable

    try:
        onnx2tf_executable()
    except ConversionError as e:
        pytest.skip(str(e))
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32) * 0.3, "w")
    shape = numpy_helper.from_array(np.array([1, 4, 4], np.int64), "shape")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                               helper.make_node("Reshape", ["h", "shape"], ["r"], name="rs"),
                               helper.make_node("Det", ["r"], ["y"], name="det_1")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              initializer=[w, shape])  # fmt: skip
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "det.onnx"))
    result = convert(tmp_path / "det.onnx", to=["tflite"], output_dir=tmp_path / "o", progress=False,
                     tf_select_ops=True)  # fmt: skip
    art = result.artifact("tflite", "fp32")
    assert result.passed and art.metrics[0].cosine > 0.99999
    assert art.route.startswith("onnx -> tflite (onnx2tf + TFLiteConverter with SELECT_TF_OPS; Flex ops "
                                "FlexMatrixDeterminant: the device needs the Flex delegate")  # fmt: skip
