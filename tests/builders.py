"""Tiny models built inside the tests, one function per kind, cached per session by conftest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def onnx_mlp(path: Path, *, batch: str | int = "batch", in_features: int = 16, out_features: int = 4) -> Path:
    """x[batch,16] -> MatMul -> Add -> Relu -> y[batch,4] (weights stored in the file)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((in_features, out_features)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(out_features).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, out_features])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def onnx_two_io(path: Path) -> Path:
    """Two inputs (a: float[2,3], b: int64[2,3]) and two outputs (sum: float, prod: float)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["a", "bf"], ["sum"]),
            helper.make_node("Mul", ["a", "bf"], ["prod"]),
        ],
        "two_io",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("b", TensorProto.INT64, [2, 3]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("prod", TensorProto.FLOAT, [2, 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def onnx_with_external_data(folder: Path, location: str | None = None) -> Path:
    """An MLP whose weights live in an external file; ``location`` rewrites where it claims they are."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    path = onnx_mlp(folder / "ext.onnx")
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="ext.data",
              size_threshold=0)  # fmt: skip
    if location is not None:
        model = onnx.load(str(path), load_external_data=False)
        for t in model.graph.initializer:
            for entry in t.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(model, str(path))
    return path


def keras_three_formats(folder: Path) -> dict[str, Path]:
    """One small conv net (NHWC 16x16x3 -> 5 logits) as TFLite, ONNX and OpenVINO IR, plus a full-int8 TFLite."""
    import keras
    import openvino as ov
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, name="logits")(x)
    saved = folder / "saved_model"
    keras.Model(inp, out).export(str(saved), verbose=False)

    paths = {"tflite": folder / "net.tflite", "onnx": folder / "net.onnx", "openvino": folder / "net.xml"}
    paths["tflite"].write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())

    def representative():
        rng = np.random.default_rng(1)
        for _ in range(16):
            yield [rng.random((1, 16, 16, 3), dtype=np.float32)]

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    paths["tflite_int8"] = folder / "net_int8.tflite"
    paths["tflite_int8"].write_bytes(conv.convert())

    subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved), "--output", str(paths["onnx"]),
         "--opset", "17"],
        check=True, capture_output=True,
    )  # fmt: skip
    ov.save_model(ov.convert_model(str(saved)), str(paths["openvino"]), compress_to_fp16=False)
    return paths


def image_classifier_onnx(path: Path) -> Path:
    """x[1,3,8,8] -> GlobalAveragePool -> Flatten -> y[1,3]: the mean colour as class scores."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])], "img",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def relu_image_onnx(path: Path) -> Path:
    """x[n,3,h,w] -> Relu -> y: dynamic batch and dynamic image size."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path
