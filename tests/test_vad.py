"""Voice activity detection: the segmenter's rules, and real Silero VAD on real (espeak-ng) speech
placed at known times in silence + noise: onsets and offsets within 0.3 s."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import edge_sdk as es
from edge_sdk.audio import read_wav, write_wav
from edge_sdk.audio.default_media import default_speech_wav, make_speech_clip
from edge_sdk.errors import OutputMismatchError, TaskError, ToolMissingError, ZooError
from edge_sdk.postprocess.vad import SPEECH_END, SPEECH_START, SpeechSegmenter, VoiceActivityDetector

TOLERANCE_S = 0.3
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (make sysdeps)")


# -- the segmenter alone ----------------------------------------------------------------------
def _run(probs: list[float], win: float = 0.032, **kw: float) -> list[tuple[float, float]]:
    seg = SpeechSegmenter(speech_pad_ms=0, **kw)
    for i, p in enumerate(probs):
        seg.update(p, i * win, (i + 1) * win)
    seg.finish()
    return [(round(s.start, 3), round(s.end, 3)) for s in seg.segments]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "probs,expected",
    [
        ([0.0] * 10 + [0.9] * 20 + [0.0] * 10, [(0.32, 0.96)]),
        ([0.0] * 10 + [0.9] * 5 + [0.0] * 10, []),  # 160 ms < min_speech 250 ms: a blip
        ([0.9] * 20 + [0.0] * 2 + [0.9] * 20 + [0.0] * 10, [(0.0, 1.344)]),  # 64 ms pause < min_silence
        ([0.9] * 20 + [0.0] * 5 + [0.9] * 20 + [0.0] * 10, [(0.0, 0.64), (0.8, 1.44)]),  # 160 ms pause splits
        ([0.9] * 20 + [0.45] * 20 + [0.0] * 10, [(0.0, 1.28)]),  # hysteresis: 0.45 > 0.35 keeps speech going
        ([0.0] * 5 + [0.9] * 20, [(0.16, 0.8)]),  # speech at the end of the stream is closed by finish()
    ],
)
def test_segmenter_rules(probs, expected):
    assert _run(probs) == expected


def test_segmenter_events_and_padding():
    seg = SpeechSegmenter(speech_pad_ms=30)
    events = []
    for i, p in enumerate([0.0] * 10 + [0.9] * 20 + [0.0] * 10):
        events += seg.update(p, i * 0.032, (i + 1) * 0.032)
    assert [e["event"] for e in events] == [SPEECH_START, SPEECH_END]
    assert events[0]["t_s"] == pytest.approx(0.32 - 0.03) and events[1]["t_s"] == pytest.approx(0.96 + 0.03)
    assert events[1]["segment"] == {"start_s": 0.29, "end_s": 0.99}


@pytest.mark.parametrize(
    "kw,match",
    [({"threshold": 1.5}, "threshold must be in"), ({"threshold": 0.5, "neg_threshold": 0.7}, "neg_threshold"),
     ({"min_silence_ms": -1}, "min_silence_ms must be >= 0")],
)  # fmt: skip
def test_segmenter_rejects_bad_options(kw, match):
    with pytest.raises(TaskError, match=match):
        SpeechSegmenter(**kw)


# -- real model, real speech --------------------------------------------------------------------
@pytest.fixture(scope="session")
def silero():
    from converters import zoo

    try:
        path = zoo.get("silero-vad").materialize()
    except ZooError as e:
        pytest.skip(str(e))
    model = es.load(path)
    yield model
    model.close()


@pytest.fixture(scope="session")
def speech_clip():
    """Two utterances at 0.8 s and 5.0 s in white noise at -46 dBFS, 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (make sysdeps, or apt-get install espeak-ng)")
    utts = (("Please turn off the lights in the kitchen.", 0.8), ("Tomorrow it will rain all day long.", 5.0))
    return make_speech_clip(utts, noise_rms=0.005, tail_s=1.5, seed=3)


def _errors(found, truth):
    assert len(found) == len(truth), f"found {[s.to_dict() for s in found]}, placed {truth}"
    return [(s.start - a, s.end - b) for s, (a, b) in zip(found, truth)]


def test_vad_finds_spoken_utterances_within_0_3_s(silero, speech_clip):
    clip, truth = speech_clip
    found = VoiceActivityDetector(silero).detect(clip)
    errs = _errors(found, truth)
    print("onset/offset errors (s):", [(round(a, 3), round(b, 3)) for a, b in errs])
    assert all(abs(a) <= TOLERANCE_S and abs(b) <= TOLERANCE_S for a, b in errs)


def test_vad_in_louder_noise(silero, speech_clip):
    clip, truth = speech_clip
    noisy = clip + np.random.default_rng(9).standard_normal(len(clip)).astype(np.float32) * 0.02  # ~ -34 dBFS
    errs = _errors(VoiceActivityDetector(silero).detect(noisy), truth)
    assert all(abs(a) <= TOLERANCE_S and abs(b) <= TOLERANCE_S for a, b in errs)


def test_vad_streaming_in_any_block_size_matches_the_whole_clip(silero, speech_clip):
    """State and the 64-sample context carry across calls: odd block sizes give the same numbers."""
    clip, _ = speech_clip
    x = clip[:48000]
    vad = VoiceActivityDetector(silero)
    whole = vad.probabilities(x)
    vad.reset()
    rng = np.random.default_rng(0)
    probs, a = [], 0
    while a < len(x):
        n = int(rng.integers(1, 2000))
        out = vad._run_block(silero, x[a : a + n], None)
        probs += out["probs"].tolist()
        a += n
    np.testing.assert_allclose(probs, whole[: len(probs)], atol=1e-5)
    assert len(probs) >= len(whole) - 1


@pytest.mark.parametrize("signal", ["silence", "noise", "tone"])
def test_vad_finds_no_speech_in_synthetic_signals(silero, signal):
    frames = list(es.open_source(f"synthetic-audio:{signal}?duration=3&realtime=false&amplitude=0.05"))
    x = np.concatenate([f.data for f in frames])
    assert VoiceActivityDetector(silero).detect(x) == []


def test_vad_pipeline_on_a_wav_gives_speech_events(silero, speech_clip, tmp_path):
    clip, truth = speech_clip
    wav = write_wav(tmp_path / "speech.wav", clip, 16000)
    events: list[dict] = []
    with es.Pipeline(str(wav), silero, task="vad", sinks=[str(tmp_path / "ev.jsonl")], metrics_every=0,
                     on_result=lambda e: events.extend(e["events"])) as p:  # fmt: skip
        metrics = p.run(duration=30)
    starts = [e["t_s"] for e in events if e["event"] == SPEECH_START]
    ends = [e["t_s"] for e in events if e["event"] == SPEECH_END]
    assert len(starts) == len(ends) == len(truth)
    assert all(abs(s - a) <= TOLERANCE_S and abs(e - b) <= TOLERANCE_S for s, e, (a, b) in zip(starts, ends, truth))
    assert metrics["frames"]["dropped"] == 0 and metrics["results"] == len(clip) // 512 + 1
    lines = [json.loads(ln) for ln in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert any(ev.get("events") for ev in lines if ev.get("type") == "result")


def test_vad_pipeline_real_time_wav_keeps_every_window(silero, tmp_path):
    """A WAV played on a real-time clock (4x) is live, yet no window is dropped between stages."""
    wav = write_wav(tmp_path / "n.wav", np.random.default_rng(0).standard_normal(16000) * 0.01, 16000)
    src = es.open_source(f"wav:{wav}?mode=realtime&speed=4")
    assert src.is_live
    pipe = es.Pipeline(src, silero, task="vad", metrics_every=0)
    metrics = pipe.run(duration=10)
    assert metrics["results"] == 32 and metrics["frames"]["dropped"] == 0 and pipe.post.gaps == 0


def test_vad_pipeline_with_a_model_slower_than_real_time_overflows_and_stays_alive(silero):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from realtime_helpers import SlowModel

    slow = SlowModel(silero, 0.08)  # 80 ms per 32 ms window: 2.5x slower than the microphone
    src = es.open_source("synthetic-audio:noise?duration=2&amplitude=0.01&buffer_s=0.25")
    pipe = es.Pipeline(src, slow, task="vad", metrics_every=0, warmup=0)
    metrics = pipe.run(duration=10)
    assert 5 <= metrics["results"] < 62  # it kept producing results, fewer than the 63 windows
    assert metrics["frames"]["overflows"] > 0  # audio is lost in the ring buffer, and counted there...
    assert metrics["frames"]["dropped_by"]["pre_queue"] == 0  # ...never between stages (drop_policy "block")
    assert pipe.post.gaps > 0  # the VAD saw the gaps and re-synchronised its framing


def test_vad_rejects_a_model_of_another_kind(mlp_onnx):
    with es.load(mlp_onnx) as m, pytest.raises(OutputMismatchError, match="task 'vad' needs a Silero-VAD-style"):
        VoiceActivityDetector(m)


def test_vad_rejects_audio_at_another_rate(silero):
    vad = VoiceActivityDetector(silero)
    with pytest.raises(TaskError, match="8000 Hz audio but the model needs 16000 Hz.*sample_rate=16000"):
        vad.prepare(SimpleNamespace(data=np.zeros(512, np.float32), meta={"sample_rate": 8000}))
    with pytest.raises(TaskError, match="needs an audio source"):
        vad.prepare(SimpleNamespace(data=np.zeros((4, 4, 3), np.uint8), meta={}))


# -- the default speech clip ----------------------------------------------------------------------
@needs_espeak
def test_default_speech_wav_is_made_once_and_reused(tmp_path):
    path, segs = default_speech_wav(tmp_path)
    x, sr = read_wav(path)
    assert sr == 16000 and len(segs) == 2 and all(0 < a < b <= len(x) / sr for a, b in segs)
    mtime = path.stat().st_mtime_ns
    assert default_speech_wav(tmp_path) == (path, segs) and path.stat().st_mtime_ns == mtime


def test_default_speech_without_espeak_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolMissingError, match="'espeak-ng' is not installed.*apt-get install espeak-ng"):
        default_speech_wav(tmp_path)


@needs_espeak
def test_cli_run_vad_on_the_default_speech(cli, tmp_path, silero):
    path, segs = default_speech_wav(tmp_path)
    r = cli("run", "zoo:silero-vad", "--source", str(path), "--sink", str(tmp_path / "ev.jsonl"), "--json")
    assert r.returncode == 0, r.stderr
    events = [e for ln in (tmp_path / "ev.jsonl").read_text().splitlines()
              for e in json.loads(ln).get("events", [])]  # fmt: skip
    segments = [e["segment"] for e in events if e["event"] == SPEECH_END]
    assert len(segments) == len(segs)
    for s, (a, b) in zip(segments, segs):
        assert abs(s["start_s"] - a) <= TOLERANCE_S and abs(s["end_s"] - b) <= TOLERANCE_S


def test_vad_on_a_shared_model_with_two_lanes_keeps_its_state(silero, speech_clip, tmp_path):
    """A stateful audio model runs one call at a time per stream even where the shared model has two lanes."""
    from edge_sdk.multistream import BatchingModel, MultiStream

    clip, truth = speech_clip
    wav = write_wav(tmp_path / "speech.wav", clip, 16000)
    sink = tmp_path / "ev.jsonl"
    with BatchingModel(silero, lanes=2) as bm:
        ms = MultiStream({"mic": str(wav)}, bm, task="vad", sinks=[str(sink)], metrics_every=0)
        assert ms.pipelines["mic"].inflight == 1  # not ceil(2 lanes / 1 stream)
        ms.run()
    lines = [json.loads(ln) for ln in sink.read_text().splitlines()]
    events = [ev for x in lines if x.get("type") == "result" for ev in x.get("events") or []]
    starts = [e["t_s"] for e in events if e["event"] == SPEECH_START]
    ends = [e["t_s"] for e in events if e["event"] == SPEECH_END]
    assert len(starts) == len(ends) == len(truth)
    assert all(abs(s - a) <= TOLERANCE_S and abs(e - b) <= TOLERANCE_S for s, e, (a, b) in zip(starts, ends, truth))
