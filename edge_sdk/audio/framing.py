"""Cut audio into windows: whole clips (:func:`frame_signal`) or a stream of blocks (:class:`Framer`)."""

from __future__ import annotations

import numpy as np

from edge_sdk.errors import PreprocessError


def _check(window: int, hop: int) -> None:
    for name, v in (("window", window), ("hop", hop)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise PreprocessError(f"audio framing: {name} must be an integer >= 1 sample, got {v!r}")


def frame_signal(x: np.ndarray, window: int, hop: int | None = None, *, pad: bool = True) -> np.ndarray:
    """``(n_frames, window)`` views of a 1-D signal, one every ``hop`` samples (default: ``window``).

    ``pad``: zero-pad the end so the last samples land in a frame; else drop the incomplete tail.
    """
    hop = window if hop is None else hop
    _check(window, hop)
    x = np.asarray(x)
    if x.ndim != 1:
        raise PreprocessError(f"audio framing: expected a 1-D (mono) signal, got shape {x.shape}")
    n = len(x)
    if pad:
        frames = max(1, -(-max(0, n - window) // hop) + 1)
        need = (frames - 1) * hop + window
        if need > n:
            x = np.concatenate([x, np.zeros(need - n, x.dtype)])
    elif n < window:
        return np.zeros((0, window), x.dtype)
    return np.lib.stride_tricks.sliding_window_view(x, window)[::hop]


class Framer:
    """Streaming framing: ``push(block)`` returns every complete ``window`` (every ``hop`` samples).

    ``position`` of each window (samples since the first push) is in ``push``'s second return value.
    """

    def __init__(self, window: int, hop: int | None = None) -> None:
        hop = window if hop is None else hop
        _check(window, hop)
        self.window, self.hop = int(window), int(hop)
        self._buf = np.zeros(0, np.float32)
        self._buf_pos = 0  # absolute position of _buf[0]
        self._skip = 0  # samples still to skip (hop > window)

    def push(self, block: np.ndarray) -> tuple[list[np.ndarray], list[int]]:
        """Append ``block`` (1-D); return (windows, their start positions) now complete."""
        b = np.asarray(block, dtype=np.float32).reshape(-1)
        if self._skip:
            k = min(self._skip, len(b))
            b, self._skip = b[k:], self._skip - k
        self._buf = np.concatenate([self._buf, b]) if self._buf.size else b.copy()
        wins, pos = [], []
        start = 0
        while start + self.window <= len(self._buf):
            wins.append(self._buf[start : start + self.window].copy())
            pos.append(self._buf_pos + start)
            start += self.hop
        if start:
            self._skip = max(0, start - len(self._buf))
            self._buf = self._buf[start:].copy()
            self._buf_pos += start
        return wins, pos

    def reset(self) -> None:
        self._buf = np.zeros(0, np.float32)
        self._buf_pos = 0
        self._skip = 0
