"""The numpy log-mel front end against known values and a direct (slow) reference implementation."""

from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.audio import LogMelSpec, hz_to_mel, log_mel, mel_filterbank, mel_to_hz
from edge_sdk.errors import PreprocessError


def test_mel_scale_known_values():
    # Slaney: 3 bands per 200 Hz below 1 kHz, 27 per factor 6.4 above; HTK: 2595 log10(1 + f/700)
    assert hz_to_mel(1000.0) == pytest.approx(15.0)
    assert hz_to_mel(200.0) == pytest.approx(3.0)
    assert hz_to_mel(6400.0) == pytest.approx(42.0)
    assert hz_to_mel(700.0, htk=True) == pytest.approx(2595 * np.log10(2))
    f = np.array([0.0, 50, 999, 1000, 4321, 8000])
    for htk in (False, True):
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, htk=htk), htk=htk), f, atol=1e-9)


def test_filterbank_triangles_peak_at_their_centres():
    fb = mel_filterbank(16000, 512, 40, norm=None)
    assert fb.shape == (40, 257) and fb.min() >= 0
    peak = fb.max(axis=1)  # unit-peak triangles, sampled on the FFT grid (a bin can miss the apex)
    assert peak.max() <= 1.0 + 1e-6 and peak.min() > 0.5
    centres = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(8000), 42))[1:-1]
    peaks = fb.argmax(axis=1) * 16000 / 512
    assert np.abs(peaks - centres).max() <= 16000 / 512  # within one FFT bin
    slaney = mel_filterbank(16000, 512, 40)
    area = slaney.sum(axis=1) * (16000 / 512)  # Slaney norm: every triangle has area ~1 (in Hz)
    assert np.allclose(area[5:], 1.0, rtol=0.1)


def test_filterbank_rejects_bad_ranges():
    with pytest.raises(PreprocessError, match="fmax <= sample_rate/2"):
        mel_filterbank(16000, 512, 40, fmax=9000)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0, 6000.0])
def test_pure_tone_lands_in_the_mel_band_around_its_frequency(freq):
    sr = 16000
    t = np.arange(sr) / sr
    spec = LogMelSpec(sample_rate=sr, n_mels=64)
    feats = spec(np.sin(2 * np.pi * freq * t).astype(np.float32))
    band = int(np.median(feats.argmax(axis=1)))
    edges = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(sr / 2), 66))
    assert edges[band] < freq < edges[band + 2]  # inside the winning triangle's support
    assert abs(mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(sr / 2), 66)[band + 1]) - freq) < 0.1 * freq + 60


def test_log_mel_equals_a_direct_dft_reference():
    """The same features computed the slow, obvious way: explicit DFT sums, explicit triangles."""
    sr, n_fft, win, hop, n_mels = 16000, 256, 200, 80, 20
    x = np.random.default_rng(0).standard_normal(2000).astype(np.float32) * 0.1
    ours = log_mel(x, sr, n_fft=n_fft, win_length=win, hop_length=hop, n_mels=n_mels, norm=None)

    padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    window = np.zeros(n_fft)
    window[(n_fft - win) // 2 : (n_fft - win) // 2 + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    dft = np.exp(-2j * np.pi * k * n / n_fft)
    frames = [padded[s : s + n_fft] * window for s in range(0, len(padded) - n_fft + 1, hop)]
    power = np.abs(np.stack(frames) @ dft.T) ** 2
    hz = k[:, 0] * sr / n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    tri = np.zeros((n_mels, len(hz)))
    for m in range(n_mels):
        lo, c, hi = edges[m : m + 3]
        tri[m] = np.clip(np.minimum((hz - lo) / (c - lo), (hi - hz) / (hi - c)), 0, None)
    ref = np.log(power @ tri.T + 1e-6)
    assert ours.shape == ref.shape == (len(x) // hop + 1, n_mels)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_log_mel_spec_validates():
    with pytest.raises(PreprocessError, match="win_length <= n_fft"):
        LogMelSpec(n_fft=256, win_length=400)
    with pytest.raises(PreprocessError, match="expected mono"):
        LogMelSpec()(np.zeros((100, 2), np.float32))
