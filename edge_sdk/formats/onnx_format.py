"""ONNX: structure parsed from the wire (no ``onnx`` package needed) and external data confined.

External-data tensors name a file by ``location``; a hostile model can point it
at ``../../etc/passwd`` or an absolute path, or ship a symlink that leads out of
its folder. Every location must resolve inside the model's own folder, exist as
a regular file, and hold ``offset + length`` bytes.
"""

from __future__ import annotations

import mmap
from pathlib import Path, PurePosixPath, PureWindowsPath

from edge_sdk.errors import ModelFileError, UnsafeModelError
from edge_sdk.formats import FormatHandler, ModelFile, register_format
from edge_sdk.formats.onnx_wire import WireError, WireModel, parse_model

_EXTERNAL = 1


def sniff(head: bytes) -> bool:
    # ModelProto almost always starts with ir_version (field 1, varint: 0x08) then a small number.
    return len(head) > 2 and head[0] == 0x08 and 3 <= head[1] <= 30


def read_wire_model(path: Path) -> WireModel:
    """Parse ``path`` as an ONNX model without copying tensor payloads (the file is memory-mapped)."""
    problem = ""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        try:
            model = parse_model(mm)
        except WireError as e:
            problem = str(e)  # keep only text: the traceback's frames pin views of the mapping
    if problem:
        raise ModelFileError(f"{path} is not a valid ONNX model (corrupt or truncated): {problem}")
    return model


def resolve_external_location(model_dir: Path, location: str, tensor: str) -> Path:
    """Path of an external-data file, refused if it would leave ``model_dir``."""
    if not location:
        raise UnsafeModelError(f"tensor '{tensor}' has external data with an empty location")
    if (
        PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or PureWindowsPath(location).drive
        or ".." in PurePosixPath(location.replace("\\", "/")).parts
    ):
        raise UnsafeModelError(
            f"tensor '{tensor}' has external data at '{location}', outside the model's folder; "
            "refusing to read it (external data must sit next to the model)"
        )
    base = model_dir.resolve()
    target = (model_dir / location).resolve()
    if base != target and base not in target.parents:
        raise UnsafeModelError(
            f"tensor '{tensor}' has external data at '{location}', which resolves to {target}, "
            "outside the model's folder (symlink?); refusing to read it"
        )
    return target


def validate(path: Path, size: int) -> ModelFile:
    model = read_wire_model(path)
    companions: dict[Path, int] = {}
    for t in model.all_tensors():
        if t.data_location != _EXTERNAL and not t.external:
            continue
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
            length = int(t.external.get("length", "0") or 0)
        except ValueError:
            raise ModelFileError(f"tensor '{t.name}' has a non-numeric external data offset/length") from None
        if offset < 0 or length < 0 or offset + length > companions[target]:
            raise ModelFileError(
                f"tensor '{t.name}' reads bytes {offset}..{offset + length} of '{location}', "
                f"which has only {companions[target]} bytes (truncated external data?)"
            )
    return ModelFile(path=path, format="onnx", size=size + sum(companions.values()), companions=tuple(companions))


register_format(FormatHandler("onnx", (".onnx", ".ort"), sniff, validate))

__all__ = ["read_wire_model", "resolve_external_location"]
