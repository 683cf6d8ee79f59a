"""Quantization-aware fine-tuning (``qat=`` / ``--qat-epochs``) on the tiny PyTorch model: one fine-tuning for
every int8 target, the adapted weights on their int8 grid, and QAT refused where it cannot apply."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tiny_torch import X, cosine, tiny  # noqa: E402


def test_int8_with_quantization_aware_fine_tuning_on_every_target(tmp_path):
    """qat=: one NNCF fine-tuning; OpenVINO gets the fine-tuned IR, ONNX its QDQ quantizer on the adapted weights."""
    import json

    from converters import convert
    from converters.datasets import write_image_folder
    from edge_sdk.errors import ConversionError
    from edge_sdk.preprocess import PreprocessSpec
    from edge_sdk.summary import summarize

    rng = np.random.default_rng(2)
    write_image_folder(tmp_path / "imgs", rng.integers(0, 255, (32, 16, 16, 3), dtype=np.uint8))
    pre = PreprocessSpec(size=(16, 16), mean=(127.0,), std=(128.0,), layout="NCHW")
    result = convert(tiny(), example_inputs=(X,), to=["openvino", "onnx"], precision="int8",
                     calibration=tmp_path / "imgs", preprocess=pre,
                     qat={"finetune": tmp_path / "imgs", "epochs": 1, "batch_size": 16, "loss": "mse"},
                     output_dir=tmp_path / "o", validate_samples=8, allow_degraded=True)  # fmt: skip
    ov_art, onnx_art = result.artifact("openvino", "int8"), result.artifact("onnx", "int8")
    assert "QAT (1 epochs)" in ov_art.quantizer and min(m.cosine for m in ov_art.metrics) > 0.9
    assert "distillation-QAT weights (1 epochs)" in onnx_art.quantizer and min(m.cosine for m in onnx_art.metrics) > 0.9
    for art in (ov_art, onnx_art):
        assert summarize(art.path).quantization.startswith("int8"), (art.path, summarize(art.path).quantization)
    qat = json.loads(result.manifest_path.read_text())["qat"]
    assert qat["epochs"] == 1 and qat["samples"] == 32
    assert qat["mode"] == "distillation (MSE on logits), mixup alpha 1.0 + flips", qat["mode"]
    with pytest.raises(ConversionError, match="QAT fine-tunes for static int8: add --precision int8"):
        convert(tiny(), example_inputs=(X,), to="onnx", precision="fp16",
                qat={"finetune": tmp_path / "imgs"}, output_dir=tmp_path / "x")  # fmt: skip
    with pytest.raises(ConversionError, match="distillation loss 'l1' is unknown; use one of kl, mse"):
        convert(tiny(), example_inputs=(X,), to="onnx", precision="int8",
                qat={"finetune": tmp_path / "imgs", "loss": "l1"}, output_dir=tmp_path / "x")  # fmt: skip


def test_qat_tflite_and_onnx_quantize_the_fine_tuned_weights_not_the_original(tmp_path):
    """With QAT, TFLite int8 comes from the adapted weights (its own onnx2tf export), like ONNX int8 does:
    after a fine-tuning that moves the weights, it agrees with QAT's ONNX int8, not with post-training TFLite."""
    import edge_sdk as es
    from converters import convert
    from converters.datasets import write_image_folder
    from converters.layout import adapt_array
    from converters.routes.onnx_routes import onnx2tf_executable
    from edge_sdk.preprocess import PreprocessSpec

    try:
        onnx2tf_executable()
    except Exception as e:  # the Makefile's test target installs it
        pytest.skip(str(e))
    write_image_folder(tmp_path / "imgs", np.random.default_rng(3).integers(0, 255, (32, 16, 16, 3), dtype=np.uint8))
    pre = PreprocessSpec(size=(16, 16), mean=(127.0,), std=(128.0,), layout="NCHW")
    common = dict(example_inputs=(X,), precision="int8", calibration=tmp_path / "imgs", preprocess=pre,
                  validate_samples=4, allow_degraded=True)  # fmt: skip
    qat = convert(tiny(), to=["tflite", "onnx"], output_dir=tmp_path / "qat", **common,
                  qat={"finetune": tmp_path / "imgs", "epochs": 2, "batch_size": 16, "lr": 1e-2})  # fmt: skip
    ptq = convert(tiny(), to=["tflite"], output_dir=tmp_path / "ptq", **common)

    def run(path):
        with es.load(path, dequantize=True) as m:
            return np.ravel(m(adapt_array(X.numpy(), m.inputs[0])))

    t_qat, o_qat, t_ptq = (
        run(r.artifact(t, "int8").path) for r, t in ((qat, "tflite"), (qat, "onnx"), (ptq, "tflite"))
    )  # noqa: E501
    same, other = cosine(t_qat, o_qat), cosine(t_qat, t_ptq)
    assert same > 0.99 and same > other + 0.01, (same, other)


def test_qat_adapted_weights_sit_on_their_int8_grid():
    """The float module ONNX/TFLite quantize after QAT carries the fine-tuned weights snapped to int8 levels,
    so a per-channel symmetric quantizer (scale = max|w| / 127) reproduces them exactly."""
    import copy

    from converters.quantizers.qat import _snapped_float_module, allow_extension_build

    allow_extension_build()  # NNCF builds its torch extension on first use: the product's own allowance
    import nncf
    import torch

    teacher = tiny().eval()
    student = nncf.quantize(copy.deepcopy(teacher), nncf.Dataset([X] * 4), subset_size=4)
    with torch.no_grad():
        for p in student.parameters():
            if p.is_floating_point() and p.dim() > 1:
                p.mul_(1.05)  # stands in for training: weights moved off the original's (and off its int8 grid)
    adapted = _snapped_float_module(student, teacher, X)
    # the first conv is skipped: NNCF's overflow fix gives it a 7-bit grid, which ORT/TFLite re-round finer
    convs = [m for m in adapted.modules() if isinstance(m, torch.nn.Conv2d)][1:]
    assert len(convs) == 6
    for conv, original in zip(convs, [m for m in teacher.modules() if isinstance(m, torch.nn.Conv2d)][1:]):
        w = conv.weight.detach().flatten(1)
        assert not torch.equal(conv.weight, original.weight)  # the student's weights, not the teacher's
        levels = w / (w.abs().amax(1, keepdim=True) / 127)
        assert torch.allclose(levels, levels.round(), atol=1e-3), (levels - levels.round()).abs().max()


def test_cli_refuses_qat_for_a_source_it_cannot_fine_tune(tiny_onnx, tmp_path, cli):
    """--qat-epochs on an ONNX file: a one-line error naming the source kind, before any conversion work."""
    r = cli("convert", str(tiny_onnx), "--to", "onnx", "--precision", "int8", "--calib", "synthetic",
            "--qat-epochs", "1", "-o", str(tmp_path / "o"))  # fmt: skip
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "QAT fine-tunes a PyTorch model (module or .pt2); this source is onnx" in r.stderr
    assert not list((tmp_path / "o").glob("*.onnx"))
