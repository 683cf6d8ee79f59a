"""Pruning on tiny models: PyTorch, Keras and ONNX; magnitude and channel; residual + concat + depthwise;
validation against the original and the manifest; bad input refused with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from converters.prune import prune
from edge_sdk.errors import PruneError

torch = pytest.importorskip("torch")
nn = torch.nn

from tiny_torch import X, cosine, tiny  # noqa: E402


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory) -> Path:
    """Keras twin of Tiny (residual add, depthwise, concat) with the same dead second halves."""
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3), name="image")
    s = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inp)
    e = keras.layers.Conv2D(32, 1, activation="relu", name="expand")(s)
    e = keras.layers.BatchNormalization(name="expand_bn")(e)
    d = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(e)
    p = keras.layers.Conv2D(16, 1, name="project")(d)
    x = keras.layers.Add()([s, p])
    a = keras.layers.Conv2D(24, 1, activation="relu", name="left")(x)
    b = keras.layers.Conv2D(24, 3, padding="same", activation="relu", name="right")(x)
    x = keras.layers.Concatenate()([a, b])
    x = keras.layers.Conv2D(64, 1, activation="relu", name="head")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="fc")(x))
    for name in ("expand", "left", "right", "head"):
        k, bias = model.get_layer(name).get_weights()
        half = k.shape[-1] // 2
        k[..., half:], bias[half:] = 0, 0
        model.get_layer(name).set_weights([k, bias])
    g, beta, mean, var = model.get_layer("expand_bn").get_weights()
    g[16:], beta[16:], mean[16:] = 0, 0, 0
    model.get_layer("expand_bn").set_weights([g, beta, mean, var])
    path = tmp_path_factory.mktemp("prune_keras") / "tiny.keras"
    model.save(path)
    return path


# ---- PyTorch ----------------------------------------------------------------------------------
def test_torch_magnitude_per_layer_and_global():
    m = tiny()
    r = prune(m, method="magnitude", amount=0.5, example_inputs=(X,), min_params=0)
    reasons = {x.name: x.skipped for x in r.layers}
    assert reasons["stem.0"].startswith("first conv") and reasons["fc"].startswith("classifier")
    assert reasons["dw.0"].startswith("depthwise")
    for x in r.layers:
        assert x.sparsity_after == pytest.approx(0.0 if x.skipped else 0.5, abs=0.01), x.name
    assert float((m.expand[0].weight == 0).float().mean()) == 0.0, "the original module was modified"
    assert r.weights_gzip_after < r.weights_gzip_before
    small = prune(m, method="magnitude", amount=0.1, example_inputs=(X,), min_params=0)
    assert cosine(small.model(X).detach(), m(X).detach()) > 0.98
    g = prune(m, method="magnitude", amount=0.5, scope="global", example_inputs=(X,), skip=["head.0"], min_params=0)
    pruned = [x for x in g.layers if not x.skipped]
    assert {x.name for x in pruned} == {"expand.0", "project.0", "left", "right"}
    assert sum(x.sparsity_after * x.params for x in pruned) / sum(x.params for x in pruned) == pytest.approx(0.5, 0.01)
    assert len({round(x.sparsity_after, 2) for x in pruned}) > 1  # one global threshold: layers differ


def test_torch_channel_keeps_residual_concat_depthwise_consistent():
    m = tiny(redundant=True)
    r = prune(m, method="channel", amount=0.5, example_inputs=(X,), round_to=1, min_params=0)
    p = r.model
    assert p.expand[0].out_channels == p.dw[0].in_channels == p.dw[0].out_channels == p.dw[0].groups == 16
    assert p.expand[1].num_features == p.dw[1].num_features == p.project[0].in_channels == 16
    assert p.project[0].out_channels == p.stem[0].out_channels == 16  # the residual group keeps the stem's width
    assert p.left.out_channels + p.right.out_channels == p.head[0].in_channels == 24
    assert p.head[0].out_channels == p.fc.in_features == 32 and p.fc.out_features == 10
    assert r.params_after < 0.6 * r.params_before
    np.testing.assert_allclose(p(X).detach().numpy(), m(X).detach().numpy(), rtol=1e-4, atol=1e-5)
    # the residual group (stem + project, added together) is cut as one, or kept whole with keep_tied
    cut = prune(m, method="channel", amount=0.5, example_inputs=(X,), round_to=1, min_params=0, include=["stem.0"])
    assert cut.model.stem[0].out_channels == cut.model.project[0].out_channels == cut.model.left.in_channels == 8
    kept = prune(m, method="channel", amount=0.5, example_inputs=(X,), round_to=1, min_params=0, include=["stem.0"],
                 keep_tied=True)  # fmt: skip
    assert kept.model.stem[0].out_channels == kept.model.project[0].out_channels == 16
    assert kept.model.expand[0].out_channels == 16


def test_convert_with_prune_validates_against_original(tmp_path):
    from converters import convert
    from converters.prune import PruneSpec

    spec = PruneSpec(method="channel", amount=0.5, round_to=1, min_params=0)
    result = convert(tiny(redundant=True), to=["onnx"], precision=["fp32", "int8"], example_inputs=(X,),
                     calibration="synthetic", output_dir=tmp_path, prune=spec, validate_samples=8)  # fmt: skip
    assert result.passed
    names = sorted(a.path.name for a in result.artifacts)
    assert names == ["tiny_channel50_fp32.onnx", "tiny_channel50_int8.onnx"]
    fp32 = result.artifact("onnx", "fp32")
    assert fp32.metrics[0].cosine > 0.9999  # dead channels removed: the same function, fewer MACs
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "torch" and manifest["source"]["sha256"] == result.source["sha256"]
    pr = manifest["pruning"]
    assert pr["method"] == "channel" and pr["params_after"] < pr["params_before"]
    assert pr["agreement_before_finetune"] == 1.0
    from edge_sdk.summary import summarize

    assert summarize(fp32.path).params == pytest.approx(pr["params_after"], rel=0.02)


def test_finetune_distillation_on_image_folder(tmp_path):
    from converters import convert
    from converters.datasets import write_image_folder
    from converters.prune import PruneSpec
    from edge_sdk.preprocess import PreprocessSpec

    rng = np.random.default_rng(0)
    write_image_folder(tmp_path / "imgs", rng.integers(0, 255, (16, 16, 16, 3), dtype=np.uint8))
    pre = PreprocessSpec(size=(16, 16), mean=(127.0,), std=(128.0,), layout="NCHW")
    spec = PruneSpec(method="channel", amount=0.5, finetune=tmp_path / "imgs", epochs=1, batch_size=8, lr=1e-3,
                     round_to=1, min_params=0)  # fmt: skip
    result = convert(tiny(), example_inputs=(X,), preprocess=pre, output_dir=tmp_path / "o", prune=spec,
                     validate_samples=8)  # fmt: skip
    pr = json.loads(result.manifest_path.read_text())["pruning"]
    assert pr["finetune"]["mode"].startswith("distillation") and pr["finetune"]["samples"] == 16
    assert pr["agreement_before_finetune"] is not None and pr["agreement_after_finetune"] is not None
    # magnitude-pruned weights stay zero through fine-tuning
    from converters.prune.finetune import finetune

    mag = prune(tiny(), method="magnitude", amount=0.5, example_inputs=(X,), min_params=0)
    spec = PruneSpec(method="magnitude", amount=0.5, finetune=tmp_path / "imgs", epochs=1, batch_size=8, lr=1e-2)
    info = finetune(mag.model, tiny(), spec, pre)
    assert info["samples"] == 16 and float((mag.model.expand[0].weight == 0).float().mean()) >= 0.5


def test_mixup_distillation_moves_the_student_toward_the_teacher_on_blends(tmp_path, monkeypatch):
    """--mixup: the teacher labels every blended, flipped batch (consistent teaching); the student's logits
    move toward the teacher's on unseen images."""
    import torch

    from converters.datasets import write_image_folder
    from converters.prune import PruneSpec
    from converters.prune.finetune import finetune, recalibrate_bn
    from edge_sdk.preprocess import PreprocessSpec

    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    write_image_folder(tmp_path / "imgs", rng.integers(0, 255, (32, 16, 16, 3), dtype=np.uint8))
    pre = PreprocessSpec(size=(16, 16), mean=(127.0,), std=(128.0,), layout="NCHW")
    teacher, student = tiny().eval(), tiny().eval()
    with torch.no_grad():  # the student starts as a noisy copy of the teacher
        for p in student.parameters():
            p.add_(torch.randn_like(p) * p.std().clamp(min=1e-3))
    images = rng.integers(0, 255, (64, 16, 16, 3), dtype=np.uint8)
    probe = torch.from_numpy(np.concatenate([pre.apply(im) for im in images]))  # unseen, same distribution
    recalibrate_bn(teacher, probe.numpy())  # a teacher whose BN statistics fit the data, as a trained one's do

    def gap() -> float:
        with torch.no_grad():
            return float((student(probe) - teacher(probe)).abs().mean())

    before = gap()
    spec = PruneSpec(method="channel", amount=0.5, finetune=tmp_path / "imgs", epochs=12, batch_size=16,
                     lr=3e-3, mixup=1.0)  # fmt: skip
    import converters.prune.finetune as ft

    calls = []
    monkeypatch.setattr(ft, "_predict", lambda *a, **k: pytest.fail("mixup must not use precomputed teacher logits"))
    real_teacher_logits = ft._teacher_logits
    monkeypatch.setattr(ft, "_teacher_logits", lambda t, xb: calls.append(xb.clone()) or real_teacher_logits(t, xb))
    info = finetune(student, teacher, spec, pre)
    assert "mixup alpha 1.0" in info["mode"] and len(info["loss_per_epoch"]) == 12
    assert len(calls) == 12 * 2  # the teacher labels every batch (32 images / 16) of every epoch ...
    assert not torch.equal(calls[0], calls[2])  # ... and each epoch's blends are new inputs
    assert info["loss_per_epoch"][-1] < info["loss_per_epoch"][0]
    assert gap() < 0.9 * before
    with pytest.raises(PruneError, match="mixup must be >= 0"):
        PruneSpec(method="channel", amount=0.5, mixup=-1)


# ---- ONNX -------------------------------------------------------------------------------------
def test_onnx_magnitude_and_channel(tiny_onnx):
    import onnx
    import onnxruntime as ort

    def run(proto):
        sess = ort.InferenceSession(proto.SerializeToString())
        return sess.run(None, {"input": X.numpy()})[0]

    ref = run(onnx.load(str(tiny_onnx)))
    mag = prune(tiny_onnx, method="magnitude", amount=0.8, min_params=0)
    assert mag.framework == "onnx" and mag.weights_gzip_after < 0.7 * mag.weights_gzip_before
    assert [x.sparsity_after for x in mag.layers if not x.skipped] == pytest.approx([0.8] * 5, abs=0.01)
    assert cosine(run(prune(tiny_onnx, method="magnitude", amount=0.1, min_params=0).model), ref) > 0.98
    ch = prune(tiny_onnx, method="channel", amount=0.5, round_to=1, min_params=0)
    onnx.checker.check_model(ch.model)
    after = {x.name: (x.channels_before, x.channels_after) for x in ch.layers}
    assert after["/expand/expand.0/Conv"] == (32, 16) and after["/head/head.0/Conv"] == (64, 32)
    assert after["/left/Conv"] == (24, 12) and after["/project/project.0/Conv"] == (16, 16)  # residual with stem
    assert ch.params_after < 0.6 * ch.params_before
    np.testing.assert_allclose(run(ch.model), ref, rtol=1e-4, atol=1e-5)
    stem = "/stem/stem.0/Conv"
    cut = prune(tiny_onnx, method="channel", amount=0.5, round_to=1, min_params=0, include=[stem])
    assert {x.name: x.channels_after for x in cut.layers}["/project/project.0/Conv"] == 8
    assert run(cut.model).shape == (1, 10)
    kept = prune(tiny_onnx, method="channel", amount=0.5, round_to=1, min_params=0, include=[stem], keep_tied=True)
    assert {x.name: x.channels_after for x in kept.layers}["/project/project.0/Conv"] == 16


def test_cli_convert_prune_int8_one_call(tiny_onnx, tmp_path, cli):
    r = cli("convert", str(tiny_onnx), "--to", "onnx,openvino", "--precision", "int8", "--calib", "synthetic",
            "--prune", "channel:0.5", "-o", str(tmp_path), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["passed"] and {a["path"] for a in out["artifacts"]} == {"tiny_channel50_int8.onnx",
                                                                       "tiny_channel50_int8.xml"}  # fmt: skip
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["pruning"]["method"] == "channel" and manifest["source"]["kind"] == "onnx"
    assert all(a["metrics"][0]["cosine"] > 0.97 for a in manifest["artifacts"])


# ---- Keras ------------------------------------------------------------------------------------
def test_keras_magnitude_and_channel(tiny_keras):
    import keras
    import onnxruntime as ort

    model = keras.saving.load_model(tiny_keras)
    x = np.random.default_rng(2).standard_normal((1, 16, 16, 3)).astype(np.float32)
    ref = np.asarray(model(x))
    mag = prune(model, method="magnitude", amount=0.5, min_params=0)
    reasons = {x.name: x.skipped for x in mag.layers}
    assert reasons["stem"].startswith("first conv") and reasons["dw"].startswith("depthwise")
    assert reasons["fc"].startswith("classifier") and not reasons["head"]
    assert mag.model.get_layer("head").get_weights()[0].size * 0.5 == pytest.approx(
        np.sum(mag.model.get_layer("head").get_weights()[0] == 0), abs=1
    )
    assert np.sum(model.get_layer("left").get_weights()[0] == 0) == 24 * 16 // 2  # original untouched
    ch = prune(tiny_keras, method="channel", amount=0.5, round_to=1, min_params=0)
    assert ch.framework == "onnx" and ch.params_after < 0.7 * ch.params_before
    sess = ort.InferenceSession(ch.model.SerializeToString())
    np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x})[0], ref, rtol=1e-4, atol=1e-4)


def test_cli_prune_onnx_with_layer_table(tiny_onnx, tmp_path, cli):
    r = cli("prune", str(tiny_onnx), "--method", "magnitude", "--amount", "0.5", "--min-params", "0",
            "--skip", "/head/head.0/Conv", "-o", str(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "first conv (default skip)" in r.stdout and "skipped by user" in r.stdout and "weights gzip" in r.stdout
    assert (tmp_path / "tiny_magnitude50.onnx").is_file() and (tmp_path / "tiny_magnitude50_fp32.onnx").is_file()


# ---- bad input --------------------------------------------------------------------------------
def _relu_only_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"amount": 1.5}, r"amount 1.5 is outside \(0, 1\).*fraction of weights"),
        ({"amount": 0}, r"amount 0 is outside \(0, 1\)"),
        ({"amount": "half"}, r"amount 'half' is not a number"),
        ({"method": "random"}, r"pruning method 'random' is unknown; use one of magnitude, channel"),
        ({"skip": ["nope"]}, r"--skip names layer\(s\) 'nope' that the model does not have.*stem.0, expand.0"),
        ({"layer_amounts": {"fc": 2}}, r"amount for layer 'fc' 2 is outside"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(PruneError, match=message):
        prune(tiny(), example_inputs=(X,), **{"method": "magnitude", "amount": 0.5, **kwargs})


def test_no_prunable_layer(tmp_path):
    with pytest.raises(PruneError, match="has no prunable layer"):
        prune(_relu_only_onnx(tmp_path / "relu.onnx"), method="magnitude", amount=0.5)
    with pytest.raises(PruneError, match="no layer left to prune.*--include NAME or --no-default-skips"):
        prune(nn.Sequential(nn.Conv2d(3, 4, 3)), method="magnitude", amount=0.5, example_inputs=(X,))


def test_empty_finetune_folder_and_cli_errors(tmp_path, cli):
    from converters.prune.finetune import load_images
    from edge_sdk.preprocess import PreprocessSpec

    (tmp_path / "empty").mkdir()
    pre = PreprocessSpec(size=(16, 16), mean=(127.0,), std=(128.0,))
    with pytest.raises(PruneError, match=r"fine-tune data folder .*empty is empty: it has no images"):
        load_images(tmp_path / "empty", pre)
    with pytest.raises(PruneError, match="fine-tune data folder not found"):
        load_images(tmp_path / "missing", pre)
    onnx_path = str(_relu_only_onnx(tmp_path / "relu.onnx"))
    r = cli("prune", onnx_path, "--amount", "1.2", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "amount 1.2 is outside (0, 1)" in r.stderr and "Traceback" not in r.stderr
    r = cli("prune", onnx_path, "--amount", "0.5", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "has no prunable layer" in r.stderr
    r = cli("convert", onnx_path, "--prune", "channel", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "is not METHOD:AMOUNT" in r.stderr


def test_magnitude_pruned_keras_to_sparse_tflite_is_smaller_and_computes_the_same(tmp_path, cli):
    """`--tflite-sparse` stores pruned weights sparse (DENSIFY ops): a smaller file, identical outputs."""
    import keras

    from converters import convert

    keras.utils.set_random_seed(4)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="stem")(inp)
    x = keras.layers.Conv2D(128, 1, activation="relu", name="expand")(x)
    x = keras.layers.Conv2D(128, 1, activation="relu", name="wide")(x)
    out = keras.layers.Dense(10, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    pruned = prune(keras.Model(inp, out), method="magnitude", amount=0.8, min_params=0).model
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    dense = convert(path, to="tflite", output_dir=tmp_path / "d", validate_samples=4)
    sparse = convert(path, to="tflite", tflite_sparse=True, output_dir=tmp_path / "s", validate_samples=4)
    d, s = dense.artifact("tflite", "fp32"), sparse.artifact("tflite", "fp32")
    assert s.passed and min(m.cosine for m in s.metrics) > 0.99999
    assert s.size_bytes < 0.6 * d.size_bytes, (s.size_bytes, d.size_bytes)
    from edge_sdk.summary import summarize

    assert "DENSIFY" in summarize(s.path).ops
    # a .tflite source is re-quantized by ai-edge-quantizer, which has no sparse encoding: say so and what to do
    r = cli("convert", str(d.path), "--to", "tflite", "--tflite-sparse", "-o", str(tmp_path / "t"))
    assert r.returncode != 0 and "--tflite-sparse needs TFLiteConverter" in r.stderr
    assert "convert from the original model" in r.stderr


def test_distillation_keeps_a_clean_share_of_each_batch_and_matches_logits_with_mse():
    """clean_fraction=1: every image is the original (maybe flipped), never a blend; mse: the logits' squared error."""
    import torch

    from converters.prune.finetune import _distillation_loss, _mixup_batch

    xb = torch.arange(4 * 2 * 2 * 2, dtype=torch.float32).reshape(4, 2, 2, 2)
    out = _mixup_batch(xb, np.random.default_rng(0), 1.0, clean_fraction=1.0)
    assert all(torch.equal(o, x) or torch.equal(o, x.flip(-1)) for o, x in zip(out, xb))
    blended = _mixup_batch(xb, np.random.default_rng(0), 1.0, clean_fraction=0.0)
    assert not all(torch.equal(o, x) or torch.equal(o, x.flip(-1)) for o, x in zip(blended, xb))
    a, b = torch.tensor([[2.0, 1.9, -1.0]]), torch.tensor([[1.9, 2.0, -1.0]])
    assert float(_distillation_loss(a, b, "mse", 1.0)) == pytest.approx(0.02 / 3)
    assert float(_distillation_loss(a, a, "kl", 1.0)) == pytest.approx(0.0, abs=1e-7)


def test_agreement_floor_is_chance_plus_five_points():
    from converters.prune.spec import PruneSpec, agreement_floor

    assert agreement_floor(1000) == pytest.approx(0.051)
    assert agreement_floor(10) == pytest.approx(0.15)
    assert agreement_floor(None) == pytest.approx(0.05)
    assert agreement_floor(10, 0.6) == 0.6
    assert PruneSpec(classes=10).tolerances()["top1"] == pytest.approx(0.15)
