"""A log-mel spectrogram front end in numpy: framed STFT (``np.fft.rfft``), a mel filterbank, log.

The filterbank matches librosa's ``filters.mel`` conventions (Slaney mel scale and area
normalisation by default; ``htk=True`` for the HTK scale, ``norm=None`` for unit-peak triangles),
so features agree with models trained on librosa / torchaudio ``mel_scale="slaney"`` features::

    spec = LogMelSpec(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64)
    feats = spec(samples)          # (frames, 64) float32: log(mel power + log_offset)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_sdk.audio.framing import frame_signal
from edge_sdk.errors import PreprocessError

_F_SP = 200.0 / 3  # Slaney: Hz per mel below 1 kHz
_MIN_LOG_HZ, _MIN_LOG_MEL = 1000.0, 15.0
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(f: float | np.ndarray, *, htk: bool = False) -> np.ndarray:
    """Frequency in Hz -> mel (Slaney: linear below 1 kHz, log above; or HTK ``2595 log10(1 + f/700)``)."""
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    lin = f / _F_SP
    return np.where(f >= _MIN_LOG_HZ, _MIN_LOG_MEL + np.log(np.maximum(f, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP, lin)


def mel_to_hz(m: float | np.ndarray, *, htk: bool = False) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None, *,
    htk: bool = False, norm: str | None = "slaney",
) -> np.ndarray:  # fmt: skip
    """``(n_mels, n_fft // 2 + 1)`` triangular filters, evenly spaced in mel between ``fmin`` and ``fmax``."""
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise PreprocessError(
            f"mel filterbank: need 0 <= fmin < fmax <= sample_rate/2 ({sample_rate / 2:g}), "
            f"got fmin={fmin}, fmax={fmax}"
        )
    if n_mels < 1 or n_fft < 2:
        raise PreprocessError(f"mel filterbank: n_mels must be >= 1 and n_fft >= 2, got {n_mels}, {n_fft}")
    if norm not in ("slaney", None):
        raise PreprocessError(f"mel filterbank: norm must be 'slaney' or None, got {norm!r}")
    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels + 2), htk=htk)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def hann(n: int) -> np.ndarray:
    """Periodic Hann window (what STFT front ends use), float32."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


@dataclass(frozen=True)
class LogMelSpec:
    """STFT + mel + log parameters. ``center``: pad ``n_fft // 2`` (reflect) so frame t is centred at t·hop."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = None
    power: float = 2.0
    htk: bool = False
    norm: str | None = "slaney"
    center: bool = True
    log_offset: float = 1e-6

    def __post_init__(self) -> None:
        if not 1 <= self.win_length <= self.n_fft:
            raise PreprocessError(f"log-mel: need 1 <= win_length <= n_fft, got {self.win_length}, {self.n_fft}")
        if self.hop_length < 1:
            raise PreprocessError(f"log-mel: hop_length must be >= 1, got {self.hop_length}")
        if self.log_offset <= 0:
            raise PreprocessError(f"log-mel: log_offset must be > 0 (it keeps log away from 0), got {self.log_offset}")
        object.__setattr__(self, "_fb", mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin,
                                                       self.fmax, htk=self.htk, norm=self.norm))  # fmt: skip
        win = np.zeros(self.n_fft, np.float32)
        left = (self.n_fft - self.win_length) // 2
        win[left : left + self.win_length] = hann(self.win_length)
        object.__setattr__(self, "_window", win)

    @property
    def filterbank(self) -> np.ndarray:
        return self._fb  # type: ignore[attr-defined]

    def spectrogram(self, samples: np.ndarray) -> np.ndarray:
        """``(frames, n_fft // 2 + 1)`` magnitude ** ``power`` of the windowed frames."""
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise PreprocessError(f"log-mel: expected mono samples (n,), got shape {x.shape}")
        if self.center:
            pad = self.n_fft // 2
            x = np.pad(x, pad, mode="reflect" if len(x) > pad else "constant")
        frames = frame_signal(x, self.n_fft, self.hop_length, pad=len(x) < self.n_fft)
        spec = np.abs(np.fft.rfft(frames * self._window, axis=1))  # type: ignore[attr-defined]
        return (spec**self.power).astype(np.float32)

    def mel(self, samples: np.ndarray) -> np.ndarray:
        """``(frames, n_mels)`` mel power (no log)."""
        return self.spectrogram(samples) @ self.filterbank.T

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """``(frames, n_mels)`` float32 ``log(mel + log_offset)``."""
        return np.log(self.mel(samples) + self.log_offset).astype(np.float32)


def log_mel(samples: np.ndarray, sample_rate: int = 16000, **opts: object) -> np.ndarray:
    """One-call log-mel of a mono clip; ``opts`` are :class:`LogMelSpec` fields."""
    return LogMelSpec(sample_rate=sample_rate, **opts)(samples)  # type: ignore[arg-type]
