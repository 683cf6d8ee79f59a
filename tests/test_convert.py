"""Converters: Keras / SavedModel / ONNX sources to all three targets, validated; bad input refused clearly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import edge_sdk as es
from converters import convert
from edge_sdk.errors import (
    CalibrationError,
    OutputDirError,
    SourceModelError,
    UnsupportedOperatorError,
    ValidationFailedError,
)


@pytest.fixture(scope="session")
def keras_file(tmp_path_factory) -> Path:
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(12)(x)
    path = tmp_path_factory.mktemp("keras") / "tiny.keras"
    keras.Model(inp, out).save(path)
    return path


def test_keras_to_all_targets_and_precisions(keras_file, tmp_path):
    out = tmp_path / "out"
    result = convert(
        keras_file, to=["tflite", "onnx", "openvino"], precision=["fp32", "fp16", "int8"],
        calibration="synthetic", output_dir=out, validate_samples=16,
    )  # fmt: skip
    assert result.passed, [a.failures for a in result.artifacts]
    assert len(result.artifacts) == 9
    x = np.random.default_rng(0).random((1, 16, 16, 3), dtype=np.float32)
    ref = result.artifact("tflite", "fp32")
    for a in result.artifacts:
        assert a.path.exists() and a.size_bytes > 0
        m = a.metrics[0]
        assert m.cosine > 0.97 and np.isfinite(m.max_abs_error)
        with es.load(a.path) as model:  # every artifact loads through the SDK and runs
            assert model(x).shape == (1, 12)
    assert ref.metrics[0].snr_db > 60  # fp32 is numerically the same network
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "keras" and len(manifest["source"]["sha256"]) == 64
    assert manifest["calibration"]["synthetic"] is True
    # no user data: validated on real photo crops (normalisation guessed, and said so), not on random floats
    assert manifest["validation"]["synthetic"] is False
    assert "real photo crops, normalisation guessed" in manifest["validation"]["origin"]
    assert {"tensorflow-cpu", "onnxruntime", "openvino", "nncf", "tf2onnx"} <= set(manifest["tools"])
    names = {a["path"] for a in manifest["artifacts"]}
    assert "tiny_int8.xml" in names and all(a["sha256"] for a in manifest["artifacts"])
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temp files left in the output folder"


def _onnx_scales(path: Path) -> list[float]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    values = [
        numpy_helper.to_array(t).ravel() for t in model.graph.initializer if t.name.endswith(("_scale", "_zero_point"))
    ]
    return sorted(float(v) for arr in values for v in arr)


def test_quantization_is_reproducible(keras_file, tmp_path):
    """Same model, calibration and options -> the same scales and zero points (file bytes may differ in names)."""
    a = convert(keras_file, to=["onnx", "tflite"], precision="int8", calibration="synthetic", output_dir=tmp_path / "a")
    b = convert(keras_file, to=["onnx", "tflite"], precision="int8", calibration="synthetic", output_dir=tmp_path / "b")
    scales = _onnx_scales(a.artifact("onnx", "int8").path)
    assert len(scales) > 4 and scales == _onnx_scales(b.artifact("onnx", "int8").path)
    assert a.artifact("tflite", "int8").sha256 == b.artifact("tflite", "int8").sha256


def test_savedmodel_to_all_targets(keras_file, tmp_path):
    import keras

    saved = tmp_path / "sm"
    keras.saving.load_model(keras_file).export(str(saved), verbose=False)
    result = convert(saved, to=["tflite", "onnx", "openvino"], precision="fp32", output_dir=tmp_path / "o")
    assert result.passed and {a.target for a in result.artifacts} == {"tflite", "onnx", "openvino"}
    assert all(a.metrics[0].cosine > 0.9999 for a in result.artifacts)


def test_onnx_source_to_openvino_and_int8_onnx(mlp_onnx, tmp_path):
    result = convert(mlp_onnx, to=["openvino", "onnx"], precision=["fp32", "int8"], calibration="synthetic",
                     output_dir=tmp_path, input_shapes={"x": (1, 16)})  # fmt: skip
    assert result.passed
    assert es.load(result.artifact("onnx", "int8").path).inputs[0].shape == (1, 16)


def test_validation_failure_is_reported_with_numbers(keras_file, tmp_path):
    with pytest.raises(ValidationFailedError, match=r"tiny_fp16.onnx: output '.*': cosine .* < 1.1"):
        convert(keras_file, to="onnx", precision="fp16", output_dir=tmp_path, tolerances={"cosine": 1.1})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["artifacts"][0]["passed"] is False


def _lambda_keras(path: Path) -> Path:
    import keras

    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp)
    keras.Model(inp, out).save(path)
    return path


def _custom_op_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"], name="relu_0"),
         helper.make_node("FancyOp", ["h"], ["y"], name="fancy_1", domain="com.example")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    return path


def test_bad_sources(tmp_path):
    (tmp_path / "notes.txt").write_text("hello, I am not a model")
    with pytest.raises(SourceModelError, match="unknown source format: notes.txt"):
        convert(tmp_path / "notes.txt", output_dir=tmp_path / "o")
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(SourceModelError, match="broken.keras is not a readable Keras model file"):
        convert(tmp_path / "broken.keras", output_dir=tmp_path / "o")
    (tmp_path / "weights.pt").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(SourceModelError, match=r"weights.pt is a pickled PyTorch file.*torch.export.save"):
        convert(tmp_path / "weights.pt", output_dir=tmp_path / "o")
    with pytest.raises(SourceModelError, match="source model not found"):
        convert(tmp_path / "missing.onnx", output_dir=tmp_path / "o")


def test_keras_lambda_refused_and_never_executed(tmp_path, monkeypatch):
    path = _lambda_keras(tmp_path / "lam.keras")
    import keras

    calls = []
    monkeypatch.setattr(keras.saving, "load_model", lambda *a, **k: calls.append(a))
    with pytest.raises(SourceModelError, match=r"contains Lambda layer\(s\) \['double'\].*--unsafe-allow-lambda"):
        convert(path, output_dir=tmp_path / "o")
    assert not calls, "the Keras loader ran on a refused file"
    with zipfile.ZipFile(path) as z:
        assert "Lambda" in z.read("config.json").decode()


def test_unsupported_op_names_op_and_node(tmp_path):
    path = _custom_op_onnx(tmp_path / "custom.onnx")
    with pytest.raises(UnsupportedOperatorError, match=r"OpenVINO does not support op .*FancyOp.*fancy_1"):
        convert(path, to="openvino", output_dir=tmp_path / "o")
    with pytest.raises(
        UnsupportedOperatorError, match=r"TFLite does not support op com.example.FancyOp \(node 'fancy_1'\)"
    ):
        convert(path, to="tflite", output_dir=tmp_path / "o")


def test_calibration_errors(keras_file, tmp_path):
    with pytest.raises(CalibrationError, match="calibration data not found"):
        convert(keras_file, to="onnx", precision="int8", calibration=tmp_path / "nope", output_dir=tmp_path / "o")
    bad = tmp_path / "imgs"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(CalibrationError, match=r"a.jpg does not decode"):
        convert(keras_file, to="onnx", precision="int8", calibration=bad, output_dir=tmp_path / "o",
                preprocess=_spec())  # fmt: skip
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3, 16, 16), np.float32))
    with pytest.raises(CalibrationError, match=r"has shape \[1, 3, 16, 16\] but input 'image' expects \[\?,16,16,3\]"):
        convert(keras_file, to="onnx", precision="int8", calibration=tmp_path / "wrong.npy", output_dir=tmp_path / "o")
    with pytest.raises(Exception, match="int8 needs calibration data"):
        convert(keras_file, to="onnx", precision="int8", output_dir=tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="has no images"):
        convert(keras_file, to="onnx", precision="int8", calibration=tmp_path / "empty", output_dir=tmp_path / "o")


def _spec():
    from edge_sdk.preprocess import PreprocessSpec

    return PreprocessSpec(size=(16, 16), mean=(127.0,), std=(128.0,), layout="NHWC")


def test_output_dir_not_writable(keras_file, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputDirError, match="cannot create output directory"):
        convert(keras_file, to="onnx", output_dir=blocker / "out")


def test_cli_convert_json_and_errors(keras_file, tmp_path, cli):
    r = cli("convert", str(keras_file), "--to", "onnx,openvino", "--precision", "fp32", "-o", str(tmp_path / "o"),
            "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["passed"] and len(data["artifacts"]) == 2
    r = cli("convert", str(keras_file), "--to", "coreml", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "unknown target(s) ['coreml']" in r.stderr and "Traceback" not in r.stderr
    r = cli("convert", str(keras_file), "--to", "onnx", "--precision", "int4", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "unknown precision 'int4'" in r.stderr


def test_a_conversion_stopped_before_any_artifact_leaves_no_output_folder(keras_file, tmp_path):
    """The output folder (and its missing parents) made for this run goes with a stop that finds it empty."""
    out = tmp_path / "new" / "o"
    cmd = [sys.executable, "-m", "edge_sdk.cli.main", "convert", str(keras_file), "--to", "onnx", "--precision",
           "int8", "--calib", "synthetic", "-o", str(out)]  # fmt: skip
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not out.is_dir():  # the run made it; nothing is published yet
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=60)
    assert rc == 128 + signal.SIGTERM, (tmp_path / "stderr").read_text()
    assert "stopped by SIGTERM; no partial files left" in (tmp_path / "stderr").read_text()
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_interrupted_conversion_leaves_no_partial_files(keras_file, tmp_path, sig):
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "edge_sdk.cli.main", "convert", str(keras_file), "--to", "tflite,onnx,openvino",
           "--precision", "fp32,fp16,int8", "--calib", "synthetic", "-o", str(out)]  # fmt: skip
    scratch = tmp_path / "scratch"  # the run's private temp folder lives here
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("*.tflite")):
            time.sleep(0.05)
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=60)
    caught = sig != signal.SIGKILL
    assert rc == (128 + sig if caught else -sig)
    if caught:
        assert f"stopped by {sig.name}; no partial files left" in (tmp_path / "stderr").read_text()
    visible = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert "manifest.json" not in {p.name for p in visible}, "killed before the end, so no manifest"
    for p in visible:  # every file under its final name is complete: it loads
        if p.suffix in (".tflite", ".onnx", ".xml"):
            es.load(p)
    if caught:
        assert not [p for p in out.iterdir() if p.name.startswith(".")], "a caught signal must clean temp files"
        assert not [p.name for p in scratch.glob("edge-sdk-*")], "a caught signal must remove the work folder"
    # the next run cleans whatever a SIGKILL left, and completes
    convert(keras_file, to="onnx", output_dir=out)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def _child_pids(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running or sleeping: not gone and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(), reason="needs /proc")
def test_stopped_conversion_kills_the_tool_it_waits_on(keras_file, tmp_path):
    """Keras -> ONNX runs tf2onnx in a child process; SIGTERM to the CLI must not leave it running."""
    cmd = [sys.executable, "-m", "edge_sdk.cli.main", "convert", str(keras_file), "--to", "onnx",
           "-o", str(tmp_path / "o")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _child_pids(proc.pid) and proc.poll() is None:
        time.sleep(0.02)
    tools = _child_pids(proc.pid)
    assert tools, "tf2onnx never started as a child process"
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 1  # killed before the CLI exits; an orphan would run on (or die of EPIPE later)
    while time.monotonic() < deadline and any(_alive(t) for t in tools):
        time.sleep(0.05)
    assert not any(_alive(t) for t in tools), "the tool outlived the conversion it was part of"


class _TinyTorch:
    """A small conv net built in the test (no download)."""

    @staticmethod
    def make():
        import torch

        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(), torch.nn.Linear(8, 10),
        ).eval()  # fmt: skip


def test_torch_module_and_pt2_sources(tmp_path):
    import torch

    module = _TinyTorch.make()
    example = (torch.randn(1, 3, 32, 32),)
    result = convert(module, to=["onnx", "openvino", "tflite"], example_inputs=example, output_dir=tmp_path / "m")
    assert result.passed and all(a.metrics[0].cosine > 0.9999 for a in result.artifacts)
    pt2 = tmp_path / "tiny.pt2"
    torch.export.save(torch.export.export(module, example), str(pt2))
    result = convert(pt2, to=["onnx", "openvino"], precision=["fp32", "int8-dynamic"], output_dir=tmp_path / "p")
    assert result.passed and len(result.artifacts) == 4
    with pytest.raises(SourceModelError, match="needs example_inputs"):
        convert(module, to="onnx", output_dir=tmp_path / "x")


def test_onnx_to_tflite_through_onnx2tf(tmp_path):
    """The ONNX -> TFLite route (onnx2tf in its own venv) on a small NCHW conv net; needs `make onnx2tf`."""
    import torch

    from converters.routes.onnx_routes import onnx2tf_executable

    try:
        onnx2tf_executable()
    except Exception as e:  # the Makefile's test target installs it; say so if run without it
        pytest.skip(str(e))
    module = _TinyTorch.make()
    onnx_path = tmp_path / "tiny.onnx"
    torch.onnx.export(module, (torch.randn(1, 3, 32, 32),), str(onnx_path), input_names=["input"], dynamo=False)
    result = convert(onnx_path, to="tflite", precision=["fp32", "int8"], calibration="synthetic",
                     output_dir=tmp_path / "o")  # fmt: skip
    assert result.passed
    assert result.artifact("tflite", "fp32").metrics[0].cosine > 0.9999
    with es.load(result.artifact("tflite", "fp32").path) as m:
        assert m.inputs[0].shape == (1, 32, 32, 3)  # onnx2tf turns NCHW into NHWC


def test_static_shapes_for_npus(keras_file, tmp_path, cli):
    result = convert(keras_file, to=["onnx", "openvino"], precision=["fp32", "int8"], calibration="synthetic",
                     static=True, output_dir=tmp_path / "s")  # fmt: skip
    for a in result.artifacts:
        with es.load(a.path) as m:
            assert m.inputs[0].shape == (1, 16, 16, 3), a.path.name
    r = cli("convert", str(keras_file), "--to", "onnx", "--static", "--input-shape", "image=4,16,16,3",
            "-o", str(tmp_path / "c"), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert es.load(tmp_path / "c" / "tiny_fp32.onnx").inputs[0].shape == (4, 16, 16, 3)
    with pytest.raises(Exception, match="TFLite fixes shapes at conversion time"):
        convert(keras_file, to="tflite", static=True, output_dir=tmp_path / "t")


def test_torch_to_openvino_falls_back_when_tracing_cannot_run_the_module(tmp_path):
    """TorchScript tracing fails its sanity check on a module whose graph changes between calls (torchvision's
    ViT did this in the corpus); OpenVINO then converts the torch.export program, and the route says so."""
    import torch

    class Flaky(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(8, 4)
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # same values, another graph every other call
            self.calls += 1
            y = self.lin(x)
            return y * 1.0 if self.calls % 2 else y + 0.0

    r = convert(Flaky().eval(), to="openvino", precision="fp32", example_inputs=(torch.randn(1, 8),),
                output_dir=tmp_path, progress=False)  # fmt: skip
    a = r.artifacts[0]
    assert a.passed and min(m.cosine for m in a.metrics) > 0.9999
    assert "torch.export program" in a.route and "Graphs differed across invocations" in a.route
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert "torch.export program" in manifest["artifacts"][0]["route"]


def test_a_two_output_model_keeps_its_output_order_in_every_target(tmp_path):
    """TFLite listed the outputs of (logits, probabilities) as (probabilities, logits) while ONNX and OpenVINO kept
    the source's order: a user taking the first output got another tensor per target, and validation (which pairs
    outputs by value) passed. The TFLite file's output list is now put in the source's order."""
    import torch

    import edge_sdk as es

    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 10)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))
            return logits, torch.softmax(logits, dim=1)

    torch.manual_seed(0)
    model = TwoHeads().eval()
    x = torch.randn(1, 3, 16, 16)
    r = convert(model, to=["onnx", "tflite"], precision="fp32", example_inputs=(x,), output_dir=tmp_path,
                progress=False)
    assert all(a.passed for a in r.artifacts)
    with torch.no_grad():
        want = [t.numpy() for t in model(x)]
    for a in r.artifacts:
        with es.load(a.path) as m:
            feed = x.numpy() if m.inputs[0].shape[1] == 3 else x.numpy().transpose(0, 2, 3, 1)
            got = list(m.run(feed).values())
        for w, g in zip(want, got):  # by position: logits first, then the probabilities
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=a.path.name)
