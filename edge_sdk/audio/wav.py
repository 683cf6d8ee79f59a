"""Read and write WAV files with the standard library (no soundfile / libsndfile needed).

Reads integer PCM of 8, 16, 24 or 32 bits (plain or WAVE_FORMAT_EXTENSIBLE), any rate, any channel
count; writes 16-bit PCM atomically. Anything else (float WAV, 64-bit samples, not a RIFF/WAVE file) is an
:class:`~edge_sdk.errors.AudioFileError` naming the file and how to convert it.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import wave
from pathlib import Path

import numpy as np

from edge_sdk.errors import AudioFileError

_CONVERT = "convert it to 16-bit PCM: sox IN -b 16 -e signed-integer OUT.wav (or ffmpeg -i IN -c:a pcm_s16le OUT.wav)"


_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


def _chunks(fh: io.BufferedReader, path: Path) -> tuple[bytes | None, bytes | None]:
    """The ``fmt `` chunk's bytes and the ``data`` chunk's bytes (cut at the end of a truncated file)."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioFileError(f"{path} is not a WAV file (no RIFF/WAVE header); {_CONVERT}")
    fmt = data = None
    while fmt is None or data is None:
        hdr = fh.read(8)
        if len(hdr) < 8:
            break
        cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
        if cid == b"fmt ":
            fmt = fh.read(size)
        elif cid == b"data":
            data = fh.read(size)
        else:
            fh.seek(size, 1)
        if size & 1:
            fh.seek(1, 1)
    return fmt, data


def _parse_fmt(fmt: bytes, path: Path) -> tuple[int, int, int, int]:
    """``(format tag, channels, rate, bytes per sample)``; WAVE_FORMAT_EXTENSIBLE resolved to its sub-format."""
    if len(fmt) < 16:
        raise AudioFileError(f"WAV file {path} has a {len(fmt)}-byte fmt chunk (16 needed); the header is corrupt")
    tag, ch, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _EXTENSIBLE:
        if len(fmt) < 40:
            raise AudioFileError(
                f"WAV file {path} says WAVE_FORMAT_EXTENSIBLE but its fmt chunk has {len(fmt)} bytes (40 needed); "
                "the header is corrupt"
            )
        tag = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID starts with the plain format tag
    width = block_align // ch if ch else 0  # the container size; valid bits may be fewer (left-justified)
    if width * 8 < bits:
        width = (bits + 7) // 8
    return tag, ch, rate, width


def read_wav(path: str | os.PathLike[str], *, mono: bool = True) -> tuple[np.ndarray, int]:
    """``(samples, sample_rate)``: float32 in [-1, 1], ``(n,)`` when ``mono`` (channels averaged) else ``(n, ch)``.

    Plain PCM and WAVE_FORMAT_EXTENSIBLE PCM (what many recorders and ffmpeg write for 24-bit or
    multichannel audio) of 8, 16, 24 or 32 bits.
    """
    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"WAV file {p} does not exist")
    if not p.is_file():
        raise AudioFileError(f"WAV file {p} is not a regular file")
    try:
        with open(p, "rb") as fh:
            fmt, raw = _chunks(fh, p)
    except OSError as e:
        raise AudioFileError(f"WAV file {p} cannot be read: {e.strerror or e}") from None
    except struct.error as e:
        raise AudioFileError(f"WAV file {p} cannot be read ({e}); {_CONVERT}") from None
    if fmt is None or raw is None:
        missing = "fmt" if fmt is None else "data"
        raise AudioFileError(f"WAV file {p} cannot be read (no '{missing}' chunk); {_CONVERT}")
    tag, ch, rate, width = _parse_fmt(fmt, p)
    if tag == _FLOAT:
        raise AudioFileError(f"WAV file {p} holds float samples, which are not supported; {_CONVERT}")
    if tag != _PCM:
        raise AudioFileError(f"WAV file {p} has format tag 0x{tag:04X}, not PCM; {_CONVERT}")
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
