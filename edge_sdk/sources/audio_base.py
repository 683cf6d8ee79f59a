"""What every audio source shares: a ring buffer between the producer and the reader, windows out.

A producer (a PortAudio callback, or a thread playing a file or a signal) only ``_push``-es blocks
into an :class:`~edge_sdk.audio.AudioRingBuffer`; ``read()`` takes ``window`` samples out, converts
them to mono float32 at ``sample_rate`` (resampling when the producer runs at another rate), and
returns a :class:`~edge_sdk.sources.base.Frame` whose ``meta`` says where in the stream it is::

    frame.data                     # (window,) float32 in [-1, 1]
    frame.meta["pos"]              # first sample's index in the stream (at sample_rate)
    frame.meta["pos_ms"]           # the same in milliseconds: VAD onsets are stream times, not wall clock
    frame.meta["sample_rate"]

A reader slower than the producer costs the oldest audio: ``overflows`` counts the writes that
overwrote unread samples, ``lost_samples`` how many, ``dropped`` the windows that makes; the next
frame's ``pos`` jumps (a gap). A producer slower than real time makes ``read(timeout)`` return None
after ``timeout``; a live source silent for ``read_timeout`` emits ``DISCONNECTED`` (``RECONNECTED``
when audio flows again).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

import numpy as np

from edge_sdk.audio.resample import StreamResampler
from edge_sdk.audio.ring_buffer import AudioRingBuffer
from edge_sdk.errors import SourceError
from edge_sdk.sources.base import Event, Frame, Source, SourceEvent


def _positive_int(name: str, v: Any, source: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise SourceError(f"audio source '{source}': {name} must be a positive integer, got {v!r}")
    return int(v)


class AudioSource(Source):
    """Base of the audio sources; subclasses set ``in_rate``/``channels`` and produce into ``self.ring``."""

    kind = "audio"
    #: the pipeline keeps every window in order (no drops between stages): audio is lost, and
    #: counted, only in the ring buffer when the reader falls behind
    drop_policy = "block"

    def __init__(
        self, name: str, *, sample_rate: int = 16000, window: int = 512, buffer_s: float = 2.0,
        read_timeout: float = 2.0, in_rate: int | None = None, channels: int = 1,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(name, on_event=on_event)
        self.sample_rate = _positive_int("sample_rate", sample_rate, name)
        self.window = _positive_int("window", window, name)
        self.channels = _positive_int("channels", channels, name)
        self.in_rate = _positive_int("in_rate", in_rate or sample_rate, name)
        if not (isinstance(buffer_s, (int, float)) and buffer_s > 0):
            raise SourceError(f"audio source '{name}': buffer_s must be > 0 seconds, got {buffer_s!r}")
        if not (isinstance(read_timeout, (int, float)) and read_timeout > 0):
            raise SourceError(f"audio source '{name}': read_timeout must be > 0 seconds, got {read_timeout!r}")
        self.buffer_s = float(buffer_s)
        self.read_timeout = float(read_timeout)
        self.ring: AudioRingBuffer | None = None
        self.connected = False
        self._resampler: StreamResampler | None = None
        self._pending = np.zeros(0, np.float32)
        self._pending_pos = 0  # stream position (output rate) of _pending[0]
        self._expected_in = 0  # the input position the next ring read should start at (else: a gap)
        self._index = 0
        self._started_ts = 0.0
        self._reader_lock = threading.Lock()

    # -- counters the pipeline reads -------------------------------------------------------------
    @property
    def overflows(self) -> int:  # type: ignore[override]
        ring = self.__dict__.get("ring")
        return ring.overflows if ring is not None else 0

    @overflows.setter
    def overflows(self, value: int) -> None:  # the base class initialises it; the ring buffer counts
        pass

    @property
    def lost_samples(self) -> int:
        ring = self.__dict__.get("ring")
        return ring.lost_samples if ring is not None else 0

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return math.ceil(self.lost_samples * self.sample_rate / self.in_rate / self.window)

    @dropped.setter
    def dropped(self, value: int) -> None:
        pass

    @property
    def rate(self) -> float:
        """Windows per second (what the pipeline reports as the source rate)."""
        return self.sample_rate / self.window

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "lost_samples": self.lost_samples, "sample_rate": self.sample_rate,
                "window": self.window}  # fmt: skip

    # -- for subclasses ---------------------------------------------------------------------------
    def _make_ring(self) -> AudioRingBuffer:
        cap = max(4 * self.window * self.in_rate // self.sample_rate + 1, int(self.buffer_s * self.in_rate))
        self.ring = AudioRingBuffer(cap, self.channels)
        self._resampler = None if self.in_rate == self.sample_rate else StreamResampler(self.in_rate, self.sample_rate)
        self._pending = np.zeros(0, np.float32)
        self._pending_pos = self._expected_in = 0
        return self.ring

    def _push(self, block: np.ndarray) -> None:
        """Producer side: copy a block in (overwrites the oldest unread audio when full)."""
        assert self.ring is not None
        self.ring.write(block)

    def _finish(self, detail: str = "end of audio") -> None:
        """Producer side: no more audio; the reader gets what is buffered, then EOS."""
        if self.ring is not None:
            self.ring.close()
        self._emit(SourceEvent.EOS, detail)

    def _has_pending(self) -> bool:
        return (self.ring is not None and self.ring.available > 0) or self._pending.size > 0

    def _stop(self) -> None:
        if self.ring is not None:
            self.ring.close()

    # -- the reader -------------------------------------------------------------------------------
    def _read(self, timeout: float) -> Frame | None:
        with self._reader_lock:
            return self._read_window(timeout)

    def _read_window(self, timeout: float) -> Frame | None:
        ring = self.ring
        if ring is None:
            return None
        deadline = time.monotonic() + max(0.0, timeout)
        ratio = self.in_rate / self.sample_rate
        while self._pending.size < self.window:
            need = max(1, math.ceil((self.window - self._pending.size) * ratio))
            got = ring.read(min(need, ring.capacity), max(0.0, deadline - time.monotonic()), partial=ring.closed)
            if got is None:
                if ring.closed and ring.available:
                    continue  # closed while we waited: take the short tail
                if ring.closed:
                    if self._resampler is not None:
                        self._append(self._resampler.flush())
                        self._resampler = None
                    if self._pending.size:
                        self._append(np.zeros(self.window - self._pending.size, np.float32))
                        break
                    return None
                self._watchdog()
                return None
            pos, data = got
            if pos != self._expected_in:  # samples were lost: restart the stream position after the gap
                self._pending = np.zeros(0, np.float32)
                self._pending_pos = round(pos / ratio)
                if self._resampler is not None:
                    self._resampler = StreamResampler(self.in_rate, self.sample_rate)
            self._expected_in = pos + len(data)
            mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
            self._append(self._resampler.process(mono) if self._resampler is not None else mono)
            self._alive()
        out, self._pending = self._pending[: self.window], self._pending[self.window :]
        pos = self._pending_pos
        self._pending_pos += self.window
        if self.is_live and ring.last_write_ts:
            behind = (ring.written - self._expected_in) / self.in_rate  # audio captured after this window
            ts = ring.last_write_ts - max(0.0, behind)
        else:
            ts = time.monotonic()
        meta = {"pos": pos, "pos_ms": pos * 1000.0 / self.sample_rate, "sample_rate": self.sample_rate}
        if ring.closed and ring.available == 0 and self._pending.size == 0 and self._resampler is None:
            meta["last"] = True  # the stream's final window: a VAD closes an open segment on it
        frame = Frame(np.ascontiguousarray(out, dtype=np.float32), ts, self._index, meta)
        self._index += 1
        self.produced += 1
        return frame

    def _append(self, x: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, x.astype(np.float32, copy=False)]) if self._pending.size else x

    def _alive(self) -> None:
        if not self.connected:
            self.connected = True
            self._emit(SourceEvent.RECONNECTED, "audio flowing again")

    def _watchdog(self) -> None:
        ring = self.ring
        if not self.is_live or ring is None or not self.connected:
            return
        last = ring.last_write_ts or self._started_ts
        if time.monotonic() - last > self.read_timeout:
            self.connected = False
            self._emit(SourceEvent.DISCONNECTED, f"no audio for {self.read_timeout:g} s (read timeout)")

    def _start(self) -> None:
        self._started_ts = time.monotonic()
        self._make_ring()
        self.connected = True
        self._open()

    def _open(self) -> None:
        raise NotImplementedError


class ProducerThreadMixin:
    """A producer thread for sources that generate audio themselves (a file, a signal).

    ``realtime``: blocks are pushed on a real-time schedule (divided by ``speed``), into a ring
    that overwrites when the reader falls behind, like a microphone. Otherwise each block waits for
    room in the ring (nothing is lost) and the file plays as fast as the reader takes it.
    """

    def _run_producer(self: Any, blocks: Callable[[], Any], realtime: bool, speed: float = 1.0) -> None:
        def loop() -> None:
            ring = self.ring
            t0 = time.monotonic()
            sent = 0
            try:
                for block in blocks():
                    if self._stopped.is_set():
                        return
                    if realtime:
                        delay = t0 + sent / (self.in_rate * speed) - time.monotonic()
                        if delay > 0 and self._stopped.wait(delay):
                            return
                    elif not ring.wait_space(len(block)):
                        return
                    self._push(block)
                    sent += len(block)
            except Exception as e:  # a decoder/generator error ends the stream, never kills the reader
                self.error = e
                self._finish(f"audio producer failed: {type(e).__name__}: {e}")
                return
            self._finish("end of audio")

        self.error = None
        self._thread = threading.Thread(target=loop, name=f"audio-{self.kind}", daemon=True)
        self._thread.start()

    def _join_producer(self: Any) -> None:
        t = getattr(self, "_thread", None)
        if t is not None:
            t.join(timeout=2.0)
