"""A small lock-protected ring buffer between an audio callback and a reader thread.

The habit of MediaPipe's ``audio_record.py``: the device callback does nothing but copy its block
into the buffer under a lock (no allocation beyond the copy, no inference, no logging), and a reader
takes fixed-size windows out. When the reader falls behind, the oldest samples are overwritten:
``overflows`` counts the writes that overwrote unread audio and ``lost_samples`` how much, so a
slow consumer costs freshness, never memory and never an exception in the callback.

Positions are absolute sample counts since the stream started, so a reader knows where in the
stream each window starts even after samples were lost (a gap).
"""

from __future__ import annotations

import threading
import time

import numpy as np


class AudioRingBuffer:
    """``capacity`` samples of ``channels``-channel float32 audio; one writer, one reader, thread-safe."""

    def __init__(self, capacity: int, channels: int = 1) -> None:
        if capacity < 1 or channels < 1:
            raise ValueError(f"ring buffer: capacity and channels must be >= 1, got {capacity}, {channels}")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity, self.channels), np.float32)
        self._start = 0  # ring index of the oldest unread sample
        self._count = 0  # unread samples
        self._read_pos = 0  # absolute stream position of the oldest unread sample
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closed = False
        self.written = 0
        self.last_write_ts = 0.0  # time.monotonic() of the newest write
        self.overflows = 0
        self.lost_samples = 0

    # -- writer side (the audio callback) ---------------------------------------------------------
    def write(self, block: np.ndarray) -> int:
        """Copy ``block`` ((n,) or (n, channels)) in; returns how many unread samples it overwrote."""
        data = np.asarray(block, dtype=np.float32)
        if data.ndim == 1:
            data = data[:, None]
        if data.shape[1] != self.channels:
            raise ValueError(f"ring buffer holds {self.channels} channel(s), got a block of shape {block.shape}")
        n = data.shape[0]
        if n == 0:
            return 0
        with self._cond:
            if n >= self.capacity:  # only the newest `capacity` samples can be kept
                data = data[n - self.capacity :]
            m = data.shape[0]
            lost = max(0, self._count + n - self.capacity)
            if lost:
                self.overflows += 1
                self.lost_samples += lost
                dropped_unread = lost - (n - m)  # unread samples pushed out (the rest never got in)
                self._start = (self._start + dropped_unread) % self.capacity
                self._count -= dropped_unread
                self._read_pos += lost
            end = (self._start + self._count) % self.capacity
            first = min(m, self.capacity - end)
            self._buf[end : end + first] = data[:first]
            if first < m:
                self._buf[: m - first] = data[first:]
            self._count += m
            self.written += n
            self.last_write_ts = time.monotonic()
            self._cond.notify_all()
        return lost

    def wait_space(self, n: int, timeout: float | None = None) -> bool:
        """For a producer that must not lose audio (a file played as fast as possible): wait until
        ``n`` samples fit without overwriting; False on timeout or close."""
        n = min(int(n), self.capacity)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.capacity - self._count < n and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return not self._closed

    def close(self) -> None:
        """No more writes: readers get what is left, then None; a producer waiting for room wakes up."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False

    # -- reader side ------------------------------------------------------------------------------
    @property
    def available(self) -> int:
        with self._lock:
            return self._count

    @property
    def closed(self) -> bool:
        return self._closed

    def read(self, n: int, timeout: float | None = None, *, partial: bool = False) -> tuple[int, np.ndarray] | None:
        """``(position, samples (n, channels))`` once ``n`` samples are there; None after ``timeout``.

        When closed, a last short window is returned if ``partial`` (else None). Never blocks past
        ``timeout`` (None: wait until data or close).
        """
        if n < 1:
            raise ValueError(f"ring buffer: read size must be >= 1, got {n}")
        if n > self.capacity:
            raise ValueError(f"ring buffer: cannot read {n} samples from a buffer of {self.capacity}")
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._count < n and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            if self._count < n and not (partial and self._count > 0):
                return None
            k = min(n, self._count)
            idx = (self._start + np.arange(k)) % self.capacity
            out = self._buf[idx]
            pos = self._read_pos
            self._start = (self._start + k) % self.capacity
            self._count -= k
            self._read_pos += k
            self._cond.notify_all()  # a producer may be waiting for room
            return pos, out
