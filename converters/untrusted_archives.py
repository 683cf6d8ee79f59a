"""Untrusted zip archives and pickles: sizes checked before anything is read, pickles checked without running them.

A ``.keras`` or ``.pt2`` file is a zip. Its central directory says how big each member unpacks to,
so a 5 MB file can declare an 8 GB ``config.json`` (a zip bomb): :func:`check_zip_members` refuses
a member, or a total, past the memory budget (:func:`edge_sdk.formats.budget.default_budget`:
``$EDGE_SDK_MAX_MODEL_MEMORY``, else half the machine's memory) and a member packed past
:data:`MAX_RATIO` to 1, before a byte is unpacked; :func:`read_member` reads with a cap.

A pickle is a program: its ``GLOBAL`` opcodes import any callable and ``REDUCE`` calls it.
:func:`pickle_refusal` walks the opcodes (``pickletools.genops`` parses, it never executes) and
holds them to the rules of torch's ``weights_only`` unpickler: only the opcodes it implements and
only the globals it allows (tensor rebuild functions, storages, dtypes, ``OrderedDict``...), so a
pickle that passes is plain tensor data for ``pickle.loads`` and ``torch.load`` alike.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from edge_sdk.errors import ModelTooLargeError
from edge_sdk.formats.budget import ENV_VAR, default_budget, human

#: a member that unpacks to more than this many times its packed size (and to more than RATIO_FLOOR) is a zip bomb
MAX_RATIO = 200
RATIO_FLOOR = 16 * 1024**2

#: the opcodes torch's weights_only unpickler implements (torch/_weights_only_unpickler.py); no other is needed
#: for tensor data, and the missing ones are those that reach code: STACK_GLOBAL, INST, OBJ, EXT1/2/4, ...
TENSOR_PICKLE_OPCODES = frozenset({
    "GLOBAL", "NEWOBJ", "REDUCE", "BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "MARK", "TUPLE",
    "TUPLE1", "TUPLE2", "TUPLE3", "NONE", "NEWFALSE", "NEWTRUE", "EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT",
    "EMPTY_SET", "BININT", "BININT1", "BININT2", "BINFLOAT", "BINUNICODE", "SHORT_BINSTRING", "BINPERSID",
    "BINGET", "LONG_BINGET", "BINPUT", "LONG_BINPUT", "LONG1", "PROTO", "STOP"
})  # fmt: skip


def _too_big(path: Path, what: str, limit: int) -> ModelTooLargeError:
    return ModelTooLargeError(
        f"{path.name}: {what}; refused before unpacking (memory budget {human(limit)} = {limit} bytes, members "
        f"over {human(RATIO_FLOOR)} packed at most {MAX_RATIO}:1): a corrupt or hostile file (a zip bomb), or a "
        f"model too big for this machine. To read it on purpose, raise the budget with {ENV_VAR} (e.g. {ENV_VAR}=64G)"
    )


def zip_members_refusal(zf: zipfile.ZipFile, limit: int) -> str | None:
    """Why ``zf`` must not be unpacked (a member, or all together, past ``limit`` bytes, or a large member
    packed past :data:`MAX_RATIO` to 1), or None. Only the central directory is read; Python's zipfile
    never unpacks more than a member declares, so the declared sizes bound what reading costs."""
    total = 0
    for info in zf.infolist():
        size, packed = info.file_size, info.compress_size
        if size > limit:
            return f"member '{info.filename}' unpacks to {human(size)} ({size} bytes)"
        if size > RATIO_FLOOR and size > MAX_RATIO * max(packed, 1):
            return (
                f"member '{info.filename}' unpacks to {human(size)} ({size} bytes) from {packed} bytes, "
                f"{size // max(packed, 1)}:1 (more than {MAX_RATIO}:1)"
            )
        total += size
        if total > limit:
            return f"its members unpack to {human(total)} ({total} bytes) in all"
    return None


def check_zip_members(path: Path, zf: zipfile.ZipFile, limit: int | None = None) -> None:
    """Raise :class:`ModelTooLargeError` naming the member and its sizes when :func:`zip_members_refusal`
    refuses ``zf`` (opened from ``path``); ``limit`` defaults to the memory budget."""
    limit = default_budget() if limit is None else int(limit)
    why = zip_members_refusal(zf, limit)
    if why is not None:
        raise _too_big(path, why, limit)


def read_member(path: Path, zf: zipfile.ZipFile, name: str, cap: int) -> bytes:
    """Member ``name`` of ``zf``, refused (naming it and its size) when it unpacks past ``cap`` bytes.
    Raises KeyError when there is no such member."""
    info = zf.getinfo(name)
    if info.file_size > cap:
        raise _too_big(path, f"member '{name}' unpacks to {human(info.file_size)} ({info.file_size} bytes)", cap)
    with zf.open(info) as f:
        data = f.read(cap + 1)
    if len(data) > cap:  # a member longer than its directory entry says
        raise _too_big(path, f"member '{name}' unpacks past {human(cap)}", cap)
    return data


@lru_cache(maxsize=1)
def _tensor_globals() -> frozenset[str]:
    """``module.name`` of every global torch's weights_only unpickler allows by default."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return frozenset(_get_allowed_globals())
    except Exception:  # a torch without it: the few globals torch.save writes for plain tensors
        return frozenset(
            ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
             "torch.Size", "torch.device", "torch.FloatStorage", "torch.HalfStorage", "torch.BFloat16Storage",
             "torch.DoubleStorage", "torch.LongStorage", "torch.IntStorage", "torch.ShortStorage",
             "torch.CharStorage", "torch.ByteStorage", "torch.BoolStorage"]
        )  # fmt: skip


def _global_name(arg: str) -> str:
    module, _, name = arg.partition(" ")
    if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names, mapped as the unpicklers map them
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def pickle_refusal(data: bytes, allowed: frozenset[str] | None = None) -> str | None:
    """Why the pickle ``data`` is not plain tensor data (e.g. ``"imports posix.system"``), or None if it is.

    Nothing is executed or imported: the opcodes are parsed and checked against torch's weights_only
    rules. ``allowed``: the permitted ``module.name`` globals (default: torch's weights_only list)."""
    allowed = _tensor_globals() if allowed is None else allowed
    end = None
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name not in TENSOR_PICKLE_OPCODES:
                return f"uses the pickle opcode {op.name}, which plain tensor data never needs"
            if op.name == "GLOBAL":
                full = _global_name(str(arg))
                if full not in allowed:
                    return f"imports {full}"
            if op.name == "STOP":
                end = pos + 1
    except Exception as e:  # genops raises ValueError (and others) on a malformed stream
        return f"is not a valid pickle ({type(e).__name__}: {str(e)[:100]})"
    if end is None:
        return "is not a valid pickle (no STOP opcode)"
    if end != len(data):
        return f"has {len(data) - end} bytes after its pickle"
    return None


def looks_like_pickle(data: bytes) -> bool:
    """True when ``data`` starts like a binary pickle (protocol 2-5), i.e. something an unpickler would run."""
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def torch_save_refusal(data: bytes, limit: int, open_reader: Any = None) -> str | None:
    """Why ``data`` (what ``torch.save`` writes: a zip holding ``data.pkl`` and raw storages, or a bare pickle)
    is not plain tensor data, or None. Every ``.pkl`` inside is checked with :func:`pickle_refusal`.

    ``open_reader(data)``: a zip reader with ``get_all_records`` / ``get_record_size`` / ``get_record``,
    torch's own (``torch._C.PyTorchFileReader``) by default, so the members checked are the members
    ``torch.load`` reads."""
    if not is_zip(data):
        return pickle_refusal(data)
    with zipfile.ZipFile(io.BytesIO(data)) as inner:  # declared sizes: a nested zip can be a bomb too
        why = zip_members_refusal(inner, limit)
        if why is not None:
            return f"is a zip whose {why}, past the memory budget of {human(limit)}"
        python_names = inner.namelist()
    reader = (open_reader or _torch_reader)(data)
    records = list(reader.get_all_records())
    root = python_names[0].split("/")[0] + "/" if python_names else ""
    if sorted(root + r for r in records) != sorted(n for n in python_names if not n.endswith("/")):
        return "is a zip whose directory reads differently to different zip readers"
    if any(r == "constants.pkl" or r.startswith("code/") for r in records):
        return "is a TorchScript archive (its code would run)"
    for r in records:
        if r.endswith(".pkl"):
            if reader.get_record_size(r) > limit:
                return f"holds a pickle '{r}' past the memory budget"
            why = pickle_refusal(bytes(reader.get_record(r)))
            if why is not None:
                return f"{why} (in its {r})"
    return None


def _torch_reader(data: bytes) -> Any:
    import torch

    return torch._C.PyTorchFileReader(io.BytesIO(data))
