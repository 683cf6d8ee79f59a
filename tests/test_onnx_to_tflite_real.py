"""ONNX -> TFLite on real graphs onnx2tf gets wrong unaided (Silero VAD: waveform Unsqueeze -> Conv1d,
multi-axis slices, an LSTM with a 3-D state), the graph preparation that fixes them, and stateful
calibration/validation (state carried window to window, never zeros or random)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge_sdk as es
from converters import convert
from converters.calibration import load_calibration
from converters.layout import adapt_feeds
from converters.routes import onnx2tf_prep
from converters.sources import SourceModel
from converters.stateful import roll_state, state_links
from edge_sdk.tensor_spec import TensorSpec


def _needs_onnx2tf() -> None:
    from converters.routes.onnx_routes import onnx2tf_executable

    try:
        onnx2tf_executable()
    except Exception as e:  # the Makefile's test target installs it
        pytest.skip(str(e))


def _silero() -> Path:
    from converters import zoo
    from edge_sdk.errors import ZooError

    try:
        return zoo.get("silero-vad").materialize()
    except ZooError as e:
        pytest.skip(str(e))


def _audio_net(path: Path) -> Path:
    """waveform (1, 64) -> Unsqueeze -> Conv1d(1->4, k8, s4) -> Squeeze-free ReduceMean; state (2, 1, 4) + 1."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 1, 8)).astype(np.float32), "w")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    nodes = [
        helper.make_node("Unsqueeze", ["wave", "axes"], ["x3"], name="unsq"),
        helper.make_node("Conv", ["x3", "w"], ["feat"], strides=[4], name="conv"),
        helper.make_node("ReduceMean", ["feat"], ["score"], axes=[2], keepdims=0, name="mean"),
        helper.make_node("Add", ["state", "one"], ["stateN"], name="step"),
    ]
    graph = helper.make_graph(
        nodes, "audio", [helper.make_tensor_value_info("wave", TensorProto.FLOAT, [1, 64]),
                         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 4])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, 1, 4])], [w, axes, one],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_static_squeezes_become_reshapes_and_state_inputs_keep_their_layout(tmp_path):
    src = _audio_net(tmp_path / "a.onnx")
    assert onnx2tf_prep.squeezes_to_reshapes(src, tmp_path / "b.onnx") == ["unsq"]
    model = onnx.load(str(tmp_path / "b.onnx"))
    assert [n.op_type for n in model.graph.node][:2] == ["Reshape", "Conv"]
    import onnxruntime as ort

    x = {"wave": np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32),
         "state": np.zeros((2, 1, 4), np.float32)}  # fmt: skip
    before = ort.InferenceSession(str(src)).run(None, x)
    after = ort.InferenceSession(str(tmp_path / "b.onnx")).run(None, x)
    np.testing.assert_array_equal(before[0], after[0])
    # 'state' is read by Add only (not a feature map): onnx2tf must keep it as is; 'wave' is 2-D anyway
    assert onnx2tf_prep.layout_kept_inputs(tmp_path / "b.onnx") == ["state"]
    assert not onnx2tf_prep.unrollable_rnns(tmp_path / "b.onnx")  # no recurrent op


def test_feeds_are_matched_by_name_when_a_converter_reorders_inputs():
    specs = [TensorSpec("serving_default_state:0", (2, 1, 4), np.dtype("float32")),
             TensorSpec("serving_default_wave:0", (1, 64), np.dtype("float32"))]  # fmt: skip
    wave, state = np.ones((1, 64), np.float32), np.zeros((2, 1, 4), np.float32)
    fed = adapt_feeds([wave, state], specs, ["wave", "state"])
    assert [f.shape for f in fed] == [(2, 1, 4), (1, 64)]
    # names that do not match (a PyTorch program's input_0 / input_1): by shape, when each input fits one feed
    assert [f.shape for f in adapt_feeds([wave, state], specs, ["input_0", "input_1"])] == [(2, 1, 4), (1, 64)]
    image = np.zeros((1, 3, 8, 8), np.float32)
    nhwc = [TensorSpec("serving_default_y:0", (None, 5), np.dtype("float32")),
            TensorSpec("serving_default_x:0", (None, 8, 8, 3), np.dtype("float32"))]  # fmt: skip
    fed = adapt_feeds([image, np.ones((1, 5), np.float32)], nhwc, ["input_0", "input_1"])
    assert [f.shape for f in fed] == [(1, 5), (1, 8, 8, 3)]  # and the image made channels-last
    # shapes that do not tell them apart: position, as before
    same = [TensorSpec("b", (1, 4), np.dtype("float32")), TensorSpec("a", (1, 4), np.dtype("float32"))]
    one, two = np.ones((1, 4), np.float32), np.full((1, 4), 2, np.float32)
    assert [float(f[0, 0]) for f in adapt_feeds([one, two], same, ["x", "y"])] == [1.0, 2.0]


def test_state_is_carried_through_calibration_windows_and_reset_per_recording():
    def run(feeds):
        wave, state = feeds
        return [wave.sum(keepdims=True).reshape(1, 1), state + 1.0]

    src = SourceModel(
        kind="onnx", inputs=[TensorSpec("input", (1, 8), np.dtype("float32")),
                             TensorSpec("state", (2, 1, 4), np.dtype("float32"))],
        run=run, output_names=["output", "stateN"], sha256="x",
    )  # fmt: skip
    assert state_links(src, run([np.zeros((1, 8), np.float32), np.zeros((2, 1, 4), np.float32)])) == [(1, 1)]
    samples = [[np.zeros((1, 8), np.float32), np.zeros((2, 1, 4), np.float32)] for _ in range(5)]
    rolled = roll_state(src, samples, [0, 0, 0, 1, 1])
    assert [float(s[1].mean()) for s in rolled] == [0.0, 1.0, 2.0, 0.0, 1.0]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (make sysdeps)")
def test_wav_calibration_is_resampled_and_framed_by_the_audio_spec(tmp_path):
    from edge_sdk.audio import write_wav
    from edge_sdk.audio.default_media import speak
    from edge_sdk.preprocess import AudioSpec

    folder = tmp_path / "wavs"
    folder.mkdir()
    write_wav(folder / "a.wav", speak("calibration speech", sample_rate=22050), 22050)
    write_wav(folder / "b.wav", speak("more speech here", sample_rate=22050), 22050)
    inputs = [TensorSpec("input", (1, 576), np.dtype("float32")), TensorSpec("state", (2, 1, 128), np.dtype("float32"))]
    cs = load_calibration(folder, inputs, preprocess=AudioSpec(16000, 512, 64))
    assert cs.kind == "wav" and cs.input_names == ["input", "state"]
    assert sorted(set(cs.groups)) == [0, 1]
    first, second = cs.samples[0][0][0], cs.samples[1][0][0]
    np.testing.assert_array_equal(first[512:], second[:64])  # each window starts with the previous 64 samples
    seconds = sum(1 for g in cs.groups if g == 0) * 512 / 16000
    assert 0.5 < seconds < 3.0  # resampled to 16 kHz: a short phrase, not 22050/16000 times longer


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (make sysdeps)")
def test_silero_vad_to_tflite_detects_the_same_speech_as_the_original(tmp_path):
    _needs_onnx2tf()
    from edge_sdk.audio.default_media import make_speech_clip
    from edge_sdk.postprocess.vad import VoiceActivityDetector

    result = convert("zoo:silero-vad", to="tflite", precision=["fp32", "fp16"], output_dir=tmp_path / "o")
    assert result.passed, [a.failures for a in result.artifacts]
    fp32 = result.artifact("tflite", "fp32")
    assert min(m.cosine for m in fp32.metrics) > 0.9999
    import json

    validation = json.loads(result.manifest_path.read_text())["validation"]
    assert "speech" in validation["origin"] and not validation["synthetic"]  # real speech, state carried
    with es.load(fp32.path) as m:
        assert sorted(tuple(s.shape) for s in m.outputs) == [(1, 1), (2, 1, 128)]  # state comes back as it went in
    clip, truth = make_speech_clip((("Turn left at the next corner.", 0.7),), noise_rms=0.005, tail_s=1.0, seed=5)
    with es.load(_silero()) as original, es.load(fp32.path) as converted:
        want = VoiceActivityDetector(original).detect(clip)
        got = VoiceActivityDetector(converted).detect(clip)
    assert len(want) == len(got) == 1
    assert abs(got[0].start - want[0].start) < 0.05 and abs(got[0].end - want[0].end) < 0.05


def _lstm_net(path: Path, steps: int, batch_first: bool = False) -> Path:
    """x (steps, 1, 4) [or (1, steps, 4) batch-first] -> LSTM(hidden 3) -> Y."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((1, 12, 4)).astype(np.float32), "W")
    r = numpy_helper.from_array(rng.standard_normal((1, 12, 3)).astype(np.float32), "R")
    shape = [1, steps, 4] if batch_first else [steps, 1, 4]
    node = helper.make_node("LSTM", ["x", "W", "R"], ["Y"], hidden_size=3, layout=int(batch_first))
    graph = helper.make_graph([node], "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], [w, r])  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))
    return path


def test_only_short_static_recurrences_are_unrolled(tmp_path):
    assert onnx2tf_prep.unrollable_rnns(_lstm_net(tmp_path / "a.onnx", 4))
    assert not onnx2tf_prep.unrollable_rnns(_lstm_net(tmp_path / "b.onnx", 500))  # too long to unroll
    # batch-first: the step count is dim 1, not the batch size (1) in dim 0
    assert not onnx2tf_prep.unrollable_rnns(_lstm_net(tmp_path / "c.onnx", 500, batch_first=True))


def test_onnx_output_names_and_size_one_axis_moves_are_restored(tmp_path):
    """onnx2tf's output_0/output_1 get the ONNX names back; (1, 2, 8) -> (2, 1, 8) is undone, a real permutation
    of a feature map is not touched."""
    import tensorflow as tf

    class Fake(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((2, 1, 8), tf.float32, name="state")])
        def serve(self, state):
            return {"output_0": tf.reshape(state, (1, 2, 8)) + 1.0, "output_1": tf.zeros((1, 4, 4, 3))}

    fake = Fake()
    saved = tmp_path / "onnx2tf"
    tf.saved_model.save(fake, str(saved), signatures={"serving_default": fake.serve.get_concrete_function()})
    outputs = [helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, 1, 8]),
               helper.make_tensor_value_info("heat", TensorProto.FLOAT, [1, 3, 4, 4])]  # fmt: skip
    graph = helper.make_graph([], "g", [helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 8])], outputs)
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    restored = onnx2tf_prep.restore_onnx_outputs(saved, tmp_path / "m.onnx", tmp_path / "restored")
    fn = tf.saved_model.load(str(restored)).signatures["serving_default"]
    out = fn(state=tf.ones((2, 1, 8)))
    assert sorted(out) == ["heat", "stateN"]
    assert out["stateN"].shape == (2, 1, 8) and float(out["stateN"][0, 0, 0]) == 2.0
    assert out["heat"].shape == (1, 4, 4, 3)  # NHWC stays as onnx2tf made it
    # outputs that cannot be matched one to one: the SavedModel is returned untouched
    graph.output.pop()
    onnx.save(helper.make_model(graph), str(tmp_path / "m1.onnx"))
    assert onnx2tf_prep.restore_onnx_outputs(saved, tmp_path / "m1.onnx", tmp_path / "r1") == saved


def _pooled_model(path: Path, activation: str, dtype: type = np.float32) -> Path:
    """x[1,3,16,16] -> Conv -> ``activation`` -> MaxPool(3, stride 2, pads 1) -> mean -> logits[1,8]."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(dtype), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(dtype), "b")]  # fmt: skip
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    act = [] if activation == "none" else [helper.make_node(activation, ["c"], ["a"], name="act")]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        *act,
        helper.make_node("MaxPool", ["a" if act else "c"], ["p"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["p"], ["logits"], name="mean", axes=[2, 3], keepdims=0),
    ]  # fmt: skip
    graph = helper.make_graph(nodes, "pooled", [helper.make_tensor_value_info("x", elem, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", elem, [1, 8])], inits)  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_bounded_max_pools_are_padded_with_their_inputs_least_value(tmp_path):
    import onnxruntime as ort

    for activation, bound, dtype in (("Relu", 0.0, np.float32), ("HardSwish", -0.375, np.float32),
                                     ("Relu", 0.0, np.float16)):  # fmt: skip  # fp16: the Pad value is fp16 too
        x = np.random.default_rng(0).normal(0, 1, (1, 3, 16, 16)).astype(dtype)
        src = _pooled_model(tmp_path / f"{activation}_{dtype.__name__}.onnx", activation, dtype)
        dst = tmp_path / f"{activation}_{dtype.__name__}_bounded.onnx"
        assert onnx2tf_prep.bounded_max_pools(src, dst) == ["pool"]
        graph = onnx.load(str(dst)).graph
        pad = next(n for n in graph.node if n.op_type == "Pad")
        value = next(numpy_helper.to_array(t) for t in graph.initializer if t.name == pad.input[2])
        assert float(value) == bound and value.dtype == dtype
        pool = next(n for n in graph.node if n.op_type == "MaxPool")
        assert pool.input == pad.output and not any(a.name == "pads" for a in pool.attribute)
        run = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
               for p in (src, dst)]  # fmt: skip
        assert np.array_equal(run[0], run[1]), activation  # exact, not approximately equal
    unbounded = _pooled_model(tmp_path / "none.onnx", "none")  # a Conv can write anything: left as it was
    assert onnx2tf_prep.bounded_max_pools(unbounded, tmp_path / "none_out.onnx") == []


def test_static_int8_of_a_padded_max_pool_loads_and_agrees(tmp_path):
    """onnx2tf pads MaxPool with -3.4e38; calibrated into int8 that gave ResNet-18 a stem scale of 1.3e36 and a
    file LiteRT could not prepare ("failed to create XNNPACK runtime")."""
    _needs_onnx2tf()
    src = _pooled_model(tmp_path / "pooled.onnx", "Relu")
    result = convert(src, to="tflite", precision="int8", calibration="synthetic", output_dir=tmp_path / "out",
                     fallback=False)  # fmt: skip
    art = result.artifact("tflite", "int8")
    assert art.passed, art.failures
    from converters.quantizers.tflite_quant import _interpreter

    interpreter = _interpreter(art.path)  # every tensor's scale, the pool's padded input included
    scales = [np.asarray(d["quantization_parameters"]["scales"]) for d in interpreter.get_tensor_details()]
    assert any(s.size for s in scales) and all(np.all(s < 1e3) for s in scales if s.size)


def test_a_channels_first_1d_input_is_fed_channels_last_to_tflite(tmp_path):
    """A Conv1d model (input [1, 8, 50], as Whisper's mel frames): onnx2tf moves the channels last, and
    calibration and validation feed the artifact the transposed data (it was 'expects shape [1,50,8], got
    [1,8,50]'); the output keeps the source's layout."""
    _needs_onnx2tf()
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (16, 8, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, (16,)).astype(np.float32), "b")]  # fmt: skip
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]  # fmt: skip
    graph = helper.make_graph(nodes, "conv1d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 50])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 50])], inits)  # fmt: skip
    src = tmp_path / "conv1d.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(src))
    result = convert(src, to="tflite", precision=["fp32", "int8"], calibration="synthetic",
                     output_dir=tmp_path / "out")  # fmt: skip
    for art in result.artifacts:
        assert art.passed and art.metrics[0].cosine > 0.97, (art.precision, art.failures)
    with es.load(result.artifact("tflite", "fp32").path) as model:
        assert list(model.inputs[0].shape) == [1, 50, 8]  # channels last in the file
