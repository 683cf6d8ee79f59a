"""Audio building blocks, numpy only: a lock-protected ring buffer, framing, resampling, WAV
reading, a log-mel front end, and the default speech clip the demo and tests use.

Nothing here imports sounddevice or a runtime; the microphone source
(:mod:`edge_sdk.sources.audio_mic`) imports sounddevice when it is opened.
"""

from __future__ import annotations

from edge_sdk.audio.framing import Framer, frame_signal
from edge_sdk.audio.logmel import LogMelSpec, hz_to_mel, log_mel, mel_filterbank, mel_to_hz
from edge_sdk.audio.resample import StreamResampler, resample
from edge_sdk.audio.ring_buffer import AudioRingBuffer
from edge_sdk.audio.wav import read_wav, to_mono_float, write_wav

__all__ = [
    "AudioRingBuffer",
    "Framer",
    "LogMelSpec",
    "StreamResampler",
    "frame_signal",
    "hz_to_mel",
    "log_mel",
    "mel_filterbank",
    "mel_to_hz",
    "read_wav",
    "resample",
    "to_mono_float",
    "write_wav",
]
