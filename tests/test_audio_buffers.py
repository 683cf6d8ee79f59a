"""edge_sdk.audio: ring buffer, framing, resampling, WAV reading (and its errors)."""

from __future__ import annotations

import struct
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.audio import AudioRingBuffer, Framer, StreamResampler, frame_signal, read_wav, resample, write_wav
from edge_sdk.errors import AudioFileError, PreprocessError


# -- ring buffer ---------------------------------------------------------------------------------
def test_ring_buffer_wraps_and_keeps_order():
    rb = AudioRingBuffer(10)
    rb.write(np.arange(6))
    assert rb.read(4, timeout=0)[1][:, 0].tolist() == [0, 1, 2, 3]
    rb.write(np.arange(6, 14))  # wraps around the end of the array
    pos, x = rb.read(10, timeout=0)
    assert pos == 4 and x[:, 0].tolist() == list(range(4, 14))
    assert rb.overflows == 0 and rb.lost_samples == 0


def test_ring_buffer_overflow_drops_oldest_and_counts():
    rb = AudioRingBuffer(8)
    rb.write(np.arange(6))
    assert rb.write(np.arange(6, 11)) == 3  # 3 unread samples overwritten
    rb.write(np.arange(11, 31))  # a block bigger than the whole buffer
    assert rb.overflows == 2 and rb.lost_samples == 3 + 20
    pos, x = rb.read(8, timeout=0)
    assert pos == 23 and x[:, 0].tolist() == list(range(23, 31))  # the position says where the gap ended


def test_ring_buffer_read_times_out_and_close_gives_the_tail():
    rb = AudioRingBuffer(16)
    rb.write(np.ones(3))
    t = time.monotonic()
    assert rb.read(4, timeout=0.1) is None
    assert 0.08 < time.monotonic() - t < 1.0
    rb.close()
    assert rb.read(4, timeout=1) is None  # not partial: nothing
    pos, tail = rb.read(4, timeout=1, partial=True)
    assert pos == 0 and tail.shape == (3, 1)


def test_ring_buffer_slow_consumer_counts_overflows_without_error():
    """A callback-like writer at a steady pace, a reader far slower: overflows, never an exception."""
    rb = AudioRingBuffer(1600)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(100):
                rb.write(np.full(160, i, np.float32))  # 10 ms blocks at 16 kHz, as fast as possible
                time.sleep(0.001)
        except BaseException as e:  # pragma: no cover - the point of the test
            errors.append(e)
        rb.close()

    th = threading.Thread(target=writer)
    th.start()
    got = []
    while True:
        r = rb.read(512, timeout=2.0, partial=True)
        if r is None:
            break
        got.append(r)
        time.sleep(0.03)  # the slow consumer
    th.join()
    assert not errors
    assert rb.overflows > 0 and rb.lost_samples > 0
    positions = [p for p, _ in got]
    assert positions == sorted(positions) and positions[-1] + len(got[-1][1]) == 16000


def test_ring_buffer_wait_space_blocks_until_read():
    rb = AudioRingBuffer(8)
    rb.write(np.zeros(8))
    assert rb.wait_space(4, timeout=0.05) is False
    threading.Timer(0.05, lambda: rb.read(4, timeout=0)).start()
    assert rb.wait_space(4, timeout=2) is True


def test_ring_buffer_multichannel_shape_checked():
    rb = AudioRingBuffer(8, channels=2)
    rb.write(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="2 channel"):
        rb.write(np.zeros((4, 3)))


# -- framing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("window,hop", [(512, 512), (400, 160), (4, 6)])
def test_framer_streaming_matches_whole_clip(window, hop):
    x = np.arange(5000, dtype=np.float32)
    whole = frame_signal(x, window, hop, pad=False)
    f = Framer(window, hop)
    wins, pos = [], []
    rng = np.random.default_rng(0)
    a = 0
    while a < len(x):
        n = int(rng.integers(1, 700))
        w, p = f.push(x[a : a + n])
        wins += w
        pos += p
        a += n
    assert np.array_equal(np.stack(wins), whole)
    assert pos == [i * hop for i in range(len(whole))]


def test_frame_signal_pads_the_tail():
    fr = frame_signal(np.ones(10, np.float32), 4)
    assert fr.shape == (3, 4) and fr[-1].tolist() == [1, 1, 0, 0]
    with pytest.raises(PreprocessError, match="hop must be an integer >= 1"):
        frame_signal(np.ones(10), 4, 0)


# -- resampling ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sr_in,sr_out", [(22050, 16000), (48000, 16000), (8000, 16000), (44100, 16000)])
def test_resample_tone_is_exact_away_from_the_edges(sr_in, sr_out):
    t = np.arange(sr_in) / sr_in
    y = resample(np.sin(2 * np.pi * 1000 * t).astype(np.float32), sr_in, sr_out)
    assert len(y) == sr_out
    ref = np.sin(2 * np.pi * 1000 * np.arange(len(y)) / sr_out)
    assert np.abs(y - ref)[200:-200].max() < 1e-3


def test_resample_removes_what_the_new_rate_cannot_hold():
    t = np.arange(48000) / 48000
    y = resample(np.sin(2 * np.pi * 12000 * t).astype(np.float32), 48000, 16000)  # above 8 kHz Nyquist
    assert np.abs(y[200:-200]).max() < 1e-3


def test_stream_resampler_equals_whole_clip():
    x = np.random.default_rng(1).standard_normal(30000).astype(np.float32)
    whole = resample(x, 44100, 16000)
    r = StreamResampler(44100, 16000)
    parts, a = [], 0
    for n in [1, 7, 512, 3000, 44, 10000, 16436]:
        parts.append(r.process(x[a : a + n]))
        a += n
    parts.append(r.flush())
    assert a == len(x)
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)


def test_resample_agrees_with_scipy_on_band_limited_audio():
    signal = pytest.importorskip("scipy.signal")
    t = np.arange(48000) / 48000
    x = sum(np.sin(2 * np.pi * f * t + f) for f in (220, 1234, 3000, 6500)).astype(np.float32) / 4
    ours, ref = resample(x, 48000, 16000), signal.resample_poly(x, 1, 3)
    assert np.abs(ours - ref)[300:-300].max() < 2e-3


# -- WAV -----------------------------------------------------------------------------------------
def _wav_bytes(path: Path, data: bytes, *, tag: int = 1, bits: int = 16, ch: int = 1, rate: int = 16000) -> Path:
    block = ch * ((bits + 7) // 8)
    fmt = struct.pack("<HHIIHH", tag, ch, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_read_wav_pcm_widths(tmp_path, width):
    x = (0.5 * np.sin(np.linspace(0, 20, 800))).astype(np.float32)
    p = tmp_path / f"w{width}.wav"
    scale = float(1 << (8 * width - 1))
    ints = np.round(x * (scale - 1)).astype(np.int64)
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    else:
        raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints)
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1), w.setsampwidth(width), w.setframerate(8000), w.writeframes(raw)
    y, sr = read_wav(p)
    assert sr == 8000 and y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=2.0 / scale + 1e-6)


def test_write_wav_round_trip_stereo_to_mono(tmp_path):
    x = np.stack([np.full(100, 0.5), np.full(100, -0.25)], axis=1)
    p = write_wav(tmp_path / "s.wav", x, 22050)
    y, sr = read_wav(p)
    assert sr == 22050 and np.allclose(y, 0.125, atol=1e-4)
    assert read_wav(p, mono=False)[0].shape == (100, 2)
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, no temp file left


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda d: d / "missing.wav", r"missing\.wav does not exist"),
        (lambda d: d, "is not a regular file"),
        (lambda d: (d / "x.wav").write_bytes(b"ID3\x03 this is an mp3, honest") and d / "x.wav",
         r"x\.wav is not a WAV file .*sox"),
        (lambda d: _wav_bytes(d / "f.wav", np.zeros(8, "<f4").tobytes(), tag=3, bits=32),
         r"f\.wav holds float samples.*16-bit PCM"),
        (lambda d: _wav_bytes(d / "w64.wav", bytes(64), bits=64),
         r"w64\.wav has 64-bit samples; supported: 8, 16, 24, 32"),
        (lambda d: (d / "trunc.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt ") and d / "trunc.wav",
         r"trunc\.wav"),
    ],
)  # fmt: skip
def test_read_wav_errors_name_the_file(tmp_path, make, match):
    with pytest.raises(AudioFileError, match=match):
        read_wav(make(tmp_path))
