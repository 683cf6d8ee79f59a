"""TFLite sources without a SignatureDef (older converters, MediaPipe-era files) convert and re-quantize."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import edge_sdk as es  # noqa: E402
from converters import convert  # noqa: E402
from converters.routes.tflite_signature import has_signature, with_signature  # noqa: E402


@pytest.fixture(scope="module")
def unsigned_tflite(tmp_path_factory):
    import flatbuffers
    import keras
    from tensorflow.lite.python import schema_py_generated as schema

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(10)(x))
    buf = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    flat = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    flat.signatureDefs = []  # what a pre-2.x converter or a MediaPipe task file looks like
    builder = flatbuffers.Builder(1024)
    builder.Finish(flat.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path_factory.mktemp("nosig") / "legacy.tflite"
    path.write_bytes(builder.Output())
    assert not has_signature(path)
    return path


def test_signature_added_from_subgraph_tensors_keeps_outputs_identical(unsigned_tflite, tmp_path):
    signed = tmp_path / "signed.tflite"
    assert with_signature(unsigned_tflite, signed) is True
    assert has_signature(signed) and not with_signature(signed, tmp_path / "again.tflite")  # idempotent
    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)
    with es.load(unsigned_tflite) as a, es.load(signed) as b:
        np.testing.assert_array_equal(a(x), b(x))


def test_unsigned_tflite_converts_and_requantizes(unsigned_tflite, tmp_path):
    result = convert(unsigned_tflite, to=["tflite", "onnx", "openvino"], precision=["fp32", "int8-dynamic", "int8"],
                     calibration="synthetic", output_dir=tmp_path, progress=False, allow_degraded=True,
                     fallback=False)  # fmt: skip
    assert len(result.artifacts) == 9 and all(a.path.exists() for a in result.artifacts)
    for a in result.artifacts:
        if a.precision != "int8":  # int8 of a random-weights toy is judged by its own test elsewhere
            assert a.passed, (a.path.name, a.failures)
        assert a.metrics[0].cosine > 0.95, (a.path.name, a.metrics[0].cosine)
    assert has_signature(result.artifact("tflite", "int8").path)


def test_corrupt_tflite_is_a_typed_error(tmp_path):
    from edge_sdk.errors import ConversionError

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\xff" * 40)
    with pytest.raises(ConversionError, match="bad.tflite is not a readable TFLite flatbuffer"):
        with_signature(bad, tmp_path / "out.tflite")
