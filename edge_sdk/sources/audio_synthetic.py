"""A synthetic microphone: a tone, noise or silence (``synthetic-audio:?signal=tone&freq=440``).

Options: ``signal`` (``tone`` | ``noise`` | ``silence``), ``freq`` (Hz), ``amplitude`` (0..1),
``noise`` (RMS of white noise added to any signal), ``duration`` (seconds; none: endless),
``realtime`` (default true: blocks arrive on a real-time clock like a microphone, and a slow reader
overflows the ring; false: as fast as the reader takes them, nothing lost), ``speed`` (the clock
runs at ``speed`` x real time: 0.5 is a producer slower than real time), ``block_ms`` (producer
block, like a sound card's period), ``sample_rate``, ``window``, ``buffer_s``, ``seed``.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from edge_sdk.errors import SourceError
from edge_sdk.sources.audio_base import AudioSource, ProducerThreadMixin

SIGNALS = ("tone", "noise", "silence")


class SyntheticAudioSource(ProducerThreadMixin, AudioSource):
    kind = "synthetic-audio"
    is_live = True

    def __init__(
        self, target: str = "", *, signal: str = "tone", freq: float = 440.0, amplitude: float = 0.3,
        noise: float = 0.0, duration: float | None = None, realtime: bool = True, speed: float = 1.0,
        block_ms: float = 20.0, seed: int = 0, **opts: Any,
    ) -> None:  # fmt: skip
        signal = target or signal
        super().__init__(f"synthetic-audio:{signal}", **opts)
        if signal not in SIGNALS:
            raise SourceError(f"synthetic audio: signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
        if not 0 < float(freq) < self.sample_rate / 2:
            raise SourceError(f"synthetic audio: freq must be in (0, {self.sample_rate / 2:g}) Hz, got {freq!r}")
        if duration is not None and float(duration) <= 0:
            raise SourceError(f"synthetic audio: duration must be > 0 seconds (or left out: endless), got {duration!r}")
        if float(speed) <= 0 or float(block_ms) <= 0:
            raise SourceError(f"synthetic audio: speed and block_ms must be > 0, got {speed!r}, {block_ms!r}")
        self.signal, self.freq, self.amplitude, self.noise = signal, float(freq), float(amplitude), float(noise)
        self.duration = None if duration is None else float(duration)
        self.realtime, self.speed, self.seed = bool(realtime), float(speed), int(seed)
        self.block = max(1, int(round(self.in_rate * float(block_ms) / 1000)))
        self.is_live = self.realtime

    def _blocks(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        total = None if self.duration is None else int(round(self.duration * self.in_rate))
        n = 0
        while total is None or n < total:
            k = self.block if total is None else min(self.block, total - n)
            t = (n + np.arange(k)) / self.in_rate
            if self.signal == "tone":
                x = self.amplitude * np.sin(2 * np.pi * self.freq * t)
            elif self.signal == "noise":
                x = self.amplitude * rng.standard_normal(k)
            else:
                x = np.zeros(k)
            if self.noise:
                x = x + self.noise * rng.standard_normal(k)
            yield x.astype(np.float32)
            n += k

    def _open(self) -> None:
        self._run_producer(self._blocks, self.realtime, self.speed)

    def _stop(self) -> None:
        super()._stop()
        self._join_producer()
