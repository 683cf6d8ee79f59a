"""A microphone through PortAudio (``mic:``, ``mic:2``, ``mic:USB`` = default device, index, name part).

The PortAudio callback does one thing: copy its block into the lock-protected ring buffer (see
:mod:`edge_sdk.audio.ring_buffer`); framing, mixing down and resampling happen in ``read()`` on the
reader's thread. When the device will not open at ``sample_rate`` (16 kHz by default) it is opened
at its own default rate and resampled. Options: ``sample_rate``, ``window``, ``channels``,
``blocksize`` (samples per callback, 0: PortAudio chooses), ``latency`` (``low`` | ``high`` | s),
``buffer_s`` (ring size), ``read_timeout``.

Needs the ``sounddevice`` package and the PortAudio library: without them opening the source
raises :class:`~edge_sdk.errors.SourceError` naming ``pip install "edge-sdk[audio]"`` and the
Debian package ``libportaudio2``.
"""

from __future__ import annotations

from typing import Any

from edge_sdk.errors import SourceError
from edge_sdk.sources.audio_base import AudioSource

_LIST = "list the devices with: python -m sounddevice"
INSTALL = 'pip install "edge-sdk[audio]" and the PortAudio library (Debian/Ubuntu: apt-get install libportaudio2)'


def import_sounddevice() -> Any:
    """``sounddevice``, or SourceError saying what to install (it raises OSError without PortAudio)."""
    try:
        import sounddevice
    except ImportError:
        raise SourceError(f"microphone source needs the 'sounddevice' package: {INSTALL}") from None
    except OSError as e:  # the package is there, libportaudio is not
        raise SourceError(f"microphone source: the PortAudio library cannot be loaded ({e}): {INSTALL}") from None
    return sounddevice


class MicSource(AudioSource):
    kind = "mic"
    is_live = True

    def __init__(
        self, target: str = "", *, device: Any = None, blocksize: int = 0, latency: Any = "low", **opts: Any,
    ) -> None:  # fmt: skip
        target = str(target or "").strip()
        if device is None and target:
            device = int(target) if target.isdigit() else target
        super().__init__(f"mic:{target}" if target else "mic:default", **opts)
        self.device = device
        self.blocksize = int(blocksize)
        self.latency = latency
        self.device_overflows = 0
        self._stream: Any = None

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: copy the block in and return (nothing else may happen here)."""
        if status and getattr(status, "input_overflow", False):
            self.device_overflows += 1
        self._push(indata)

    def _start(self) -> None:
        sd = import_sounddevice()
        try:
            try:
                sd.check_input_settings(device=self.device, channels=self.channels, dtype="float32",
                                        samplerate=self.sample_rate)  # fmt: skip
                self.in_rate = self.sample_rate
            except Exception:  # the device cannot capture at our rate: take its own and resample
                info = sd.query_devices(self.device, "input")
                self.in_rate = int(round(float(info["default_samplerate"])))
            self._sd = sd
            super()._start()
        except SourceError:
            raise
        except Exception as e:
            raise SourceError(f"microphone '{self.name}' cannot be opened: {e} ({_LIST})") from None

    def _open(self) -> None:
        try:
            self._stream = self._sd.InputStream(
                samplerate=self.in_rate, channels=self.channels, dtype="float32", blocksize=self.blocksize,
                device=self.device, latency=self.latency, callback=self._callback,
            )  # fmt: skip
            self._stream.start()
        except Exception as e:
            self._stream = None
            raise SourceError(f"microphone '{self.name}' cannot be opened: {e} ({_LIST})") from None

    @property
    def overflows(self) -> int:  # type: ignore[override]
        return super().overflows + self.__dict__.get("device_overflows", 0)

    @overflows.setter
    def overflows(self, value: int) -> None:
        pass

    def _stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception:  # pragma: no cover - a device that vanished
                pass
        super()._stop()
