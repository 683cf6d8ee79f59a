"""Capture in its own thread: latest-frame-wins for live sources, every frame for files, and reconnects.

Subclasses implement ``_open()`` (raise SourceError if it cannot), ``_grab() -> ndarray | None``
(None: end of file for a file, lost connection for a live source; may raise) and ``_close()``.

Policies:

- ``latest``: one slot; a new frame replaces an unread one and ``dropped`` counts it, so a slow
  consumer always gets the newest frame, never a backlog.
- ``queue``: a bounded queue; the capture thread waits for room (nothing is dropped): a file
  played frame by frame.

A live source that fails emits ``DISCONNECTED`` (also when no frame came within ``read_timeout``),
retries ``_open`` with capped exponential backoff and jitter, and emits ``RECONNECTED``. A first open that
fails raises (a wrong URL is an error at once), unless ``retry_open``: a service that starts before its camera
(at boot, a camera being rebooted) gets ``DISCONNECTED`` and the same retries.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from typing import Any, Callable

import numpy as np

from edge_sdk.errors import SourceError
from edge_sdk.sources.base import Event, Frame, Source, SourceEvent

log = logging.getLogger("edge_sdk.sources")
POLICIES = ("latest", "queue")


class CaptureSource(Source):
    """A :class:`Source` whose frames come from a capture thread (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        policy: str | None = None,
        queue_size: int = 8,
        read_timeout: float = 5.0,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.25, 8.0),
        max_reconnects: int | None = None,
        retry_open: bool = False,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        super().__init__(name, on_event=on_event)
        policy = policy or ("latest" if self.is_live else "queue")
        if policy not in POLICIES:
            raise SourceError(f"source '{name}': policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if read_timeout <= 0:
            raise SourceError(f"source '{name}': read_timeout must be > 0 seconds, got {read_timeout!r}")
        self.policy = policy
        self.queue_size = max(1, int(queue_size))
        self.read_timeout = float(read_timeout)
        self.reconnect = reconnect
        self.backoff = (float(backoff[0]), float(backoff[1]))
        self.max_reconnects = max_reconnects
        self.retry_open = bool(retry_open)
        self.reconnects = 0
        self.connected = False
        self._buf: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._index = 0
        self._last_frame_ts = 0.0
        self._state_lock = threading.Lock()
        self.error: BaseException | None = None

    @property
    def reconnecting(self) -> bool:
        """A live source that lost its device or stream (or could not open it yet) and is retrying."""
        ended = self._ended.is_set() or self._stopped.is_set()
        return self.is_live and self._started and not self.connected and not ended

    # -- to implement ---------------------------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _grab(self) -> np.ndarray | None:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def _frame_meta(self) -> dict[str, Any]:
        return {}

    # -- Source ---------------------------------------------------------------------------------
    def _start(self) -> None:
        try:
            self._open()  # the first open raises to the caller: a source that cannot open is an error
            self.connected = True
        except Exception as e:
            if not (self.retry_open and self.is_live and self.reconnect):
                raise
            self._safe_close()
            self._emit(SourceEvent.DISCONNECTED, f"cannot open yet ({e}); retrying with backoff")
            log.warning("%s: cannot open yet (%s); retrying with backoff", self.name, e)
        self._last_frame_ts = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name=f"capture-{self.kind}", daemon=True)
        self._thread.start()

    def _read(self, timeout: float) -> Frame | None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._buf:
                if self._ended.is_set() or self._stopped.is_set():
                    return None
                left = deadline - time.monotonic()
                self._watchdog()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.1))
            frame = self._buf.popleft()
            self._cond.notify_all()
            return frame

    def _has_pending(self) -> bool:
        return bool(self._buf)

    def _stop(self) -> None:
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=max(2.0, self.read_timeout + 1))
        if self._thread is None or not self._thread.is_alive():
            self._safe_close()

    # -- the capture thread --------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while not self._stopped.is_set():
                try:
                    img = self._grab()
                    why = "no frame (stream ended or connection lost)"
                except Exception as e:  # a runtime error in the device/decoder
                    img, why = None, f"{type(e).__name__}: {e}"
                if self._stopped.is_set():
                    break
                if img is None:
                    if not self.is_live:
                        self._emit(SourceEvent.EOS, "end of file")
                        break
                    self._lost(why)
                    if not self._reconnect_loop():
                        self._emit(SourceEvent.EOS, f"gave up after {self.reconnects} reconnect attempts")
                        break
                    continue
                self._deliver(img)
        except BaseException as e:  # pragma: no cover - a bug: end cleanly, keep the error for the reader
            self.error = e
            log.exception("capture thread of %s failed", self.name)
            self._emit(SourceEvent.EOS, f"capture failed: {type(e).__name__}: {e}")
        finally:
            with self._cond:
                self._cond.notify_all()
            if self._stopped.is_set():
                self._safe_close()

    def _deliver(self, img: np.ndarray) -> None:
        frame = Frame(img, time.monotonic(), self._index, self._frame_meta())
        self._index += 1
        self.produced += 1
        with self._state_lock:
            self._last_frame_ts = frame.capture_ts
            if not self.connected:
                self.connected = True
                self._emit(SourceEvent.RECONNECTED, "frames flowing again")
        with self._cond:
            if self.policy == "latest":
                if self._buf:
                    self.dropped += len(self._buf)
                    self._buf.clear()
            else:
                while len(self._buf) >= self.queue_size and not self._stopped.is_set():
                    self._cond.wait(0.1)
            self._buf.append(frame)
            self._cond.notify_all()

    def _lost(self, why: str) -> None:
        with self._state_lock:
            if self.connected:
                self.connected = False
                self._emit(SourceEvent.DISCONNECTED, why)

    def _watchdog(self) -> None:
        """Called by the reader: a live source silent for ``read_timeout`` counts as disconnected."""
        if self.is_live and self.connected and time.monotonic() - self._last_frame_ts > self.read_timeout:
            self._lost(f"no frame for {self.read_timeout:g} s (read timeout)")

    def _reconnect_loop(self) -> bool:
        if not self.reconnect:
            return False
        self._safe_close()
        attempt = 0
        while not self._stopped.is_set():
            if self.max_reconnects is not None and attempt >= self.max_reconnects:
                return False
            base, cap = self.backoff
            delay = min(cap, base * (2**attempt)) * random.uniform(0.5, 1.0)  # capped exponential + jitter
            if self._stopped.wait(delay):
                return False
            attempt += 1
            self.reconnects += 1
            try:
                self._open()
                with self._state_lock:
                    self._last_frame_ts = time.monotonic()
                return True  # RECONNECTED is emitted when the first frame arrives
            except Exception as e:
                log.info("%s: reconnect attempt %d failed: %s", self.name, attempt, e)
                self._safe_close()
        return False

    def _safe_close(self) -> None:
        try:
            self._close()
        except Exception:  # pragma: no cover - closing a dead device
            pass
