"""An int8-I/O artifact's embedded preprocessing describes its real input (issue 14): a static int8 conversion
whose input tensor is int8/uint8 stores that dtype and the input's quantization (scale, zero point), not the
float spec it was converted with, so the device feeds it quantized pixels and gets the right class."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edge_sdk
from edge_sdk.metadata import read_embedded
from edge_sdk.preprocess import PreprocessSpec

#: a solid frame, R > G > B: the per-channel mean model's top class is "red" when fed RGB (test_model_metadata.py)
RGB = (200, 100, 30)
SPEC = PreprocessSpec(size=(16, 16), mean=0.0, std=255.0, layout="NHWC")
LABELS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def int8_io(tmp_path_factory) -> Path:
    """A Keras model (per-channel mean of the image) converted to a full-integer TFLite file with int8 input
    and output (`convert --precision int8 --int8-io`), with x / 255 preprocessing and three labels."""
    import cv2
    import keras

    from converters import convert

    root = tmp_path_factory.mktemp("int8_io")
    inp = keras.Input((16, 16, 3), name="image")
    keras.Model(inp, keras.layers.GlobalAveragePooling2D()(inp)).save(root / "avg.keras")
    calib = root / "calib"  # solid frames from black to white: the scales cover 0..255 pixels and 0..1 means
    calib.mkdir()
    for i, v in enumerate(np.linspace(0, 255, 12).astype(np.uint8)):
        cv2.imwrite(str(calib / f"{i}.png"), np.full((16, 16, 3), (v, 255 - v, v // 2), np.uint8))
    result = convert(root / "avg.keras", to=["tflite"], precision="int8", int8_io=True, calibration=calib,
                     output_dir=root / "out", preprocess=SPEC, labels=LABELS, task="classify",
                     validate_samples=8)  # fmt: skip
    (artifact,) = result.artifacts
    assert artifact.passed, artifact.failures
    return artifact.path


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    import cv2

    folder = tmp_path_factory.mktemp("solid")
    img = np.zeros((20, 30, 3), np.uint8)
    img[...] = RGB
    cv2.imwrite(str(folder / "solid.png"), img[..., ::-1])
    return folder


def test_the_stored_spec_is_the_int8_inputs(int8_io):
    with edge_sdk.load(int8_io) as model:
        tensor = model.inputs[0]
        assert np.dtype(tensor.dtype) == np.int8 and tensor.quant is not None
        meta = model.metadata
        pre = meta.preprocessing
        assert pre["dtype"] == "int8", "the file's input is int8, not the float32 spec it was converted with"
        assert pre["quant"] == {"scale": pytest.approx(float(tensor.quant.scale)),
                                "zero_point": int(tensor.quant.zero_point)}  # fmt: skip
        assert {k: pre[k] for k in ("mean", "std", "size", "layout")} == {
            "mean": [0.0], "std": [255.0], "size": [16, 16], "layout": "NHWC"}  # fmt: skip
        assert manifest_spec(int8_io) == pre, "the manifest keeps the record as written"
        spec = meta.preprocess_spec()
        frame = np.full((20, 30, 3), RGB, np.uint8)
        x = spec.apply(frame)
        assert x.dtype == np.int8 and x.shape == (1, 16, 16, 3)
        np.testing.assert_array_equal(x, tensor.quant.quantize(SPEC.apply(frame), np.int8))
        out = model.run(x, dequantize=True)  # the stored spec's tensor is taken as it is (no dtype error)
        scores = next(iter(out.values())).reshape(-1)
        assert int(np.argmax(scores)) == 0
        assert scores == pytest.approx(np.array(RGB) / 255.0, abs=0.02)


def manifest_spec(path: Path) -> dict:
    return json.loads((path.parent / "manifest.json").read_text())["files"][path.name]["metadata"]["preprocessing"]


def test_int8_io_file_alone_gives_the_right_class(int8_io, image_dir, tmp_path, cli):
    """`edge-sdk run` on the file copied alone (no manifest, no flags): int8 pixels in, "red" out."""
    copy = tmp_path / int8_io.name
    shutil.copy(int8_io, copy)
    r = cli("run", str(copy), "--source", str(image_dir), "--no-probe", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["metadata"] == "embedded" and doc["preprocessing"]["dtype"] == "int8"
    assert doc["preprocessing"]["quant"] == read_embedded(copy).preprocessing["quant"]
    assert doc["last_result"]["top"][0]["label"] == "red"
    assert "carries no preprocessing" not in r.stderr
    with edge_sdk.load(copy) as model:  # the Python pipeline too, with the spec the file carries
        pipe = edge_sdk.Pipeline(str(image_dir), model, task="classify")
        pipe.run()
        assert pipe.spec.dtype == "int8" and pipe.last_event["top"][0]["label"] == "red"


def _onnx(path: Path, elem: int, dequantize: bool) -> Path:
    """(1, 3, 16, 16) input of type ``elem`` -> [DequantizeLinear(scale 1/255, zero point 0)] -> ReduceMean."""
    import onnx
    from onnx import TensorProto, helper

    nodes, inits, first = [], [], "image"
    if dequantize:
        inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [1 / 255]), helper.make_tensor("z", elem, [], [0])]
        nodes.append(helper.make_node("DequantizeLinear", ["image", "s", "z"], ["x"]))
        first = "x"
    nodes.append(helper.make_node("ReduceMean", [first], ["scores"], axes=[2, 3], keepdims=0))
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("image", elem, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_onnx_quantized_input_and_float_input(tmp_path):
    """ONNX: a uint8 input read by a DequantizeLinear gets dtype uint8 and that node's scale / zero point; a
    float input gets float32 and no quant, even when the record it was given said int8."""
    from onnx import TensorProto

    from converters.embed_metadata import embed

    record = {"task": "classify", "labels": LABELS, "preprocessing": SPEC.to_dict()}
    quantized = _onnx(tmp_path / "q.onnx", TensorProto.UINT8, dequantize=True)
    written = embed(quantized, record)
    assert written["preprocessing"]["dtype"] == "uint8" and written["input_layout"] == "NCHW"
    assert written["preprocessing"]["quant"] == {"scale": pytest.approx(1 / 255), "zero_point": 0}
    spec = read_embedded(quantized).preprocess_spec()
    frame = np.full((20, 30, 3), RGB, np.uint8)
    assert spec.dtype == "uint8" and spec.layout == "NCHW"
    np.testing.assert_array_equal(spec.apply(frame)[0, :, 0, 0], RGB)  # x / 255 quantized by 1/255: the pixels
    with edge_sdk.load(quantized) as model:
        assert model.run(spec.apply(frame))["scores"] == pytest.approx(np.array([RGB]) / 255.0, abs=1e-6)

    floating = _onnx(tmp_path / "f.onnx", TensorProto.FLOAT, dequantize=False)
    int8_spec = {**SPEC.to_dict(), "dtype": "int8", "quant": {"scale": 0.5, "zero_point": 3}}
    pre = embed(floating, {**record, "preprocessing": int8_spec})["preprocessing"]
    assert (pre["dtype"], pre["quant"]) == ("float32", None)
