"""Band-limited resampling in numpy: Kaiser-windowed sinc interpolation, any rate pair.

:func:`resample` converts a whole clip; :class:`StreamResampler` converts a stream block by block
(a microphone that only opens at 48 kHz feeding a 16 kHz model) and gives the same samples as the
whole-clip call. The low-pass sits at ``rolloff`` x the lower Nyquist, so nothing aliases.
"""

from __future__ import annotations

import math

import numpy as np

from edge_sdk.errors import PreprocessError

_CHUNK = 4096  # outputs computed per vectorised step (bounds the temporary (chunk, taps) matrix)


class StreamResampler:
    """``process(block)`` -> the output samples that ``block`` completes; ``flush()`` -> the tail."""

    def __init__(self, sr_in: int, sr_out: int, *, zeros: int = 16, rolloff: float = 0.945, beta: float = 8.6) -> None:
        for name, v in (("input rate", sr_in), ("output rate", sr_out)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise PreprocessError(f"resample: {name} must be a positive integer in Hz, got {v!r}")
        g = math.gcd(int(sr_in), int(sr_out))
        self.sr_in, self.sr_out = int(sr_in), int(sr_out)
        self.up, self.down = self.sr_out // g, self.sr_in // g  # output n sits at input time n * down / up
        self.fc = 0.5 * rolloff * min(1.0, self.up / self.down)  # cut-off, cycles per input sample
        self.half = int(math.ceil(zeros / (2 * self.fc)))
        self.beta = beta
        self._buf = np.zeros(self.half, np.float32)  # zeros before the stream starts
        self._buf_start = -self.half  # absolute input index of _buf[0]
        self._n = 0  # next output index
        self._total_in = 0
        self._k = np.arange(-self.half + 1, self.half + 1)
        # one filter per output phase (n * down mod up) when there are few phases: no Bessel per sample
        self._table = self._taps(np.arange(self.up) / self.up) if self.up <= 4096 else None

    def _taps(self, frac: np.ndarray) -> np.ndarray:
        d = frac[:, None] - self._k[None, :]  # distance from output time to each tap, in input samples
        w = np.i0(self.beta * np.sqrt(np.clip(1.0 - (d / self.half) ** 2, 0.0, None))) / np.i0(self.beta)
        return (2 * self.fc * np.sinc(2 * self.fc * d) * w).astype(np.float32)

    @property
    def identity(self) -> bool:
        return self.up == self.down

    def process(self, block: np.ndarray) -> np.ndarray:
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        if self.identity:
            return x.copy()
        self._buf = np.concatenate([self._buf, x])
        self._total_in += len(x)
        # output n needs inputs up to floor(n * down / up) + half
        last_in = self._total_in - 1 - self.half
        n_end = 0 if last_in < 0 else (last_in * self.up) // self.down + 1
        return self._emit(max(n_end, self._n))

    def flush(self) -> np.ndarray:
        """The remaining outputs (inputs after the end count as zeros); the stream is then done."""
        if self.identity:
            return np.zeros(0, np.float32)
        self._buf = np.concatenate([self._buf, np.zeros(self.half + 1, np.float32)])
        n_end = -(-self._total_in * self.up // self.down)  # ceil: outputs whose time is inside the input
        return self._emit(max(n_end, self._n))

    def _emit(self, n_end: int) -> np.ndarray:
        outs = []
        for a in range(self._n, n_end, _CHUNK):
            n = np.arange(a, min(n_end, a + _CHUNK), dtype=np.int64)
            base = (n * self.down) // self.up
            phase = (n * self.down) % self.up
            h = self._table[phase] if self._table is not None else self._taps(phase / self.up)
            idx = base[:, None] + self._k[None, :] - self._buf_start
            outs.append(np.einsum("ij,ij->i", self._buf[idx], h))
        self._n = max(self._n, n_end)
        keep_from = (self._n * self.down) // self.up - self.half + 1  # first input the next output needs
        cut = max(0, keep_from - self._buf_start)
        if cut:
            self._buf = self._buf[cut:]
            self._buf_start += cut
        return np.concatenate(outs).astype(np.float32) if outs else np.zeros(0, np.float32)


def resample(samples: np.ndarray, sr_in: int, sr_out: int, **opts: float) -> np.ndarray:
    """A mono clip from ``sr_in`` to ``sr_out`` Hz (``ceil(len * sr_out / sr_in)`` samples, float32)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise PreprocessError(f"resample: expected mono samples (n,), got shape {x.shape}")
    r = StreamResampler(sr_in, sr_out, **opts)  # type: ignore[arg-type]
    if r.identity:
        return x.copy()
    return np.concatenate([r.process(x), r.flush()])
