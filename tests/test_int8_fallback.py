"""Static int8 that meets its tolerance: a model with one sensitive layer fails plain int8 on every target; the
fallback finds that layer by comparing the int8 model's tensors with the float model's, keeps it float with the
target's own mechanism, and passes. ``--no-fallback`` keeps the old failure. The int8 scheme follows the ISA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from converters import convert
from converters.quantizers.isa import ISAS, scheme_for
from edge_sdk.errors import ConversionError, ValidationFailedError

TARGETS = ["onnx", "openvino", "tflite"]


@pytest.fixture(scope="module")
def sensitive_keras(tmp_path_factory) -> Path:
    """Four convs and a classifier. The conv 'outlier' writes one channel 1000x larger than its other 15; the conv
    'sensitive' reads that activation and scales the big channel back down, so the float model is ordinary but
    per-tensor int8 of its input rounds the 15 channels it depends on to nothing."""
    import keras

    keras.utils.set_random_seed(5)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inp)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="outlier")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="sensitive")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="head")(x))
    kernel, bias = model.get_layer("outlier").get_weights()
    kernel[..., 0] = np.abs(kernel[..., 0]) * 1000.0
    bias[0] = 100.0
    model.get_layer("outlier").set_weights([kernel, bias])
    kernel, bias = model.get_layer("sensitive").get_weights()
    kernel[:, :, 0, :] /= 1000.0
    model.get_layer("sensitive").set_weights([kernel, bias])
    path = tmp_path_factory.mktemp("sensitive") / "sensitive.keras"
    model.save(path)
    return path


@pytest.mark.slow
def test_fallback_keeps_the_sensitive_layer_float_on_every_target(sensitive_keras, tmp_path):
    result = convert(sensitive_keras, to=TARGETS, precision="int8", calibration="synthetic", output_dir=tmp_path)
    assert result.passed  # no allow_degraded: it would raise otherwise
    manifest = {a["target"]: a for a in json.loads((tmp_path / "manifest.json").read_text())["artifacts"]}
    for a in result.artifacts:
        fb = a.fallback
        assert fb is not None, a.target
        assert any("top-1 agreement" in f for f in fb["plain_int8_failures"]), (a.target, fb)  # plain int8 failed
        assert fb["plain_int8_metrics"][0]["top1_agreement"] < 0.9
        assert fb["passed"] and not a.failures and fb["rounds"][-1]["failures"] == [] and len(fb["rounds"]) == 1
        sensitive, outlier = _layer_names(a.target, a.path)
        assert fb["kept"] == [sensitive], (a.target, fb["kept"])
        assert fb["most_sensitive"][0]["name"] == sensitive and fb["most_sensitive"][0]["added_db"] > 10
        assert outlier in fb["excluded"]  # the activation it reads stays float: its producer is excluded too
        assert fb["latency"]["ratio_fallback"] > 0 and fb["latency"]["backend"]
        assert manifest[a.target]["fallback"]["kept"] == fb["kept"]
        assert manifest[a.target]["isa"]["isa"] in ISAS and manifest[a.target]["isa"]["detected"] is True
        assert a.metrics[0].top1_agreement >= 0.9
    _assert_float_in_onnx(result.artifact("onnx", "int8").path)
    _assert_float_in_openvino(result.artifact("openvino", "int8").path)


def _layer_names(target: str, path: Path) -> tuple[str, str]:
    """How ``target`` names the 'sensitive' and 'outlier' convs: ONNX node names, TFLite output tensors (both
    carry the Keras layer name); OpenVINO's IR from a SavedModel does not, so its 3rd and 2nd Convolution."""
    if target == "onnx":
        import onnx

        convs = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    elif target == "openvino":
        import openvino as ov

        ops = ov.Core().read_model(str(path)).get_ordered_ops()
        convs = [op.get_friendly_name() for op in ops if op.get_type_name() == "Convolution"]
        return convs[2], convs[1]
    else:
        from converters.quantizers.tflite_quant import _graph

        convs = [op["outputs"][0] for op in _graph(path)[0] if op["op"] == "CONV_2D"]
    return next(c for c in convs if "sensitive" in c), next(c for c in convs if "outlier" in c)


def _assert_float_in_onnx(path: Path) -> None:
    """The 'sensitive' conv reads float weights and a float activation; the stem is still int8."""
    import onnx

    graph = onnx.load(str(path)).graph
    producers = {t: n for n in graph.node for t in n.output}

    def dequantized(t: str) -> bool:
        return t in producers and producers[t].op_type == "DequantizeLinear"

    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    sensitive = next(n for name, n in convs.items() if "sensitive" in name)
    assert not any(dequantized(t) for t in sensitive.input)
    assert all(dequantized(t) for t in next(n for name, n in convs.items() if "stem" in name).input[:2])


def _assert_float_in_openvino(path: Path) -> None:
    """The 3rd Convolution ('sensitive') has float weights and no FakeQuantize before it; the stem is int8."""
    import openvino as ov

    ops = ov.Core().read_model(str(path)).get_ordered_ops()
    convs = [op for op in ops if op.get_type_name() == "Convolution"]
    kinds = [[v.get_node().get_type_name() for v in conv.input_values()] for conv in convs]
    assert "FakeQuantize" not in kinds[2] and kinds[2][1] == "Constant", kinds
    assert kinds[0][1] == "Multiply", kinds  # the stem's weights are int8, decompressed (Convert -> Multiply)


def test_no_fallback_keeps_the_old_failure(sensitive_keras, tmp_path, cli):
    with pytest.raises(ValidationFailedError, match=r"sensitive_int8.onnx: output '.*': top-1 agreement .*% < 90%"):
        convert(sensitive_keras, to="onnx", precision="int8", calibration="synthetic", output_dir=tmp_path / "py",
                fallback=False)  # fmt: skip
    manifest = json.loads((tmp_path / "py" / "manifest.json").read_text())
    assert manifest["artifacts"][0]["fallback"] is None and manifest["artifacts"][0]["passed"] is False

    out = tmp_path / "cli"
    r = cli("convert", str(sensitive_keras), "--to", "onnx", "--precision", "int8", "--calib", "synthetic",
            "--no-fallback", "-o", str(out))  # fmt: skip
    assert r.returncode != 0
    assert "1 artifact(s) outside tolerance: sensitive_int8.onnx; pass --allow-degraded to accept" in r.stderr
    r = cli("convert", str(sensitive_keras), "--to", "onnx", "--precision", "int8", "--calib", "synthetic",
            "--target-isa", "x86-vnni", "-o", str(out), "--json", "--allow-degraded")  # fmt: skip
    assert r.returncode == 0, r.stderr
    art = json.loads(r.stdout)["artifacts"][0]
    assert art["isa"]["isa"] == "x86-vnni" and art["isa"]["onnx"] == "u8s8" and art["isa"]["detected"] is False
    assert art["fallback"]["kept"] and art["fallback"]["plain_int8_failures"]  # the record is in the CLI's JSON


def test_fallback_budget_spent_reports_the_failure(sensitive_keras, tmp_path, cli):
    """A tolerance nothing meets: the fallback stops at its budget (40% of 6 layers -> 2; ``fallback_budget=0.2``
    -> 1), keeps the closest artifact it made, and the error stays. A budget outside (0, 1] is refused, naming the
    option."""
    for budget, kept in ((None, 2), (0.2, 1)):
        out = tmp_path / str(budget)
        with pytest.raises(ValidationFailedError, match=r"cosine .* < 1.1"):
            convert(sensitive_keras, to="onnx", precision="int8", calibration="synthetic", output_dir=out,
                    tolerances={"cosine": 1.1}, fallback_budget=budget)  # fmt: skip
        art = json.loads((out / "manifest.json").read_text())["artifacts"][0]
        fb = art["fallback"]
        assert fb["passed"] is False and fb["budget"] == kept and len(fb["rounds"]) == kept, fb
        assert fb["budget_fraction"] == (budget or 0.4)
        # the artifact kept is the closest one tried (plain int8 is round 0), with its own layers and figures
        closeness = [min(m["cosine"] for m in fb["plain_int8_metrics"])] + [r["lowest_cosine"] for r in fb["rounds"]]
        best = int(np.argmax(closeness))
        assert fb["kept_round"] == best and len(fb["kept"]) == sum(len(r["added"]) for r in fb["rounds"][:best])
        assert min(m["cosine"] for m in art["metrics"]) == pytest.approx(closeness[best], abs=1e-6)
    with pytest.raises(ConversionError, match=r"fallback_budget must be a fraction of the int8 layers in \(0, 1\], "
                                              r"got 1.5"):  # fmt: skip
        convert(sensitive_keras, to="onnx", precision="int8", calibration="synthetic", output_dir=tmp_path / "x",
                fallback_budget=1.5)  # fmt: skip
    r = cli("convert", str(sensitive_keras), "--to", "onnx", "--precision", "int8", "--calib", "synthetic",
            "--fallback-budget", "0", "-o", str(tmp_path / "cli"))  # fmt: skip
    assert r.returncode != 0, r.stderr
    assert "--fallback-budget must be a fraction of the int8 layers in (0, 1], got 0 (e.g. 0.25); --no-fallback " \
           "turns the fallback off" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "cli").exists()


def test_a_tool_failing_on_a_fallback_round_keeps_the_closest_artifact(sensitive_keras, tmp_path, monkeypatch):
    """The quantizer refuses the mixed model of round 1: plain int8 (round 0, the closest so far) is the artifact,
    with its own failure and figures, and the round's error is recorded; no traceback, no half-written file."""
    import converters.quantizers as quantizers
    import edge_sdk as es

    real = quantizers.quantize

    def refuse_mixed(*args, **kwargs):
        if kwargs.get("exclude"):
            raise ConversionError("quantizer refused the mixed model (test)")
        return real(*args, **kwargs)

    monkeypatch.setattr(quantizers, "quantize", refuse_mixed)
    with pytest.raises(ValidationFailedError, match=r"sensitive_int8.onnx: output '.*': top-1 agreement"):
        convert(sensitive_keras, to="onnx", precision="int8", calibration="synthetic", output_dir=tmp_path)
    art = json.loads((tmp_path / "manifest.json").read_text())["artifacts"][0]
    fb = art["fallback"]
    assert fb["kept_round"] == 0 and fb["kept"] == [] and fb["passed"] is False
    assert fb["rounds"] == [{"round": 1, "added": fb["rounds"][0]["added"],
                             "error": "quantizer refused the mixed model (test)"}]  # fmt: skip
    assert [m["cosine"] for m in art["metrics"]] == [m["cosine"] for m in fb["plain_int8_metrics"]]
    with es.load(tmp_path / "sensitive_int8.onnx") as model:  # the plain artifact, whole
        assert model.inputs


def test_fallback_slower_than_fp32_is_said(sensitive_keras, tmp_path, monkeypatch, caplog):
    """The artifact meets its tolerance, but with layers float it is no faster than fp32: the user is told (the
    latency figures are fixed here; their measurement is the benchmark's business)."""
    import logging

    from converters.quantizers import fallback

    fixed = {"backend": "onnxruntime", "runs": 30, "ratio_plain": 0.71, "ratio_fallback": 1.12}
    monkeypatch.setattr(fallback, "latency_cost", lambda *a, **k: dict(fixed))
    with caplog.at_level(logging.WARNING, logger="edge_sdk"):
        result = convert(sensitive_keras, to="onnx", precision="int8", calibration="synthetic", output_dir=tmp_path)
    assert result.passed and result.artifacts[0].fallback["latency"]["ratio_fallback"] == 1.12
    assert "runs at 1.12x the fp32 latency on this machine (plain int8: 0.71x): fp16 or fp32 may serve better" in (
        caplog.text)


def test_scheme_follows_the_isa(sensitive_keras, tmp_path):
    """x86 without VNNI: u8 activations and 7-bit weights (reduce_range); Arm: s8 activations, full 8-bit weights."""
    import onnx
    from onnx import numpy_helper

    def weights_and_activation_type(isa: str) -> tuple[int, int]:
        result = convert(sensitive_keras, to="onnx", precision="int8", calibration="synthetic", target_isa=isa,
                         output_dir=tmp_path / isa, fallback=False, allow_degraded=True)  # fmt: skip
        art = result.artifact("onnx", "int8")
        assert art.isa["isa"] == isa and art.isa["detected"] is False
        graph = onnx.load(str(art.path)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        weights = max(int(np.abs(v).max()) for k, v in inits.items() if k.endswith("_quantized") and v.ndim == 4)
        q = next(n for n in graph.node if n.op_type == "QuantizeLinear")
        return weights, graph.initializer[[i.name for i in graph.initializer].index(q.input[2])].data_type

    assert weights_and_activation_type("x86-avx2") == (64, onnx.TensorProto.UINT8)  # 7 bits: -64..64
    assert weights_and_activation_type("arm64-dotprod") == (127, onnx.TensorProto.INT8)
    assert scheme_for("x86-vnni").onnx == "u8s8" and scheme_for("x86-avx2").openvino_overflow_fix == "enable"
    assert scheme_for().detected and scheme_for().isa in ISAS
    with pytest.raises(ConversionError, match=r"unknown target ISA 'sparc'; use one of x86-avx2, .*arm64-dotprod"):
        scheme_for("sparc")


@pytest.mark.slow
def test_fallback_on_a_tflite_source_uses_ai_edge_quantizer_float_ops(sensitive_keras, tmp_path):
    """A .tflite source is re-quantized by ai-edge-quantizer: the fallback keeps the op float with a NO_QUANTIZE
    recipe entry matched on the op's scope."""
    fp32 = convert(sensitive_keras, to="tflite", precision="fp32", output_dir=tmp_path / "f").artifact("tflite", "fp32")
    result = convert(fp32.path, to="tflite", precision="int8", calibration="synthetic", output_dir=tmp_path / "q")
    a = result.artifact("tflite", "int8")
    assert result.passed and "ai-edge-quantizer" in a.route, a.route
    assert a.fallback["plain_int8_metrics"][0]["top1_agreement"] < 0.9 and a.fallback["passed"]
    assert len(a.fallback["kept"]) == 1 and "sensitive" in a.fallback["kept"][0]


def test_unnamed_onnx_nodes_are_really_quantized_and_excludable(tmp_path):
    """Exporters often leave node names empty: excluding '' kept EVERY node float (an fp32 file named int8 that
    passed validation). Nodes get names before quantization, and a static int8 file without int8 ops is refused."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (16, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (8, 16, 1, 1)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["y"])]  # fmt: skip  (no names, as torch's old exporter wrote)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])
    graph = helper.make_graph(nodes, "unnamed", [x], [y], [w1, w2])
    src = tmp_path / "unnamed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    result = convert(src, to=["onnx"], precision=["int8"], calibration=rng.random((20, 1, 3, 16, 16), np.float32),
                     output_dir=tmp_path / "o", allow_degraded=True, progress=False)  # fmt: skip
    ops = [n.op_type for n in onnx.load(str(result.artifacts[0].path)).graph.node]
    assert ops.count("DequantizeLinear") >= 4, ops  # both convs' weights and inputs really are int8

    from converters.quantizers.onnx_quant import _check_quantized

    with pytest.raises(ConversionError, match=r"quantized no op .* it would be an fp32 model named int8"):
        _check_quantized(src)
