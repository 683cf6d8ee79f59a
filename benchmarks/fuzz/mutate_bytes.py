"""Format-blind byte mutations (the classic AFL/libFuzzer set), seeded and deterministic."""

from __future__ import annotations

import random
import struct

INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF)
INTERESTING_32 = (0, 1, -1, 2, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 10**6, 10**9, 2**31 - 1, -(2**31), 2**31 - 2)
INTERESTING_64 = (0, 1, -1, 2**31, 2**32, 2**40, 2**62, 2**63 - 1, -(2**63))
#: protobuf varints that decode to huge or negative lengths / values
VARINTS = (
    b"\xff\xff\xff\xff\x0f",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
    b"\x80\x94\xeb\xdc\x03",
    b"\x00",
    b"\x7f",
)
MAX_GROWTH = 1 << 16


def _pos(rng: random.Random, data: bytearray) -> int:
    return rng.randrange(len(data)) if data else 0


def flip_bit(rng: random.Random, data: bytearray) -> str:
    if not data:
        return "flip_bit(empty)"
    i = _pos(rng, data)
    bit = rng.randrange(8)
    data[i] ^= 1 << bit
    return f"flip_bit@{i}.{bit}"


def set_byte(rng: random.Random, data: bytearray) -> str:
    if not data:
        return "set_byte(empty)"
    i, v = _pos(rng, data), rng.choice(INTERESTING_8 + (rng.randrange(256),))
    data[i] = v
    return f"set_byte@{i}={v}"


def set_int(rng: random.Random, data: bytearray) -> str:
    width = rng.choice((2, 4, 4, 4, 8))
    if len(data) < width:
        return "set_int(short)"
    i = rng.randrange(len(data) - width + 1)
    if width == 2:
        v = rng.choice((0, 1, 0x7FFF, 0xFFFF, 0x8000))
        struct.pack_into("<H", data, i, v)
    elif width == 4:
        v = rng.choice(INTERESTING_32)
        struct.pack_into("<I", data, i, v & 0xFFFFFFFF)
    else:
        v = rng.choice(INTERESTING_64)
        struct.pack_into("<Q", data, i, v & 0xFFFFFFFFFFFFFFFF)
    return f"set_int{width * 8}@{i}={v}"


def set_varint(rng: random.Random, data: bytearray) -> str:
    i = _pos(rng, data)
    v = rng.choice(VARINTS)
    data[i : i + len(v)] = v
    return f"set_varint@{i}={v.hex()}"


def truncate(rng: random.Random, data: bytearray) -> str:
    n = rng.choice((0, 1, 8, rng.randrange(len(data) + 1), len(data) - 1, len(data) // 2))
    n = max(0, min(n, len(data)))
    del data[n:]
    return f"truncate@{n}"


def insert(rng: random.Random, data: bytearray) -> str:
    i = rng.randrange(len(data) + 1)
    n = rng.choice((1, 4, 16, 256, 4096))
    fill = rng.choice((b"\x00", b"\xff", None))
    blob = fill * n if fill else bytes(rng.randrange(256) for _ in range(n))
    data[i:i] = blob
    return f"insert@{i}+{n}"


def delete(rng: random.Random, data: bytearray) -> str:
    if not data:
        return "delete(empty)"
    i = _pos(rng, data)
    n = rng.choice((1, 2, 4, 16, 128))
    del data[i : i + n]
    return f"delete@{i}-{n}"


def duplicate(rng: random.Random, data: bytearray) -> str:
    if not data:
        return "duplicate(empty)"
    i = _pos(rng, data)
    n = min(rng.choice((4, 16, 64, 512)), len(data) - i, MAX_GROWTH)
    j = rng.randrange(len(data) + 1)
    times = rng.choice((1, 1, 2, 16))
    data[j:j] = bytes(data[i : i + n]) * times
    return f"duplicate@{i}:{n}x{times}->{j}"


def overwrite_chunk(rng: random.Random, data: bytearray) -> str:
    if len(data) < 2:
        return "overwrite_chunk(short)"
    n = rng.randrange(1, min(64, len(data)))
    i, j = rng.randrange(len(data) - n + 1), rng.randrange(len(data) - n + 1)
    data[j : j + n] = data[i : i + n]
    return f"overwrite_chunk@{i}:{n}->{j}"


OPS = (flip_bit, set_byte, set_int, set_int, set_varint, truncate, insert, delete, duplicate, overwrite_chunk)


def mutate_bytes(rng: random.Random, data: bytes, count: int | None = None, ops=OPS) -> tuple[bytes, list[str]]:
    """Apply ``count`` (default 1-4) random byte mutations to ``data``; return the result and what was done."""
    buf = bytearray(data)
    done = []
    for _ in range(count if count is not None else rng.choice((1, 1, 2, 3, 4))):
        done.append(rng.choice(ops)(rng, buf))
    return bytes(buf), done
