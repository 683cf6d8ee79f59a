"""Read and write WAV files with the standard library (no soundfile / libsndfile needed).

Reads integer PCM of 8, 16, 24 or 32 bits, any rate, any channel count; writes 16-bit PCM
atomically. Anything else (float WAV, 64-bit samples, not a RIFF/WAVE file) is an
:class:`~edge_sdk.errors.AudioFileError` naming the file and how to convert it.
"""

from __future__ import annotations

import os
import struct
import tempfile
import wave
from pathlib import Path

import numpy as np

from edge_sdk.errors import AudioFileError

_CONVERT = "convert it to 16-bit PCM: sox IN -b 16 -e signed-integer OUT.wav (or ffmpeg -i IN -c:a pcm_s16le OUT.wav)"


def _format_tag(path: Path) -> int | None:
    """The WAVE fmt chunk's format tag (1 = PCM, 3 = float, 0xFFFE = extensible), None if not found."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            while True:
                hdr = fh.read(8)
                if len(hdr) < 8:
                    return None
                cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
                if cid == b"fmt ":
                    return struct.unpack("<H", fh.read(2))[0]
                fh.seek(size + (size & 1), 1)
    except OSError:
        return None


def read_wav(path: str | os.PathLike[str], *, mono: bool = True) -> tuple[np.ndarray, int]:
    """``(samples, sample_rate)``: float32 in [-1, 1], ``(n,)`` when ``mono`` (channels averaged) else ``(n, ch)``."""
    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"WAV file {p} does not exist")
    if not p.is_file():
        raise AudioFileError(f"WAV file {p} is not a regular file")
    try:
        with wave.open(str(p), "rb") as w:
            ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, struct.error) as e:
        tag = _format_tag(p)
        if tag == 3:
            raise AudioFileError(f"WAV file {p} holds float samples, which are not supported; {_CONVERT}") from None
        if tag is None:
            raise AudioFileError(f"{p} is not a WAV file (no RIFF/WAVE header); {_CONVERT}") from None
        raise AudioFileError(f"WAV file {p} cannot be read ({e}); {_CONVERT}") from None
    if width not in (1, 2, 3, 4):
        raise AudioFileError(f"WAV file {p} has {width * 8}-bit samples; supported: 8, 16, 24, 32-bit PCM; {_CONVERT}")
    if ch < 1 or rate < 1:
        raise AudioFileError(f"WAV file {p} has {ch} channel(s) at {rate} Hz; the header is corrupt")
    usable = len(raw) // (width * ch) * (width * ch)  # a truncated file: keep the whole frames
    x = _decode(raw[:usable], width).reshape(-1, ch)
    if mono:
        return (x.mean(axis=1) if ch > 1 else x[:, 0]).astype(np.float32), rate
    return x, rate


def _decode(raw: bytes, width: int) -> np.ndarray:
    if width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        return v.astype(np.float32) / float(1 << 23)
    return (np.frombuffer(raw, "<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)


def to_mono_float(samples: np.ndarray) -> np.ndarray:
    """int16 PCM or float audio, ``(n,)`` or ``(n, ch)`` -> mono float32 ``(n,)``."""
    x = np.asarray(samples)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x.astype(np.float32, copy=False).reshape(-1)


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono/multichannel float [-1, 1] (or int16) audio as 16-bit PCM; atomic (temp file + rename)."""
    p = Path(path)
    x = np.asarray(samples)
    if x.dtype != np.int16:
        x = np.clip(np.round(np.asarray(x, np.float64) * 32767.0), -32768, 32767).astype("<i2")
    ch = 1 if x.ndim == 1 else x.shape[1]
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh, wave.open(fh, "wb") as w:
            w.setnchannels(ch)
            w.setsampwidth(2)
            w.setframerate(int(sample_rate))
            w.writeframes(np.ascontiguousarray(x).tobytes())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
