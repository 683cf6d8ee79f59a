"""GPTQ weight rounding (``weight_rounding="gptq"`` / ``--int8-rounding gptq``): weights land exactly on the
grid every runtime's quantizer uses, the layer outputs are closer to the float ones than nearest rounding
gets, the runtime's int8 weights are the GPTQ ones, and it is refused where it cannot apply."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tiny_torch import X, tiny  # noqa: E402


def _smooth_images(n: int, seed: int) -> np.ndarray:
    """Blurred noise (neighbouring pixels correlate, as in photos, which is what GPTQ exploits)."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((n, 3, 20, 20)).astype(np.float32))
    return torch.nn.functional.avg_pool2d(x, 5, 1)[:, :, :16, :16].numpy() * 2


def _nearest(module):
    """Per-channel symmetric round-to-nearest of every weight (what each quantizer does by itself)."""
    out = copy.deepcopy(module)
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                w = m.weight
                step = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 127
                m.weight.copy_(torch.round(w / step) * step)
    return out


def test_gptq_weights_are_on_the_int8_grid_and_closer_than_nearest_rounding():
    from converters.quantizers.gptq import check_on_grid, round_weights

    original = tiny()
    calib = _smooth_images(64, 0)
    held = torch.from_numpy(_smooth_images(64, 1))
    rounded = copy.deepcopy(original)
    info = round_weights(rounded, [(c[None],) for c in calib], batch_size=16)
    assert info["layers"] == 8 and info["skipped"] == [], info  # 1x1 convs take the no-unfold path, checked
    assert all(p.is_contiguous() for p in rounded.parameters()), "the module is handed back as it came"
    assert check_on_grid(original) != [] and check_on_grid(rounded) == []
    with torch.no_grad():
        ref = original(held)
        gptq_err = float(((rounded(held) - ref) ** 2).mean())
        nearest_err = float(((_nearest(original)(held) - ref) ** 2).mean())
    assert gptq_err < 0.5 * nearest_err, (gptq_err, nearest_err)


def test_onnx_runtime_int8_weights_are_the_gptq_weights(tmp_path):
    """ORT's per-channel quantizer re-derives each scale from the BN-folded weights; for GPTQ-rounded weights
    it must land on exactly the same values (no second rounding), for every quantized weight."""
    import onnx
    from onnx import numpy_helper

    from converters.calibration import CalibrationSet
    from converters.quantizers.gptq import round_weights
    from converters.quantizers.onnx_quant import quantize
    from converters.routes import RouteContext

    calib = _smooth_images(32, 3)
    model = tiny()
    round_weights(model, [(c[None],) for c in calib], batch_size=16)
    fp32 = tmp_path / "gptq.onnx"
    torch.onnx.export(model, (X,), str(fp32), input_names=["input"], output_names=["logits"], opset_version=17,
                      dynamo=False)  # fmt: skip
    samples = CalibrationSet([[c[None]] for c in calib], "arrays", "test", input_names=["input"])
    int8 = quantize(fp32, tmp_path / "gptq_int8.onnx", "int8", samples, RouteContext(workdir=tmp_path))
    floats = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(fp32)).graph.initializer}
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(int8)).graph.initializer}
    checked = 0
    for node in onnx.load(str(int8)).graph.node:
        weight = node.input[0].removesuffix("_quantized")
        if (
            node.op_type != "DequantizeLinear"
            or weight == node.input[0]
            or weight not in floats
            or floats[weight].ndim < 2
        ):
            continue
        q, scale = inits[node.input[0]].astype(np.float64), inits[node.input[1]].astype(np.float64)
        dequantized = q * scale.reshape(-1, *[1] * (q.ndim - 1))
        np.testing.assert_allclose(dequantized, floats[weight], rtol=1e-5, atol=1e-7, err_msg=weight)
        checked += 1
    assert checked == 8, checked  # every Conv (BN folded) and the Linear; biases are int32, not rounded here


def test_gptq_rounding_is_refused_where_it_cannot_apply(tmp_path, tiny_onnx):
    from converters import convert
    from edge_sdk.errors import ConversionError

    with pytest.raises(ConversionError, match="weight rounding 'stochastic' is unknown; use one of nearest, gptq"):
        convert(tiny(), example_inputs=(X,), to="onnx", precision="int8", calibration="synthetic",
                weight_rounding="stochastic", output_dir=tmp_path / "a")  # fmt: skip
    with pytest.raises(ConversionError, match="gptq weight rounding is for static int8: add --precision int8"):
        convert(tiny(), example_inputs=(X,), to="onnx", precision="fp16", weight_rounding="gptq",
                output_dir=tmp_path / "b")  # fmt: skip
    with pytest.raises(ConversionError, match="needs a PyTorch model .* this source is onnx"):
        convert(tiny_onnx, to="onnx", precision="int8", calibration="synthetic", weight_rounding="gptq",
                output_dir=tmp_path / "c")  # fmt: skip
    with pytest.raises(ConversionError, match="weight rounding and QAT both set the int8 weights: use one of them"):
        convert(tiny(), example_inputs=(X,), to="onnx", precision="int8", calibration="synthetic",
                weight_rounding="gptq", qat={"finetune": "photos:8"}, output_dir=tmp_path / "d")  # fmt: skip


def test_cli_int8_rounding_flag_reaches_convert(tiny_onnx, tmp_path, cli):
    """--int8-rounding gptq on an ONNX file: a one-line error naming the source kind, no file written."""
    r = cli("convert", str(tiny_onnx), "--to", "onnx", "--precision", "int8", "--calib", "synthetic",
            "--int8-rounding", "gptq", "-o", str(tmp_path / "o"))  # fmt: skip
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "gptq weight rounding needs a PyTorch model (module or .pt2); this source is onnx" in r.stderr
    assert not list((tmp_path / "o").glob("*.onnx"))


@pytest.mark.parametrize(("isa", "stem_steps"), [("x86-vnni", 127), ("arm64-dotprod", 127), ("x86-avx2", 63)])
def test_openvino_int8_keeps_the_gptq_weights_where_the_isa_allows(tmp_path, isa, stem_steps):
    """Where int8 products accumulate in 32 bits (VNNI, Arm) GPTQ's 8-bit weights reach the IR as they are, the
    stem included (NNCF's default overflow fix would re-round it to 7 bits); on x86 without VNNI full-range u8 x s8
    pairs saturate, so the ISA's scheme applies NNCF's overflow fix to every layer: 63 steps at most."""
    import openvino as ov

    from converters import convert
    from converters.datasets import write_image_folder
    from edge_sdk.preprocess import PreprocessSpec

    imgs = ((_smooth_images(32, 3).transpose(0, 2, 3, 1) * 40) + 128).clip(0, 255).astype(np.uint8)
    write_image_folder(tmp_path / "imgs", imgs)
    pre = PreprocessSpec(size=(16, 16), mean=(127.0,), std=(128.0,), layout="NCHW")
    result = convert(tiny(), example_inputs=(X,), to="openvino", precision="int8", weight_rounding="gptq",
                     calibration=tmp_path / "imgs", preprocess=pre, output_dir=tmp_path / "o", validate_samples=8,
                     allow_degraded=True, target_isa=isa, fallback=False)  # fmt: skip
    model = ov.Core().read_model(str(result.artifact("openvino", "int8").path))
    int8 = [op.get_data() for op in model.get_ops() if op.get_type_name() == "Constant"
            and op.get_element_type() == ov.Type.i8 and len(op.get_output_shape(0)) == 4]  # fmt: skip
    stem = [w for w in int8 if tuple(w.shape) == (16, 3, 3, 3)]
    assert len(stem) == 1, [w.shape for w in int8]
    assert np.abs(stem[0].astype(int)).reshape(16, -1).max(1).tolist() == [stem_steps] * 16


def test_a_conv_whose_output_the_patches_do_not_reproduce_is_left_alone():
    """A Conv2d subclass with a forward of its own (here: reflect padding inside forward) would give GPTQ the
    wrong input statistics: it is listed as skipped and its weights are not touched."""
    from converters.quantizers.gptq import round_weights

    class ReflectConv(torch.nn.Conv2d):
        def forward(self, x):
            return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), self.weight)

    model = torch.nn.Sequential(ReflectConv(3, 8, 3, bias=False), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()
    before = model[0].weight.detach().clone()
    info = round_weights(model, [(c[None],) for c in _smooth_images(8, 0)], batch_size=4)
    assert info["skipped"] == ["0"] and info["layers"] == 1, info
    assert torch.equal(model[0].weight, before)


class _ViewHead(torch.nn.Module):
    """``.view`` on a conv output: cannot run channels-last, the layout GPTQ prefers for speed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 16 * 16, 10)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc(y.view(y.shape[0], -1))


def test_gptq_rounds_a_model_that_cannot_run_channels_last_and_keeps_the_callers_layout():
    from converters.quantizers.gptq import check_on_grid, round_weights

    torch.manual_seed(0)
    samples = [(c[None],) for c in _smooth_images(16, 0)]
    model = _ViewHead().eval()
    info = round_weights(model, samples)
    assert info["layers"] == 2 and info["skipped"] == [] and check_on_grid(model) == []
    assert model.conv.weight.is_contiguous()  # handed back as it came
    with torch.no_grad():
        model(torch.from_numpy(samples[0][0]))  # and still runs

    last = tiny().to(memory_format=torch.channels_last)
    round_weights(last, samples)
    stem = last.stem[0].weight
    assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
