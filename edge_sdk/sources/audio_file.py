"""A WAV file as an audio source (``speech.wav``, ``wav:speech.wav?mode=realtime``).

Modes: ``fast`` (default: every sample, as fast as the reader takes them) or ``realtime`` (played
on a real-time clock like a microphone, ``speed`` x real time; a reader that falls behind loses
the oldest audio and ``overflows`` counts it). ``loop=true`` plays it again and again. The file is
resampled to ``sample_rate`` (16 kHz by default) and mixed down to mono. A file that does not
exist, is not a WAV or has an unsupported sample format is an
:class:`~edge_sdk.errors.AudioFileError` naming the file, raised by ``start()``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edge_sdk.audio.wav import read_wav
from edge_sdk.errors import SourceError
from edge_sdk.sources.audio_base import AudioSource, ProducerThreadMixin

MODES = ("fast", "realtime")
_ALIASES = {"paced": "realtime", "live": "realtime"}  # the video file source's names for it


class WavFileSource(ProducerThreadMixin, AudioSource):
    kind = "wav"
    is_live = False

    def __init__(
        self, path: str | os.PathLike[str], *, mode: str = "fast", speed: float = 1.0, loop: bool = False,
        block_ms: float = 20.0, **opts: Any,
    ) -> None:  # fmt: skip
        p = Path(path).expanduser()
        mode = _ALIASES.get(mode, mode)
        if mode not in MODES:
            raise SourceError(f"WAV source {p}: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if float(speed) <= 0 or float(block_ms) <= 0:
            raise SourceError(f"WAV source {p}: speed and block_ms must be > 0, got {speed!r}, {block_ms!r}")
        super().__init__(str(p), **opts)
        self.path, self.mode, self.speed, self.loop = p, mode, float(speed), bool(loop)
        self.block_ms = float(block_ms)
        self.is_live = mode == "realtime"
        self.file_rate = 0
        self.duration_s = 0.0

    def _start(self) -> None:
        self._samples, self.file_rate = read_wav(self.path)  # typed error naming the file, before any thread
        self.duration_s = len(self._samples) / self.file_rate
        self.in_rate = self.file_rate
        super()._start()

    def _blocks(self) -> Iterator[np.ndarray]:
        x = self._samples
        block = max(1, int(round(self.in_rate * self.block_ms / 1000)))
        while True:
            for a in range(0, len(x), block):
                yield x[a : a + block]
            if not self.loop or len(x) == 0:
                return

    def _open(self) -> None:
        self._run_producer(self._blocks, self.mode == "realtime", self.speed)

    def _stop(self) -> None:
        super()._stop()
        self._join_producer()
