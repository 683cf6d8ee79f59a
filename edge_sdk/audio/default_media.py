"""The embedded default speech clip: real speech spoken by ``espeak-ng``, placed at known times.

``default_speech_wav()`` writes (once, then reuses) a 16 kHz mono WAV: low background noise with
two utterances at known offsets, and returns where the speech is, so the VAD demo and tests can
check onsets and offsets against the truth. Needs the ``espeak-ng`` program at generation time
(Debian package ``espeak-ng``); nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edge_sdk.audio.resample import resample
from edge_sdk.audio.wav import read_wav, write_wav
from edge_sdk.errors import ToolMissingError

SAMPLE_RATE = 16000
#: (text, start second) of each utterance
UTTERANCES: tuple[tuple[str, float], ...] = (
    ("The quick brown fox jumps over the lazy dog.", 1.5),
    ("Edge devices can hear speech in real time.", 6.5),
)
TAIL_S = 2.0  # silence after the last utterance
NOISE_RMS = 0.003  # about -50 dBFS of white noise under everything
PEAK = 0.5
VERSION = 1


def media_dir() -> Path:
    from edge_sdk.cache import cache_root

    return cache_root() / "media"


def speak(text: str, *, voice: str = "en-us", speed: int = 150, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``text`` spoken by espeak-ng as float32 mono at ``sample_rate``, trimmed to the voiced part."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ToolMissingError("espeak-ng", "espeak-ng", "it speaks the default speech clip")
    with tempfile.TemporaryDirectory(prefix="edge_sdk_tts_") as tmp:
        out = Path(tmp) / "speech.wav"
        r = subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(out), text],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        if r.returncode != 0 or not out.is_file():
            raise ToolMissingError("espeak-ng", "espeak-ng", f"it failed: {r.stderr.strip()[:200]}")
        x, sr = read_wav(out)
    x = resample(x, sr, sample_rate) if sr != sample_rate else x
    return trim(x, sample_rate)


def trim(x: np.ndarray, sample_rate: int, *, floor_db: float = -40.0, frame_ms: float = 10.0) -> np.ndarray:
    """Cut leading/trailing parts whose 10 ms energy is below ``floor_db`` relative to the loudest frame."""
    n = max(1, int(sample_rate * frame_ms / 1000))
    frames = len(x) // n
    if frames == 0:
        return x
    e = (x[: frames * n].reshape(frames, n) ** 2).mean(axis=1)
    loud = np.flatnonzero(e > e.max() * 10 ** (floor_db / 10))
    return x[loud[0] * n : (loud[-1] + 1) * n]


def make_speech_clip(
    utterances: tuple[tuple[str, float], ...] = UTTERANCES, *, tail_s: float = TAIL_S, noise_rms: float = NOISE_RMS,
    sample_rate: int = SAMPLE_RATE, seed: int = 0,
) -> tuple[np.ndarray, list[tuple[float, float]]]:  # fmt: skip
    """(samples, [(start_s, end_s), ...]): each utterance placed at its start second, in low noise."""
    voiced = [speak(text, sample_rate=sample_rate) for text, _ in utterances]
    segs: list[tuple[float, float]] = []
    end = 0.0
    for (text, start), v in zip(utterances, voiced):
        if start < end:
            raise ValueError(f"utterance {text!r} at {start} s overlaps the previous one (ends at {end:.2f} s)")
        end = start + len(v) / sample_rate
        segs.append((start, end))
    total = int(round((end + tail_s) * sample_rate))
    clip = np.random.default_rng(seed).standard_normal(total).astype(np.float32) * noise_rms
    for (start, _), v in zip(segs, voiced):
        a = int(round(start * sample_rate))
        clip[a : a + len(v)] += v * (PEAK / max(1e-6, float(np.abs(v).max())))
    segs = [(round(a, 3), round(b, 3)) for a, b in segs]
    return np.clip(clip, -1.0, 1.0), segs


def default_speech_wav(cache_dir: str | os.PathLike[str] | None = None) -> tuple[Path, list[tuple[float, float]]]:
    """(path to the default speech WAV, [(start_s, end_s) of each utterance]); made on first use."""
    folder = Path(cache_dir) if cache_dir is not None else media_dir()
    key = hashlib.sha256(json.dumps([VERSION, UTTERANCES, TAIL_S, NOISE_RMS, SAMPLE_RATE]).encode()).hexdigest()[:10]
    wav, meta = folder / f"default_speech_{key}.wav", folder / f"default_speech_{key}.json"
    if wav.is_file() and meta.is_file():
        try:
            return wav, [tuple(s) for s in json.loads(meta.read_text())["segments"]]  # type: ignore[misc]
        except (ValueError, KeyError, TypeError):
            pass  # a damaged sidecar: make both again
    clip, segs = make_speech_clip()
    write_wav(wav, clip, SAMPLE_RATE)
    fd, tmp = tempfile.mkstemp(prefix=f".{meta.name}.", dir=folder)
    with os.fdopen(fd, "w") as fh:
        json.dump({"sample_rate": SAMPLE_RATE, "segments": segs, "utterances": [t for t, _ in UTTERANCES]}, fh)
    os.replace(tmp, meta)
    return wav, segs
