"""``edge-sdk diff``: per-layer comparison names the one layer that was changed, on every runtime."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from converters.diff import diff

PERTURBED = 2  # conv2 (and the relu2 after it) is the layer that differs
LAYER = {"conv2", "relu2"}


def convnet(path: Path, perturb: int | None = None, layers: int = 5, ch: int = 8) -> Path:
    """input[1,3,32,32] -> (Conv -> Relu) x layers -> GlobalAveragePool -> Flatten -> output[1,ch]; seeded.

    ``perturb``: that conv's weights get noise of half their mean magnitude."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev, cin = [], [], "input", 3
    for i in range(layers):
        w = rng.standard_normal((ch, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))
        b = rng.standard_normal(ch) * 0.1
        if i == perturb:
            w = w + rng.standard_normal(w.shape) * np.abs(w).mean() * 0.5
        inits += [numpy_helper.from_array(w.astype(np.float32), f"conv{i}.weight"),
                  numpy_helper.from_array(b.astype(np.float32), f"conv{i}.bias")]  # fmt: skip
        nodes.append(helper.make_node("Conv", [prev, f"conv{i}.weight", f"conv{i}.bias"], [f"conv{i}_out"],
                                      name=f"conv{i}", pads=[1, 1, 1, 1]))  # fmt: skip
        nodes.append(helper.make_node("Relu", [f"conv{i}_out"], [f"relu{i}_out"], name=f"relu{i}"))
        prev, cin = f"relu{i}_out", ch
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["pooled"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["output"], name="flatten"))
    graph = helper.make_graph(
        nodes,
        "convnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, ch])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("diff")
    return {"orig": convnet(d / "orig.onnx"), "pert": convnet(d / "pert.onnx", perturb=PERTURBED)}


@pytest.fixture(scope="module")
def converted(nets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The perturbed model converted by the SDK: OpenVINO and TFLite fp32, static int8 QDQ ONNX."""
    from converters import convert

    out = tmp_path_factory.mktemp("diff_out")
    convert(nets["pert"], to=["openvino", "tflite"], precision="fp32", output_dir=out, allow_degraded=True)
    convert(nets["pert"], to=["onnx"], precision="int8", calibration="synthetic", output_dir=out,
            allow_degraded=True)  # fmt: skip
    return out


def assert_names_perturbed_layer(report, before: float = 0.999) -> None:
    first = report.first_divergence
    assert first is not None, report.table()
    assert first.node in LAYER, report.table()
    assert first.cosine < 0.99
    earlier = [layer for layer in report.layers if layer.index < first.index]
    assert earlier, "the layers before the perturbed one must be matched too"
    assert all(layer.cosine > before for layer in earlier), report.table()


def test_onnx_vs_onnx_names_the_perturbed_layer(nets: dict[str, Path]) -> None:
    report = diff(nets["orig"], nets["pert"], samples=2)
    assert report.first_divergence.name == "conv2_out"
    assert_names_perturbed_layer(report)
    assert [layer.name for layer in report.layers[:4]] == ["conv0_out", "relu0_out", "conv1_out", "relu1_out"]
    assert all(layer.match == "name" for layer in report.layers)
    assert all(math.isinf(layer.snr_db) for layer in report.layers[:4])  # bit-exact before the change
    assert report.outputs[0]["cosine"] < 0.99
    assert report.reference == "the ONNX original itself"


def test_identical_models_do_not_diverge(nets: dict[str, Path]) -> None:
    report = diff(nets["orig"], nets["orig"], samples=2)
    assert report.first_divergence is None
    assert len(report.layers) == 12 and not report.unmatched_reference
    assert all(layer.cosine == pytest.approx(1.0) for layer in report.layers)


@pytest.mark.slow  # the `converted` fixture runs onnx2tf once for the three tests that use it
def test_openvino_artifact_names_the_perturbed_layer(nets: dict[str, Path], converted: Path) -> None:
    report = diff(nets["orig"], converted / "pert_fp32.xml", samples=2)
    assert report.first_divergence.name == "conv2_out"
    assert_names_perturbed_layer(report)
    assert all(layer.match == "name" for layer in report.layers)  # the IR keeps the ONNX tensor names


@pytest.mark.slow
def test_tflite_artifact_names_the_perturbed_layer(nets: dict[str, Path], converted: Path) -> None:
    report = diff(nets["orig"], converted / "pert_fp32.tflite", samples=2)
    assert_names_perturbed_layer(report)
    # onnx2tf renames every tensor and fuses Conv+Relu: paired by position with the Relu, NHWC transposed
    relus = [layer for layer in report.layers if layer.op == "Relu"]
    assert [layer.node for layer in relus] == [f"relu{i}" for i in range(5)]
    assert all(layer.match == "position" and layer.layout == "transposed [0, 3, 1, 2]" for layer in relus)
    assert any("builtin kernels" in n for n in report.notes)


@pytest.mark.slow
def test_int8_qdq_onnx_compares_dequantized_tensors(nets: dict[str, Path], converted: Path) -> None:
    report = diff(nets["orig"], converted / "pert_int8.onnx", samples=4)
    assert_names_perturbed_layer(report, before=0.99)
    quantized = [layer for layer in report.layers if layer.quantized]
    assert quantized and all(math.isfinite(layer.snr_db) for layer in quantized)


def test_pytorch_original_is_traced_as_its_onnx_export(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from tiny_torch import X, tiny

    module = tiny()
    torch.export.save(torch.export.export(module, (X,)), str(tmp_path / "tiny.pt2"))
    with torch.no_grad():
        module.dw[0].weight.add_(0.5 * torch.randn_like(module.dw[0].weight))
    torch.onnx.export(module, (X,), str(tmp_path / "changed.onnx"), input_names=["input"], output_names=["logits"],
                      opset_version=17, dynamo=False)  # fmt: skip
    report = diff(tmp_path / "tiny.pt2", tmp_path / "changed.onnx", samples=2)
    assert report.reference.startswith("ONNX export of the pt2 original")
    assert any("its outputs vs the original's: cosine 1.0000" in n for n in report.notes)
    first = report.first_divergence
    assert first is not None and first.node.startswith("dw."), report.table()  # the module that was changed
    assert all(layer.cosine > 0.9999 for layer in report.layers if layer.index < first.index)


def test_inputs_from_npy(nets: dict[str, Path], tmp_path: Path) -> None:
    data = np.random.default_rng(3).uniform(0, 1, (3, 1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    report = diff(nets["orig"], nets["pert"], inputs=str(tmp_path / "x.npy"), samples=8)
    assert report.inputs["count"] == 3 and report.inputs["origin"].endswith("x.npy")
    assert report.inputs["synthetic"] is False
    assert report.first_divergence.name == "conv2_out"


def test_cli_json_and_exit_codes(cli, nets: dict[str, Path]) -> None:
    proc = cli("diff", str(nets["orig"]), str(nets["pert"]), "--json", "--samples", "2", "--no-probe")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert doc["first_divergence"]["name"] == "conv2_out"
    assert doc["first_divergence"]["cosine"] < 0.99
    assert isinstance(doc["layers"], list) and len(doc["layers"]) == 12
    assert {"name", "cosine", "snr_db", "artifact", "match", "shape"} <= set(doc["layers"][0])
    assert doc["layers"][0]["snr_db"] == "inf"
    assert doc["output_cosine"] == pytest.approx(doc["outputs"][0]["cosine"])

    strict = cli("diff", str(nets["orig"]), str(nets["pert"]), "--samples", "1", "--exit-code", "--no-probe")
    assert strict.returncode == 3
    assert "first divergence: #4 conv2_out (node conv2, Conv): cosine" in strict.stdout
    same = cli("diff", str(nets["orig"]), str(nets["orig"]), "--samples", "1", "--exit-code")
    assert same.returncode == 0, same.stderr
    assert "first divergence: none" in same.stdout


def test_cli_bad_paths_are_one_line_typed_errors(cli, nets: dict[str, Path], tmp_path: Path) -> None:
    missing = cli("diff", str(nets["orig"]), str(tmp_path / "nope.onnx"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"edge-sdk diff: error: artifact not found: {tmp_path / 'nope.onnx'}; "
        "pass a converted .onnx, .xml (OpenVINO) or .tflite"
    ]
    (tmp_path / "notes.txt").write_text("not a model, just a few lines of text\n" * 20)
    wrong = cli("diff", str(nets["orig"]), str(tmp_path / "notes.txt"))
    assert wrong.returncode == 2 and "is not a model format" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    no_original = cli("diff", str(tmp_path / "gone.onnx"), str(nets["pert"]))
    assert no_original.returncode == 2
    assert "source model not found" in no_original.stderr and "Traceback" not in no_original.stderr
    bad_samples = cli("diff", str(nets["orig"]), str(nets["pert"]), "--samples", "0")
    assert bad_samples.returncode == 2 and "--samples must be >= 1" in bad_samples.stderr


def test_models_that_do_not_correspond_are_a_typed_error(nets: dict[str, Path], tmp_path: Path) -> None:
    from edge_sdk.errors import DiffError

    other = convnet(tmp_path / "other.onnx", layers=3, ch=4)  # same input, 4 outputs instead of 8
    with pytest.raises(DiffError, match=r"other.onnx's outputs do not correspond to the original's"):
        diff(nets["orig"], other, samples=1)


@pytest.mark.slow  # TensorFlow, a SavedModel export and tf2onnx in a subprocess
def test_keras_original_against_its_tflite(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")

    inp = keras.Input((32, 32, 3), batch_size=1)
    x = inp
    for i in range(4):
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inp, keras.layers.Dense(5, name="fc")(x))
    model.save(tmp_path / "net.keras")
    w = model.get_layer("conv2").get_weights()
    w[0] = w[0] + 0.5 * np.random.default_rng(0).standard_normal(w[0].shape).astype(np.float32) * np.abs(w[0]).mean()
    model.get_layer("conv2").set_weights(w)
    model.export(str(tmp_path / "changed"), verbose=False)
    (tmp_path / "changed.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "changed")).convert()
    )

    report = diff(tmp_path / "net.keras", tmp_path / "changed.tflite", samples=2)
    assert report.reference == "ONNX export of the keras original (tf2onnx via a SavedModel)"
    first = report.first_divergence
    assert first is not None and "/conv2" in first.name and first.match == "name", report.table()
    assert all(layer.cosine > 0.9999 for layer in report.layers if layer.index < first.index)
