"""ONNX: structure parsed from the wire (no ``onnx`` package needed), external data confined, sizes bounded.

External-data tensors name a file by ``location``; a hostile model can point it
at ``../../etc/passwd`` or an absolute path, or ship a symlink that leads out of
its folder. Every location must be a plain relative name (no NUL or control
characters, not over-long), resolve inside the model's own folder, exist as a
regular file, and hold ``offset + length`` bytes. Every tensor's declared size
must match what it stores and, with the declared shapes of graph values, fit the
memory budget (``budget.py``).
"""

from __future__ import annotations

import mmap
from pathlib import Path, PurePosixPath, PureWindowsPath

from edge_sdk.errors import ModelFileError, UnsafeModelError
from edge_sdk.formats import FormatHandler, ModelFile, register_format
from edge_sdk.formats.budget import MemoryBudget, numel
from edge_sdk.formats.onnx_wire import WireGraph, WireModel, WireTensor, WireValueInfo, parse_model

_EXTERNAL = 1
#: longest external-data location accepted, and longest path component (POSIX NAME_MAX)
MAX_LOCATION_CHARS = 1024
MAX_NAME_CHARS = 255

#: TensorProto.DataType -> (name, bits per element as stored in raw_data); STRING has no fixed size
ELEM_TYPES: dict[int, tuple[str, int]] = {
    1: ("float32", 32), 2: ("uint8", 8), 3: ("int8", 8), 4: ("uint16", 16), 5: ("int16", 16), 6: ("int32", 32),
    7: ("int64", 64), 8: ("string", 0), 9: ("bool", 8), 10: ("float16", 16), 11: ("float64", 64),
    12: ("uint32", 32), 13: ("uint64", 64), 14: ("complex64", 64), 15: ("complex128", 128), 16: ("bfloat16", 16),
    17: ("float8e4m3fn", 8), 18: ("float8e4m3fnuz", 8), 19: ("float8e5m2", 8), 20: ("float8e5m2fnuz", 8),
    21: ("uint4", 4), 22: ("int4", 4), 23: ("float4e2m1", 4), 24: ("float8e8m0", 8), 25: ("uint2", 2),
    26: ("int2", 2),
}  # fmt: skip
#: typed data field -> the data types whose elements it holds one-per-entry (onnx.proto's comments)
_TYPED_FIELDS = {4: {1}, 6: {8}, 7: {7}, 10: {11}, 11: {12, 13}}


def sniff(head: bytes) -> bool:
    # ModelProto almost always starts with ir_version (field 1, varint: 0x08) then a small number.
    return len(head) > 2 and head[0] == 0x08 and 3 <= head[1] <= 30


def read_wire_model(path: Path) -> WireModel:
    """Parse ``path`` as an ONNX model without copying tensor payloads (the file is memory-mapped)."""
    problem = ""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        try:
            model = parse_model(mm)
        except (ValueError, RecursionError, MemoryError) as e:  # WireError is a ValueError
            # keep only text: the traceback's frames pin views of the mapping (closing it would raise BufferError)
            problem = str(e) if not isinstance(e, RecursionError) else "structure nested too deeply"
    if problem:
        raise ModelFileError(f"{path} is not a valid ONNX model (corrupt or truncated): {problem}")
    return model


def resolve_external_location(model_dir: Path, location: str, tensor: str) -> Path:
    """Path of an external-data file, refused if it would leave ``model_dir`` or is not a plain file name."""
    if not location:
        raise UnsafeModelError(f"tensor '{tensor}' has external data with an empty location")
    bad = next((c for c in location if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise UnsafeModelError(
            f"tensor '{tensor}' has external data at {location[:80]!r}, which contains the control character "
            f"{bad!r}; refusing it (a location is a file name next to the model)"
        )
    parts = PurePosixPath(location.replace("\\", "/")).parts
    if len(location) > MAX_LOCATION_CHARS or any(len(p) > MAX_NAME_CHARS for p in parts):
        raise UnsafeModelError(
            f"tensor '{tensor}' has an external data location of {len(location)} characters "
            f"(limit {MAX_LOCATION_CHARS}, {MAX_NAME_CHARS} per name); refusing it"
        )
    if (
        PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or PureWindowsPath(location).drive
        or ".." in parts
    ):
        raise UnsafeModelError(
            f"tensor '{tensor}' has external data at '{location}', outside the model's folder; "
            "refusing to read it (external data must sit next to the model)"
        )
    try:
        base = model_dir.resolve()
        target = (model_dir / location).resolve()
    except (OSError, RuntimeError) as e:  # symlink loops: RuntimeError on Python < 3.13, OSError after
        raise UnsafeModelError(
            f"tensor '{tensor}' has external data at '{location}', which cannot be resolved ({e}); refusing it"
        ) from None
    if base != target and base not in target.parents:
        raise UnsafeModelError(
            f"tensor '{tensor}' has external data at '{location}', which resolves to {target}, "
            "outside the model's folder (symlink?); refusing to read it"
        )
    return target


def _check_external(t: WireTensor, path: Path, companions: dict[Path, int], budget: MemoryBudget) -> None:
    location = t.external.get("location", "")
    target = resolve_external_location(path.parent, location, t.name)
    if target not in companions:
        if not target.is_file():
            raise ModelFileError(
                f"tensor '{t.name}' needs external data file '{location}', which does not exist next to {path}"
            )
        companions[target] = target.stat().st_size
    try:
        offset = int(t.external.get("offset", "0") or 0)
        length = int(t.external.get("length", "") or companions[target] - offset)
    except ValueError:
        raise ModelFileError(f"tensor '{t.name}' has a non-numeric external data offset/length") from None
    if offset < 0 or length < 0 or offset + length > companions[target]:
        raise ModelFileError(
            f"tensor '{t.name}' reads bytes {offset}..{offset + length} of '{location}', "
            f"which has only {companions[target]} bytes (truncated external data?)"
        )
    if length > budget.limit:
        budget.tensor(f"external data of tensor '{t.name}' in '{location}'", t.dims, "bytes", length, add=False)


def _check_tensor(t: WireTensor, budget: MemoryBudget) -> None:
    """Declared dims against what the tensor stores, and against the budget."""
    dtype, bits = ELEM_TYPES.get(t.data_type, (f"type {t.data_type}", 0))
    if any(d < 0 for d in t.dims):
        raise ModelFileError(f"{t.where} '{t.name}' has a negative dimension in dims {t.dims}")
    n = numel(t.dims)
    nbytes = (n * bits + 7) // 8 if bits else n * 8  # strings and unknown types: a pointer per element
    budget.tensor(f"{t.where} '{t.name}'", t.dims, dtype, nbytes)
    if t.data_location == _EXTERNAL or t.external:
        return
    stored = None
    if t.raw_bytes is not None and bits:
        stored, expected = t.raw_bytes, (n * bits + 7) // 8
    else:
        for fnum, count in t.typed_counts.items():
            if t.data_type in _TYPED_FIELDS.get(fnum, ()):
                stored, expected = count, n
    if stored is not None and stored != expected:
        unit = "bytes" if t.raw_bytes is not None and bits else "elements"
        raise ModelFileError(
            f"{t.where} '{t.name}' declares dims {t.dims} of {dtype} ({expected} {unit}) "
            f"but stores {stored} {unit} (corrupt tensor)"
        )


def _check_value(vi: WireValueInfo, kind: str, budget: MemoryBudget) -> None:
    """A graph input/output/value_info with a static shape: what the runtime allocates for it."""
    dims = [d for d in vi.dims if isinstance(d, int) and d > 0]
    if not dims:
        return
    dtype, bits = ELEM_TYPES.get(vi.elem_type, (f"type {vi.elem_type}", 8))
    nbytes = (numel(dims) * (bits or 64) + 7) // 8
    shown = [d if isinstance(d, int) and d > 0 else (d or "?") for d in vi.dims]
    budget.tensor(f"{kind} '{vi.name}'", shown, dtype, nbytes, add=False)


#: operators whose output size is set by a constant input (input index): the runtime allocates it at run time
_SHAPE_INPUTS = {"ConstantOfShape": 0, "Expand": 1, "Tile": 1}


def _check_shape_ops(g: WireGraph, budget: MemoryBudget) -> None:
    """ConstantOfShape/Expand/Tile fed a constant shape: what the runtime will allocate for their output.

    Expand and Tile are counted at one byte per element (their input's type and shape make it more),
    so the check never refuses a model that fits."""
    consts = {t.name: t.int_values for t in g.initializers if t.int_values is not None}
    for n in g.nodes:
        if n.op_type == "Constant" and n.outputs and n.tensors and n.tensors[0].int_values is not None:
            consts[n.outputs[0]] = n.tensors[0].int_values
    for n in g.nodes:
        k = _SHAPE_INPUTS.get(n.op_type)
        if k is None or n.domain not in ("", "ai.onnx") or len(n.inputs) <= k or n.inputs[k] not in consts:
            continue
        values = consts[n.inputs[k]]
        if n.op_type == "ConstantOfShape":
            dtype, bits = ELEM_TYPES.get(n.tensors[0].data_type, ("?", 32)) if n.tensors else ("float32", 32)
        else:
            dtype, bits = "at least 1 byte per element", 8
        output = n.outputs[0] if n.outputs else "?"
        what = f"the output '{output}' of {n.op_type} node '{n.name}' (constant '{n.inputs[k]}')"
        budget.tensor(what, values, dtype, (numel(values) * (bits or 8) + 7) // 8, add=False)


def validate(path: Path, size: int, max_memory: int | None = None) -> ModelFile:
    model = read_wire_model(path)
    budget = MemoryBudget.for_file(path, max_memory)
    companions: dict[Path, int] = {}
    for t in model.all_tensors():
        _check_tensor(t, budget)
        if t.data_location == _EXTERNAL or t.external:
            _check_external(t, path, companions, budget)
    for g in model.all_graphs():
        _check_shape_ops(g, budget)
        for kind, values in (("graph input", g.inputs), ("graph output", g.outputs), ("value", g.value_info)):
            for vi in values:
                _check_value(vi, kind, budget)
    return ModelFile(path=path, format="onnx", size=size + sum(companions.values()), companions=tuple(companions))


register_format(FormatHandler("onnx", (".onnx", ".ort"), sniff, validate))

__all__ = ["read_wire_model", "resolve_external_location"]
