"""Audio sources: synthetic, WAV file, microphone (through a fake PortAudio stream; a real one is
``hardware``), overflow and slow-producer behaviour, and the typed errors."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge_sdk.audio import read_wav, write_wav
from edge_sdk.errors import AudioFileError, SourceError
from edge_sdk.sources import open_source, resolve
from edge_sdk.sources.audio_mic import MicSource


@pytest.mark.parametrize(
    "uri,kind,target,opts",
    [
        ("mic:", "mic", "", {}),
        ("mic:2?sample_rate=16000", "mic", "2", {"sample_rate": 16000}),
        ("synthetic-audio:noise?duration=1", "synthetic-audio", "noise", {"duration": 1}),
        ("wav:speech.wav?mode=realtime", "wav", "speech.wav", {"mode": "realtime"}),
    ],
)
def test_audio_uris_resolve(uri, kind, target, opts):
    assert resolve(uri) == (kind, target, opts)


def test_plain_wav_path_opens_the_wav_source(tmp_path):
    p = write_wav(tmp_path / "a.wav", np.zeros(1000), 16000)
    assert resolve(str(p))[0] == "wav"
    assert type(open_source(str(p))).__name__ == "WavFileSource"


def test_synthetic_tone_fast_is_exact_and_ends():
    with open_source("synthetic-audio:tone?freq=1000&amplitude=0.5&duration=1&realtime=false") as src:
        frames = list(src)
    assert len(frames) == 32 and all(f.data.shape == (512,) and f.data.dtype == np.float32 for f in frames)
    x = np.concatenate([f.data for f in frames])[:16000]
    np.testing.assert_allclose(x, 0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000), atol=1e-6)
    assert [f.meta["pos"] for f in frames[:3]] == [0, 512, 1024] and frames[-1].meta.get("last")
    assert src.overflows == 0 and src.dropped == 0


def test_synthetic_realtime_runs_at_real_time():
    t = time.monotonic()
    with open_source("synthetic-audio:silence?duration=0.5") as src:
        n = sum(1 for _ in src)
    assert n == 16 and 0.4 < time.monotonic() - t < 1.5


def test_wav_source_resamples_to_16k(tmp_path):
    sr = 22050
    p = write_wav(tmp_path / "tone.wav", 0.3 * np.sin(2 * np.pi * 500 * np.arange(sr) / sr), sr)
    with open_source(str(p)) as src:
        x = np.concatenate([f.data for f in src])
    assert len(x) == 16384  # 16000 samples in 32 windows, the last zero-padded
    ref = 0.3 * np.sin(2 * np.pi * 500 * np.arange(16000) / 16000)
    assert np.abs(x[200:15800] - ref[200:15800]).max() < 2e-3


def test_consumer_slower_than_the_producer_counts_overflows_and_keeps_going(tmp_path):
    """A real-time WAV with a 0.2 s ring read by a consumer 3x slower than real time."""
    p = write_wav(tmp_path / "noise.wav", 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    frames = []
    with open_source(f"wav:{p}?mode=realtime&buffer_s=0.2") as src:
        for f in src:
            frames.append(f)
            time.sleep(3 * 512 / 16000)
    assert src.overflows > 0 and src.lost_samples > 0 and src.dropped > 0
    assert 5 < len(frames) < 31  # part of the second was lost, the rest came through in order
    pos = [f.meta["pos"] for f in frames]
    assert pos == sorted(pos) and max(np.diff(pos)) > 512  # the gaps show in the stream positions
    assert src.stats()["overflows"] == src.overflows


def test_producer_slower_than_real_time_read_times_out_cleanly():
    """Audio arriving at half real time: read(timeout) returns None on time, never hangs."""
    with open_source("synthetic-audio:tone?speed=0.25&duration=1&block_ms=100") as src:
        got, nones, worst = 0, 0, 0.0
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            t = time.monotonic()
            f = src.read(timeout=0.05)
            worst = max(worst, time.monotonic() - t)
            if f is None:
                nones += 1
            else:
                got += 1
    assert nones > 0 and 0 < got < 10
    assert worst < 0.5
    assert src.overflows == 0


def test_silent_live_source_reports_disconnected():
    src = open_source("synthetic-audio:tone?speed=0.02&block_ms=200&read_timeout=0.2")
    with src:
        t = time.monotonic()
        while time.monotonic() - t < 0.8:
            src.read(timeout=0.1)
    kinds = [src.events.get_nowait().kind.value for _ in range(src.events.qsize())]
    assert "DISCONNECTED" in kinds


@pytest.mark.parametrize(
    "uri,opts,err,match",
    [
        ("wav:/nonexistent/x.wav", {}, AudioFileError, r"/nonexistent/x\.wav does not exist"),
        ("synthetic-audio:chirp", {}, SourceError, "signal must be one of tone, noise, silence"),
        ("synthetic-audio:tone", {"freq": 9000}, SourceError, r"freq must be in \(0, 8000\)"),
        ("synthetic-audio:", {"window": 0}, SourceError, "window must be a positive integer"),
        ("synthetic-audio:", {"bogus": 1}, SourceError, "bad option"),
    ],
)
def test_audio_source_errors(uri, opts, err, match):
    with pytest.raises(err, match=match):
        open_source(uri, **opts).start()


def test_not_a_wav_named_in_the_error(tmp_path):
    p = tmp_path / "song.wav"
    p.write_bytes(b"\xff\xfb\x90 mp3 frame")
    with pytest.raises(AudioFileError, match=r"song\.wav is not a WAV file"):
        open_source(str(p)).start()


# -- microphone -------------------------------------------------------------------------------
class FakeStream:
    """Stands in for sounddevice.InputStream: ``feed`` calls the callback like PortAudio's thread."""

    def __init__(self, *, samplerate: int, channels: int, callback: Any, **kw: Any) -> None:
        self.samplerate, self.channels, self.callback, self.kw = samplerate, channels, callback, kw
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    def feed(self, block: np.ndarray, overflow: bool = False) -> None:
        self.callback(block.reshape(len(block), -1).astype(np.float32), len(block), None,
                      SimpleNamespace(input_overflow=overflow))  # fmt: skip


def fake_sounddevice(native_rate: int | None = None) -> SimpleNamespace:
    streams: list[FakeStream] = []

    def check_input_settings(**kw: Any) -> None:
        if native_rate and kw["samplerate"] != native_rate:
            raise ValueError("Invalid sample rate")

    def make(**kw: Any) -> FakeStream:
        streams.append(FakeStream(**kw))
        return streams[-1]

    def query_devices(device: Any, kind: str) -> dict[str, float]:
        return {"default_samplerate": float(native_rate or 16000)}

    return SimpleNamespace(InputStream=make, check_input_settings=check_input_settings, streams=streams,
                           query_devices=query_devices)  # fmt: skip


def test_mic_callback_only_fills_the_ring_and_reads_windows(monkeypatch):
    sd = fake_sounddevice()
    monkeypatch.setattr("edge_sdk.sources.audio_mic.import_sounddevice", lambda: sd)
    with open_source("mic:") as src:
        stream = sd.streams[0]
        assert stream.started and stream.samplerate == 16000
        stream.feed(np.arange(300, dtype=np.float32) / 1000)
        assert src.read(timeout=0.05) is None  # 300 of 512 samples: not a window yet
        stream.feed(np.arange(300, 1100, dtype=np.float32) / 1000)
        f1, f2 = src.read(timeout=0.05), src.read(timeout=0.05)
        assert f1 is not None and f2 is not None
        np.testing.assert_allclose(np.concatenate([f1.data, f2.data]), np.arange(1024) / 1000, rtol=1e-6)
        assert f2.meta["pos"] == 512 and f1.capture_ts <= f2.capture_ts <= time.monotonic()
    assert stream.closed


def test_mic_reader_too_slow_overflows_callback_never_raises(monkeypatch):
    sd = fake_sounddevice()
    monkeypatch.setattr("edge_sdk.sources.audio_mic.import_sounddevice", lambda: sd)
    with open_source("mic:", buffer_s=0.1) as src:
        stream = sd.streams[0]
        for _ in range(50):  # 50 x 20 ms = 1 s of audio into a 0.1 s ring, nobody reading
            stream.feed(np.zeros(320, np.float32))
        stream.feed(np.zeros(320, np.float32), overflow=True)  # PortAudio's own overflow flag counts too
        assert src.overflows >= 40 and src.device_overflows == 1
        f = src.read(timeout=0.1)
        assert f is not None and f.meta["pos"] > 14000  # the freshest audio, after the gap


def test_mic_resamples_when_the_device_cannot_do_16k(monkeypatch):
    sd = fake_sounddevice(native_rate=48000)
    monkeypatch.setattr("edge_sdk.sources.audio_mic.import_sounddevice", lambda: sd)
    with open_source("mic:1") as src:
        stream = sd.streams[0]
        assert stream.samplerate == 48000 and stream.kw["device"] == 1
        t = np.arange(48000) / 48000
        feeder = threading.Thread(target=lambda: [stream.feed(np.sin(2 * np.pi * 440 * t[a : a + 480]))
                                                  for a in range(0, 48000, 480)])  # fmt: skip
        feeder.start()
        frames = [src.read(timeout=1.0) for _ in range(20)]
        feeder.join()
    x = np.concatenate([f.data for f in frames])
    ref = np.sin(2 * np.pi * 440 * np.arange(len(x)) / 16000)
    assert np.abs(x[100:] - ref[100:]).max() < 1e-3


def test_mic_without_sounddevice_names_the_extra_and_portaudio(hide_module):
    code = "from edge_sdk.sources import open_source\nopen_source('mic:').start()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, **hide_module("sounddevice")})  # fmt: skip
    assert "SourceError" in r.stderr
    assert 'pip install "edge-sdk[audio]"' in r.stderr and "libportaudio2" in r.stderr


def test_mic_without_portaudio_library_is_a_typed_error(monkeypatch):
    """sounddevice raises OSError('PortAudio library not found') at import when libportaudio is absent."""

    def boom(name: str, *a: Any, **k: Any) -> Any:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *a, **k)

    import builtins

    real_import = builtins.__import__
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", boom)
    with pytest.raises(SourceError, match=r"PortAudio library cannot be loaded.*libportaudio2"):
        MicSource().start()


@pytest.mark.hardware
def test_real_microphone_gives_audio():
    try:
        import sounddevice as sd

        sd.query_devices(kind="input")
    except Exception as e:
        pytest.skip(f"no microphone / PortAudio here: {e}")
    with open_source("mic:") as src:
        frames = [src.read(timeout=2.0) for _ in range(10)]
    assert all(f is not None and f.data.shape == (512,) for f in frames)


def test_wav_round_trip_through_the_source_is_lossless_at_16k(tmp_path):
    x = np.random.default_rng(2).uniform(-0.5, 0.5, 5000).astype(np.float32)
    p = write_wav(tmp_path / "n.wav", x, 16000)
    ref, _ = read_wav(p)
    with open_source(str(p), window=1000) as src:
        y = np.concatenate([f.data for f in src])
    np.testing.assert_array_equal(y[:5000], ref)
