"""TFLite mutations aimed at the flatbuffer's structure: offsets, vector lengths, indices and shape ints.

A small walker follows the TFLite schema (field numbers from ``tensorflow/lite/schema/schema.fbs``)
through the seed and records where each interesting field sits: tensor shapes and shape signatures,
buffer/opcode/tensor indices, subgraph inputs and outputs, vector lengths, table offsets, vtable
entries, buffer offset/size, names. A mutation overwrites one of them in place with a value that
breaks a reader's assumptions (-1, 0, 2^31-1, 1e9, one past the end), so the rest of the file
stays well formed and the loader gets past the first checks.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from mutate_bytes import mutate_bytes

I32 = (-1, 0, 1, 2, 255, 65535, 2**31 - 1, -(2**31), 10**9, 10**6)
BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80")


@dataclass(frozen=True)
class Target:
    pos: int
    kind: str  # i32 | u8 | veclen | uoffset | u64 | soffset | vt16 | string
    label: str
    size: int = 0  # string length


class _Walker:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.targets: list[Target] = []

    def u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.buf, pos)[0]

    def add(self, pos: int, kind: str, label: str, size: int = 0) -> None:
        self.targets.append(Target(pos, kind, label, size))

    def field(self, table: int, index: int) -> int | None:
        vtable = table - struct.unpack_from("<i", self.buf, table)[0]
        vt_size = struct.unpack_from("<H", self.buf, vtable)[0]
        slot = 4 + 2 * index
        if slot + 2 > vt_size:
            return None
        off = struct.unpack_from("<H", self.buf, vtable + slot)[0]
        return table + off if off else None

    def table(self, table: int, label: str) -> None:
        self.add(table, "soffset", f"{label}.vtable")
        vtable = table - struct.unpack_from("<i", self.buf, table)[0]
        vt_size = struct.unpack_from("<H", self.buf, vtable)[0]
        for slot in range(0, vt_size, 2):
            self.add(vtable + slot, "vt16", f"{label}.vtable[{slot // 2}]")

    def scalar(self, table: int, index: int, kind: str, label: str) -> None:
        pos = self.field(table, index)
        if pos is not None:
            self.add(pos, kind, label)

    def vector(self, table: int, index: int, label: str) -> tuple[int, int] | None:
        """(first element position, count) of a vector field; records its offset and length."""
        pos = self.field(table, index)
        if pos is None:
            return None
        self.add(pos, "uoffset", f"{label}.offset")
        vec = pos + self.u32(pos)
        self.add(vec, "veclen", f"{label}.length")
        return vec + 4, self.u32(vec)

    def ints(self, table: int, index: int, label: str) -> None:
        v = self.vector(table, index, label)
        if v:
            for i in range(v[1]):
                self.add(v[0] + 4 * i, "i32", f"{label}[{i}]")

    def string(self, table: int, index: int, label: str) -> None:
        v = self.vector(table, index, label)
        if v and v[1]:
            self.add(v[0], "string", label, v[1])

    def tables(self, table: int, index: int, label: str) -> list[tuple[int, str]]:
        v = self.vector(table, index, label)
        out = []
        if v:
            for i in range(v[1]):
                elem = v[0] + 4 * i
                self.add(elem, "uoffset", f"{label}[{i}].offset")
                out.append((elem + self.u32(elem), f"{label}[{i}]"))
        for t, lab in out:
            self.table(t, lab)
        return out

    def model(self) -> None:
        root = self.u32(0)
        self.add(0, "uoffset", "root")
        self.table(root, "model")
        self.scalar(root, 0, "i32", "model.version")
        for t, lab in self.tables(root, 1, "operator_codes"):
            self.scalar(t, 0, "u8", f"{lab}.deprecated_builtin_code")
            self.string(t, 1, f"{lab}.custom_code")
            self.scalar(t, 2, "i32", f"{lab}.version")
            self.scalar(t, 3, "i32", f"{lab}.builtin_code")
        for sg, sl in self.tables(root, 2, "subgraphs"):
            for t, lab in self.tables(sg, 0, f"{sl}.tensors"):
                self.ints(t, 0, f"{lab}.shape")
                self.scalar(t, 1, "u8", f"{lab}.type")
                self.scalar(t, 2, "i32", f"{lab}.buffer")
                self.string(t, 3, f"{lab}.name")
                q = self.field(t, 4)
                if q is not None:
                    qt = q + self.u32(q)
                    self.add(q, "uoffset", f"{lab}.quantization.offset")
                    self.table(qt, f"{lab}.quantization")
                    self.vector(qt, 2, f"{lab}.quantization.scale")
                    self.vector(qt, 3, f"{lab}.quantization.zero_point")
                    self.scalar(qt, 6, "i32", f"{lab}.quantization.quantized_dimension")
                self.ints(t, 7, f"{lab}.shape_signature")
            self.ints(sg, 1, f"{sl}.inputs")
            self.ints(sg, 2, f"{sl}.outputs")
            for t, lab in self.tables(sg, 3, f"{sl}.operators"):
                self.scalar(t, 0, "i32", f"{lab}.opcode_index")
                self.ints(t, 1, f"{lab}.inputs")
                self.ints(t, 2, f"{lab}.outputs")
                self.scalar(t, 3, "u8", f"{lab}.builtin_options_type")
                o = self.field(t, 4)
                if o is not None:
                    self.add(o, "uoffset", f"{lab}.builtin_options.offset")
                    self.table(o + self.u32(o), f"{lab}.builtin_options")
                self.ints(t, 8, f"{lab}.intermediates")
            self.string(sg, 4, f"{sl}.name")
        for t, lab in self.tables(root, 4, "buffers"):
            self.vector(t, 0, f"{lab}.data")
            self.scalar(t, 1, "u64", f"{lab}.offset")
            self.scalar(t, 2, "u64", f"{lab}.size")
        self.ints(root, 5, "metadata_buffer")
        for t, lab in self.tables(root, 6, "metadata"):
            self.string(t, 0, f"{lab}.name")
            self.scalar(t, 1, "i32", f"{lab}.buffer")
        for t, lab in self.tables(root, 7, "signature_defs"):
            for key, kl in ((0, "inputs"), (1, "outputs")):
                for m, ml in self.tables(t, key, f"{lab}.{kl}"):
                    self.string(m, 0, f"{ml}.name")
                    self.scalar(m, 1, "i32", f"{ml}.tensor_index")
            self.string(t, 2, f"{lab}.signature_key")
            self.scalar(t, 4, "i32", f"{lab}.subgraph_index")


_TARGETS: dict[bytes, list[Target]] = {}


def targets(buf: bytes) -> list[Target]:
    """Interesting field positions of a (valid) TFLite seed, memoised per seed."""
    if buf not in _TARGETS:
        w = _Walker(buf)
        try:
            w.model()
        except (struct.error, IndexError):
            pass  # a seed we cannot walk fully: keep what was found
        _TARGETS[buf] = w.targets
    return _TARGETS[buf]


def _poke(rng: random.Random, buf: bytearray, t: Target) -> str:
    n = len(buf)
    if t.kind == "i32":
        v = rng.choice(I32)
        struct.pack_into("<i", buf, t.pos, v)
    elif t.kind == "u8":
        v = rng.choice((0, 1, 2, 3, 9, 16, 17, 127, 128, 255, rng.randrange(256)))
        buf[t.pos] = v
    elif t.kind in ("veclen", "uoffset"):
        old = struct.unpack_from("<I", buf, t.pos)[0]
        v = (
            rng.choice((0, 1, old + 1, old * 2, old - 1, n, n - t.pos, 2**31 - 1, 0xFFFFFFFF, 10**9, old + 4))
            & 0xFFFFFFFF
        )
        struct.pack_into("<I", buf, t.pos, v)
    elif t.kind == "u64":
        v = rng.choice((0, 1, n, n - 1, 2**63 - 1, 2**64 - 1, 2**32, 4096))
        struct.pack_into("<Q", buf, t.pos, v)
    elif t.kind == "soffset":
        v = rng.choice((0, 4, -4, 2**31 - 1, -(2**31), t.pos, -n))
        struct.pack_into("<i", buf, t.pos, v)
    elif t.kind == "vt16":
        v = rng.choice((0, 2, 4, 0xFFFF, 0x8000, 255))
        struct.pack_into("<H", buf, t.pos, v)
    else:  # string: same length, not UTF-8 (or a NUL inside)
        bad = rng.choice((*BAD_UTF8, b"\0"))
        v = bad.hex()
        end = min(t.pos + t.size, n)
        buf[t.pos : end] = (bad * t.size)[: end - t.pos]
    return f"{t.label}={v}"


def mutate(rng: random.Random, files: dict, main: str) -> tuple[dict, list[str]]:
    """One TFLite case: targeted field overwrites, generic byte mutations, or both."""
    files = dict(files)
    data = files[main]
    mode = rng.choices(("struct", "raw", "both"), (0.6, 0.2, 0.2))[0]
    done: list[str] = []
    if mode != "raw":
        found = targets(data)
        buf = bytearray(data)
        if found:
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                done.append(_poke(rng, buf, rng.choice(found)))
        data = bytes(buf)
    if mode != "struct":
        data, raw = mutate_bytes(rng, data)
        done.extend(raw)
    files[main] = data
    return files, done
