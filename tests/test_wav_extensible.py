"""WAVE_FORMAT_EXTENSIBLE WAV files (16/24/32-bit PCM, as Windows and many recorders write them) are read;
float ones are refused by name."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edge_sdk.audio import read_wav
from edge_sdk.errors import AudioFileError

# -- WAVE_FORMAT_EXTENSIBLE -----------------------------------------------------------------------------

_PCM_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"  # KSDATAFORMAT_SUBTYPE_* tail


def _extensible_wav(path, samples: np.ndarray, rate: int, bits: int, *, container: int | None = None,
                    subformat: int = 1) -> None:  # fmt: skip
    """Write ``samples`` (int, ``(n, ch)``) as a WAVE_FORMAT_EXTENSIBLE file, laid out as the spec says."""
    ch = samples.shape[1]
    width = (container or bits) // 8
    block = width * ch
    fmt = struct.pack("<HHIIHH", 0xFFFE, ch, rate, rate * block, block, container or bits)
    fmt += struct.pack("<HHI", 22, bits, (1 << ch) - 1) + struct.pack("<H", subformat) + _PCM_GUID_TAIL
    shifted = samples.astype(np.int64) << ((container or bits) - bits)  # valid bits left-justified
    raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in shifted.reshape(-1))
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(raw)) + raw
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize("bits", [16, 24, 32])
def test_wave_format_extensible_pcm_is_read(tmp_path, bits):
    rng = np.random.default_rng(bits)
    full = 1 << (bits - 1)
    x = rng.integers(-full, full, size=(200, 2))
    p = tmp_path / f"ext{bits}.wav"
    _extensible_wav(p, x, 48000, bits)
    y, rate = read_wav(p, mono=False)
    assert rate == 48000 and y.shape == (200, 2)
    np.testing.assert_allclose(y, x / full, atol=1e-6)


def test_wave_format_extensible_24_bits_in_32_bit_containers(tmp_path):
    x = np.array([[0], [1 << 22], [-(1 << 23)], [12345]])
    p = tmp_path / "ext24in32.wav"
    _extensible_wav(p, x, 16000, 24, container=32)
    y, _ = read_wav(p)
    np.testing.assert_allclose(y, x[:, 0] / (1 << 23), atol=1e-6)


def test_wave_format_extensible_float_is_refused_by_name(tmp_path):
    p = tmp_path / "float.wav"
    _extensible_wav(p, np.zeros((10, 1), int), 16000, 32, subformat=3)
    with pytest.raises(AudioFileError, match=r"float\.wav holds float samples.*sox IN -b 16"):
        read_wav(p)


# -- output names and folders -----------------------------------------------------------------------------
