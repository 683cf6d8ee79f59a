"""TFLite flatbuffers: identifier ``TFL3`` at byte 4, root table and buffers inside the file.

The structural checks here are the ones that stop a native FlatBuffer reader from
reading past the end of a truncated or forged file: root table offset, the vtables
and vectors it points to, and the offset/size of each out-of-line buffer. Then what
the Python API and the interpreter trust without checking: every tensor index an
input, output or operator names is inside its subgraph's tensor table, every name is
UTF-8, and the tensors' declared shapes fit the memory budget (``budget.py``) before
the interpreter allocates them. Field numbers come from tensorflow/lite/schema/schema.fbs.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from edge_sdk.errors import ModelFileError
from edge_sdk.formats import FormatHandler, ModelFile, register_format
from edge_sdk.formats.budget import MemoryBudget, numel, shape_str

IDENTIFIER = b"TFL3"

#: TensorType -> (name, bytes per element as allocated; sub-byte types are unpacked to one byte)
TENSOR_TYPES: dict[int, tuple[str, int]] = {
    0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1), 4: ("int64", 8), 5: ("string", 1),
    6: ("bool", 1), 7: ("int16", 2), 8: ("complex64", 8), 9: ("int8", 1), 10: ("float64", 8),
    11: ("complex128", 16), 12: ("uint64", 8), 13: ("resource", 8), 14: ("variant", 8), 15: ("uint32", 4),
    16: ("uint16", 2), 17: ("int4", 1), 18: ("bfloat16", 2), 19: ("int2", 1), 20: ("uint4", 1),
}  # fmt: skip

#: bits per element as stored in a constant buffer (sub-byte types packed); string/resource/variant vary
_STORED_BITS = {k: size * 8 for k, (_, size) in TENSOR_TYPES.items() if k not in (5, 13, 14)} | {17: 4, 19: 2, 20: 4}
#: the builtin operators that take an absent (-1) input, and where: any other -1 makes a kernel read through
#: a null tensor (SIGSEGV; found by benchmarks/fuzz_loaders.py for RESHAPE's shape and CONV_2D's filter).
#: Convolutions and FULLY_CONNECTED: their bias; LSTM / RNN / SVDF / LSH_PROJECTION families: any input but #0
#: (None). Custom operators are the runtime's business.
_OPTIONAL_ONLY_AT: dict[int, set[int] | None] = {
    3: {2}, 4: {2}, 9: {2}, 67: {3}, 132: {2}, 141: {3},  # CONV_2D, DEPTHWISE, FC, TRANSPOSE_CONV, CONV_3D(_T)
    16: None, 44: None, 52: None, 46: None, 35: None, 24: None, 27: None, 15: None,  # LSTM/RNN/SVDF/LSH
}  # fmt: skip
_CUSTOM, _DEQUANTIZE = 32, 6
#: builtin options (union type -> name, fields that must be 1..65536): strides, filter sizes and dilations
#: the kernels divide by or loop over (AVERAGE_POOL_2D with filter height -2**31 segfaults LiteRT on run).
_POSITIVE_OPTIONS: dict[int, tuple[str, dict[int, str]]] = {
    1: ("Conv2DOptions", {1: "stride_w", 2: "stride_h", 4: "dilation_w_factor", 5: "dilation_h_factor"}),
    2: ("DepthwiseConv2DOptions", {1: "stride_w", 2: "stride_h", 5: "dilation_w_factor", 6: "dilation_h_factor"}),
    5: ("Pool2DOptions", {1: "stride_w", 2: "stride_h", 3: "filter_width", 4: "filter_height"}),
    49: ("TransposeConvOptions", {1: "stride_w", 2: "stride_h"}),
    106: ("Conv3DOptions", {1: "stride_d", 2: "stride_w", 3: "stride_h", 5: "dilation_d_factor",
                            6: "dilation_w_factor", 7: "dilation_h_factor"}),
}  # fmt: skip
#: schema defaults of those fields when absent (dilations default to 1, strides and filters to 0)
_DEFAULT_ONE = {"dilation_w_factor", "dilation_h_factor", "dilation_d_factor"}

# table field indexes (schema.fbs order)
_MODEL_OPCODES, _MODEL_SUBGRAPHS, _MODEL_BUFFERS, _MODEL_SIGNATURES = 1, 2, 4, 7
_SG_TENSORS, _SG_INPUTS, _SG_OUTPUTS, _SG_OPERATORS = 0, 1, 2, 3
_T_SHAPE, _T_TYPE, _T_BUFFER, _T_NAME, _T_SPARSITY, _T_SIGNATURE = 0, 1, 2, 3, 6, 7
_OP_OPCODE, _OP_INPUTS, _OP_OUTPUTS, _OP_OPTIONS_TYPE, _OP_OPTIONS, _OP_INTERMEDIATES = 0, 1, 2, 3, 4, 8
_SIG_INPUTS, _SIG_OUTPUTS, _SIG_KEY, _SIG_SUBGRAPH = 0, 1, 2, 4


class _Corrupt(Exception):
    pass


def sniff(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] == IDENTIFIER


class _Flat:
    """Bounds-checked reads of a FlatBuffer; every failure is :class:`_Corrupt` with what was wrong."""

    def __init__(self, buf: bytes | mmap.mmap) -> None:
        self.buf = buf
        self.n = len(buf)

    def _need(self, pos: int, size: int, what: str) -> None:
        if pos < 0 or pos + size > self.n:
            raise _Corrupt(f"{what} at byte {pos} runs past the end of the file (size {self.n})")

    def u32(self, pos: int, what: str = "offset") -> int:
        self._need(pos, 4, what)
        return struct.unpack_from("<I", self.buf, pos)[0]

    def field(self, table: int, index: int) -> int | None:
        """Absolute position of field ``index`` of the table at ``table``, or None if absent."""
        self._need(table, 4, "table")
        vtable = table - struct.unpack_from("<i", self.buf, table)[0]
        self._need(vtable, 4, "vtable")
        vt_size, tbl_size = struct.unpack_from("<HH", self.buf, vtable)
        self._need(vtable, vt_size, "vtable")
        slot = 4 + 2 * index
        if slot + 2 > vt_size:
            return None
        off = struct.unpack_from("<H", self.buf, vtable + slot)[0]
        if not off:
            return None
        if off >= max(tbl_size, 4):
            raise _Corrupt(f"field {index} of the table at byte {table} lies outside the table")
        return table + off

    def scalar(self, table: int, index: int, fmt: str, default: int) -> int:
        pos = self.field(table, index)
        if pos is None:
            return default
        self._need(pos, struct.calcsize(fmt), "scalar")
        return struct.unpack_from("<" + fmt, self.buf, pos)[0]

    def ref(self, table: int, index: int, what: str) -> int | None:
        """Position an offset field (table, vector, string) points to, or None if absent."""
        pos = self.field(table, index)
        if pos is None:
            return None
        target = pos + self.u32(pos, what)
        self._need(target, 4, what)
        return target

    def vector(self, table: int, index: int, elem: int, what: str) -> tuple[int, int]:
        """``(start of elements, count)`` of a vector field; ``(0, 0)`` if absent."""
        vec = self.ref(table, index, what)
        if vec is None:
            return 0, 0
        count = self.u32(vec, what)
        if vec + 4 + count * elem > self.n:
            raise _Corrupt(f"{what} claims {count} entries, past the end of the file")
        return vec + 4, count

    def tables(self, table: int, index: int, what: str) -> list[int]:
        start, count = self.vector(table, index, 4, what)
        out = []
        for i in range(count):
            elem = start + 4 * i
            target = elem + self.u32(elem, what)
            self._need(target, 4, f"{what}[{i}]")
            out.append(target)
        return out

    def ints(self, table: int, index: int, what: str) -> list[int]:
        start, count = self.vector(table, index, 4, what)
        return list(struct.unpack_from(f"<{count}i", self.buf, start)) if count else []

    def string(self, table: int, index: int, what: str) -> str:
        """A string field decoded as UTF-8 (the interpreter's Python API decodes names the same way)."""
        start, count = self.vector(table, index, 1, what)
        raw = bytes(self.buf[start : start + count]) if count else b""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Corrupt(f"{what} is not UTF-8 text ({raw[:40]!r})") from None


def _check_buffers(fb: _Flat, root: int) -> list[tuple[int, int]]:
    """Bounds of every buffer; returns, per buffer, ``(start, size)`` of its data (size 0: no data)."""
    spans = []
    for i, table in enumerate(fb.tables(root, _MODEL_BUFFERS, "buffers vector")):
        start, size = fb.vector(table, 0, 1, f"buffer {i} data")
        off = fb.scalar(table, 1, "Q", 0)
        length = fb.scalar(table, 2, "Q", 0)
        if off > 1 and off + length > fb.n:
            raise _Corrupt(f"buffer {i} (offset {off}, size {length}) runs past the end of the file")
        spans.append((start, size) if size or off <= 1 else (off, length))
    return spans


def _builtin_codes(fb: _Flat, root: int) -> list[int]:
    """Builtin operator code of each operator_codes entry: max(deprecated_builtin_code, builtin_code)."""
    return [
        max(fb.scalar(table, 0, "b", 0), fb.scalar(table, 3, "i", 0))
        for table in fb.tables(root, _MODEL_OPCODES, "operator_codes vector")
    ]


def _small_ints(fb: _Flat, span: tuple[int, int], ttype: int, shape: list[int]) -> list[int] | None:
    """Values of a small constant int32/int64 tensor (a shape, multiples), else None."""
    size = {2: 4, 4: 8}.get(ttype)
    count = numel(shape)
    if size is None or count > 64 or span[1] != size * count:
        return None
    return list(struct.unpack_from(f"<{count}{'i' if size == 4 else 'q'}", fb.buf, span[0]))


def _check_indexes(what: str, indexes: list[int], n_tensors: int, optional: bool) -> None:
    for k, t in enumerate(indexes):
        if not (0 <= t < n_tensors or (optional and t == -1)):
            raise _Corrupt(
                f"{what} #{k} names tensor index {t}, but the subgraph has {n_tensors} tensors (0..{n_tensors - 1})"
            )


#: builtin operators whose output shape is a constant input (its index): the interpreter allocates it
_SHAPE_INPUTS = {94: ("FILL", 0), 130: ("BROADCAST_TO", 1), 69: ("TILE", 1)}


@dataclass
class _Tensor:
    name: str
    shape: list[int]
    dtype: str
    constant: bool  # its buffer holds data (it lives in the file, the interpreter allocates nothing)
    nbytes: int  # what the interpreter allocates for it (0 for a constant)
    shown: list[object]  # shape_signature where it has one (-1 shown as ?)
    ints: list[int] | None = None  # values of a small constant int tensor (a shape, multiples)

    def describe(self) -> tuple[str, int]:
        return f"tensor '{self.name}' of shape {shape_str(self.shown)} {self.dtype}", self.nbytes


def _read_tensor(fb: _Flat, table: int, where: str, buffers: list[tuple[int, int]], budget: MemoryBudget) -> _Tensor:
    name = fb.string(table, _T_NAME, f"{where} name")
    shape = fb.ints(table, _T_SHAPE, f"{where} shape")
    signature = fb.ints(table, _T_SIGNATURE, f"{where} shape_signature")
    ttype = fb.scalar(table, _T_TYPE, "b", 0)
    buffer = fb.scalar(table, _T_BUFFER, "I", 0)
    if buffers and buffer >= len(buffers):
        raise _Corrupt(f"{where} ('{name}') uses buffer {buffer}, but the model has {len(buffers)} buffers")
    dtype, size = TENSOR_TYPES.get(ttype, (f"type {ttype}", 8))
    shown = [d if d >= 0 else "?" for d in (signature if len(signature) == len(shape) else shape)]
    span = buffers[buffer] if buffers else (0, 0)
    constant = span[1] > 0
    bits = _STORED_BITS.get(ttype)
    if constant and bits and fb.field(table, _T_SPARSITY) is None:  # sparse constants are stored compressed
        if any(d < 0 for d in shape):
            raise _Corrupt(f"{where} ('{name}') is a constant with a negative dimension in shape {shape}")
        need = (numel(shape) * bits + 7) // 8
        if span[1] < need:  # the interpreter would read past the buffer
            raise _Corrupt(
                f"{where} ('{name}') declares shape {shape} of {dtype} ({need} bytes) "
                f"but its buffer holds {span[1]} bytes"
            )
    nbytes = numel(shape) * size
    budget.tensor(f"tensor '{name}' ({where})", shown, dtype, nbytes, add=False)
    ints = _small_ints(fb, span, ttype, shape) if constant else None
    return _Tensor(name, shape, dtype, constant, 0 if constant else nbytes, shown, ints)


def _check_operator(
    where: str, code: int, ins: list[int], outs: list[int], tensors: list[_Tensor], budget: MemoryBudget
) -> None:
    """One operator's inputs against what its kernel assumes, and what it makes the interpreter allocate."""
    absent = [k for k, t in enumerate(ins) if t == -1]
    allowed = _OPTIONAL_ONLY_AT.get(code, set())
    required = [k for k in absent if k == 0 or (allowed is not None and k not in allowed)]
    if code != _CUSTOM and required:
        raise _Corrupt(f"{where} (builtin operator {code}) has no tensor for its required input #{required[0]}")
    budget.together([tensors[i].describe() for i in (set(ins) | set(outs)) - {-1}], f"{where}'s inputs and outputs")
    if code == _DEQUANTIZE and ins and outs and min(ins[0], outs[0]) >= 0 and tensors[ins[0]].constant:
        src, dst = tensors[ins[0]], tensors[outs[0]]
        if numel(src.shape) != numel(dst.shape):  # XNNPACK unpacks the constant at the output's size
            raise _Corrupt(
                f"{where} (DEQUANTIZE) turns constant tensor {ins[0]} of shape {src.shape} into tensor {outs[0]} "
                f"of shape {dst.shape}: the element counts differ"
            )
    kind, k = _SHAPE_INPUTS.get(code, ("", -1))
    if k >= 0 and len(ins) > k and ins[k] >= 0 and (values := tensors[ins[k]].ints) is not None:
        what = f"the output of {where} ({kind}, constant shape input tensor {ins[k]})"
        budget.tensor(what, values, "at least 1 byte per element", numel(values), add=False)  # a lower bound


def _check_subgraph(
    fb: _Flat, s: int, sg: int, buffers: list[tuple[int, int]], codes: list[int], budget: MemoryBudget
) -> int:
    tables = fb.tables(sg, _SG_TENSORS, f"subgraph {s} tensors")
    tensors = [_read_tensor(fb, table, f"subgraph {s} tensor {t}", buffers, budget) for t, table in enumerate(tables)]
    n = len(tensors)
    ins, outs = fb.ints(sg, _SG_INPUTS, f"subgraph {s} inputs"), fb.ints(sg, _SG_OUTPUTS, f"subgraph {s} outputs")
    _check_indexes(f"subgraph {s} input", ins, n, optional=False)
    _check_indexes(f"subgraph {s} output", outs, n, optional=False)
    for k, t in enumerate(ins):
        if tensors[t].constant:  # setting the input would write into the file's read-only mapping
            raise _Corrupt(f"subgraph {s} input #{k} is tensor {t}, a constant with data in the file")
    budget.together([tensors[i].describe() for i in set(ins) | set(outs)], f"subgraph {s}'s inputs and outputs")
    for o, op in enumerate(fb.tables(sg, _SG_OPERATORS, f"subgraph {s} operators")):
        where = f"subgraph {s} operator {o}"
        opcode = fb.scalar(op, _OP_OPCODE, "I", 0)
        if opcode >= len(codes):
            raise _Corrupt(f"{where} uses operator code {opcode}, but the model has {len(codes)} operator codes")
        ins, outs = fb.ints(op, _OP_INPUTS, f"{where} inputs"), fb.ints(op, _OP_OUTPUTS, f"{where} outputs")
        _check_indexes(f"{where} input", ins, n, optional=True)
        _check_indexes(f"{where} output", outs, n, optional=True)
        _check_indexes(f"{where} intermediate", fb.ints(op, _OP_INTERMEDIATES, f"{where} intermediates"), n, True)
        _check_operator(where, codes[opcode], ins, outs, tensors, budget)
        _check_options(fb, op, where)
    return n


def _check_options(fb: _Flat, op: int, where: str) -> None:
    """Strides, filter sizes and dilations in 1..65536: a kernel divides by them or loops over them."""
    known = _POSITIVE_OPTIONS.get(fb.scalar(op, _OP_OPTIONS_TYPE, "B", 0))
    table = fb.ref(op, _OP_OPTIONS, f"{where} options") if known else None
    if known is None or table is None:
        return
    name, fields = known
    for index, field in fields.items():
        value = fb.scalar(table, index, "i", 1 if field in _DEFAULT_ONE else 0)
        if not 1 <= value <= 65536:
            raise _Corrupt(f"{where} has {name}.{field} = {value}; it must be between 1 and 65536")


def _check_signatures(fb: _Flat, root: int, tensor_counts: list[int]) -> None:
    for i, sig in enumerate(fb.tables(root, _MODEL_SIGNATURES, "signature_defs")):
        fb.string(sig, _SIG_KEY, f"signature {i} key")
        sub = fb.scalar(sig, _SIG_SUBGRAPH, "I", 0)
        if sub >= len(tensor_counts):
            raise _Corrupt(f"signature {i} names subgraph {sub}, but the model has {len(tensor_counts)} subgraphs")
        for field, kind in ((_SIG_INPUTS, "input"), (_SIG_OUTPUTS, "output")):
            for k, tm in enumerate(fb.tables(sig, field, f"signature {i} {kind}s")):
                fb.string(tm, 0, f"signature {i} {kind} {k} name")
                index = fb.scalar(tm, 1, "I", 0)
                if index >= tensor_counts[sub]:
                    raise _Corrupt(
                        f"signature {i} {kind} {k} names tensor index {index}, "
                        f"but subgraph {sub} has {tensor_counts[sub]} tensors"
                    )


def check_structure(buf: bytes | mmap.mmap, budget: MemoryBudget) -> None:
    """Raise :class:`ModelFileError` (or ModelTooLargeError) unless ``buf`` is a TFLite model the runtime can trust."""
    fb = _Flat(buf)
    try:
        root = fb.u32(0, "root table offset")
        if not 8 <= root <= fb.n - 4:
            raise _Corrupt(f"root table offset {root} is outside the file (size {fb.n})")
        buffers = _check_buffers(fb, root)
        codes = _builtin_codes(fb, root)
        subgraphs = fb.tables(root, _MODEL_SUBGRAPHS, "subgraphs vector")
        if not subgraphs:
            raise _Corrupt("the model has no subgraphs")
        counts = [_check_subgraph(fb, s, sg, buffers, codes, budget) for s, sg in enumerate(subgraphs)]
        _check_signatures(fb, root, counts)
    except _Corrupt as e:
        raise ModelFileError(f"{budget.path} is a corrupt or truncated TFLite file: {e}") from None
    except struct.error:
        raise ModelFileError(f"{budget.path} is a corrupt or truncated TFLite file: read past the end") from None


def validate(path: Path, size: int, max_memory: int | None = None) -> ModelFile:
    budget = MemoryBudget.for_file(path, max_memory)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        check_structure(mm, budget)
    return ModelFile(path=path, format="tflite", size=size)


register_format(FormatHandler("tflite", (".tflite", ".lite"), sniff, validate))
