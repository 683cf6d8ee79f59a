"""TFLite flatbuffers: identifier ``TFL3`` at byte 4, root table and buffers inside the file.

The structural checks here are the ones that stop a native FlatBuffer reader from
reading past the end of a truncated or forged file: root table offset, the
vtable it points to, and the offset/size of each out-of-line buffer.
"""

from __future__ import annotations

import struct
from pathlib import Path

from edge_sdk.errors import ModelFileError
from edge_sdk.formats import FormatHandler, ModelFile, register_format

IDENTIFIER = b"TFL3"


def sniff(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] == IDENTIFIER


def _u32(buf: bytes, pos: int) -> int:
    return struct.unpack_from("<I", buf, pos)[0]


def _table_field(buf: bytes, table: int, index: int) -> int | None:
    """Absolute position of field ``index`` of the table at ``table``, or None if absent."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    if not 0 <= vtable <= len(buf) - 4:
        raise ModelFileError("vtable outside the file")
    vt_size = struct.unpack_from("<H", buf, vtable)[0]
    if vtable + vt_size > len(buf):
        raise ModelFileError("vtable runs past the end of the file")
    slot = 4 + 2 * index
    if slot + 2 > vt_size:
        return None
    off = struct.unpack_from("<H", buf, vtable + slot)[0]
    return table + off if off else None


def _check_structure(buf: bytes) -> None:
    root = _u32(buf, 0)
    if not 8 <= root <= len(buf) - 4:
        raise ModelFileError(f"root table offset {root} is outside the file (size {len(buf)})")
    # Model.buffers is field 4: vector of tables; each Buffer has data(0), offset(1), size(2).
    pos = _table_field(buf, root, 4)
    if pos is None:
        return
    vec = pos + _u32(buf, pos)
    if vec + 4 > len(buf):
        raise ModelFileError("buffers vector outside the file")
    count = _u32(buf, vec)
    if vec + 4 + 4 * count > len(buf):
        raise ModelFileError(f"buffers vector claims {count} entries past the end of the file")
    for i in range(count):
        elem = vec + 4 + 4 * i
        table = elem + _u32(buf, elem)
        if table + 4 > len(buf):
            raise ModelFileError(f"buffer {i} table outside the file")
        data = _table_field(buf, table, 0)
        if data is not None:
            dvec = data + _u32(buf, data)
            if dvec + 4 > len(buf) or dvec + 4 + _u32(buf, dvec) > len(buf):
                raise ModelFileError(f"buffer {i} data runs past the end of the file")
        off_pos, size_pos = _table_field(buf, table, 1), _table_field(buf, table, 2)
        if off_pos is not None and size_pos is not None:
            off, size = struct.unpack_from("<Q", buf, off_pos)[0], struct.unpack_from("<Q", buf, size_pos)[0]
            if off > 1 and off + size > len(buf):
                raise ModelFileError(f"buffer {i} (offset {off}, size {size}) runs past the end of the file")


def validate(path: Path, size: int) -> ModelFile:
    buf = path.read_bytes()
    try:
        _check_structure(buf)
    except ModelFileError as e:
        raise ModelFileError(f"{path} is a corrupt or truncated TFLite file: {e}") from None
    except struct.error:
        raise ModelFileError(f"{path} is a corrupt or truncated TFLite file: read past the end") from None
    return ModelFile(path=path, format="tflite", size=size)


register_format(FormatHandler("tflite", (".tflite", ".lite"), sniff, validate))
