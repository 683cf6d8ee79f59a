"""``.pt2`` (torch.export) files loaded without running code from them, unless the user trusts the file by name.

``torch.export.load`` reads a zip (layout: ``torch/export/pt2_archive/_package.py``) and runs code from
it in several places:

- pickles: weights and tensor constants saved with ``use_pickle`` (``torch.load(weights_only=False)``),
  opaque constants (``pickle.loads``), TorchScript objects (``torch._C._pickle_load_obj``), the sample
  inputs and legacy ``{model}.pt`` weights (``torch.load``, retried with ``weights_only=False``);
- ``models/{model}.json``: ``expr_str`` symbolic shapes go through ``sympy.sympify`` (an ``eval``),
  ``guards_code`` is ``exec``'d into the module, value and argument names are pasted into the Python
  source that ``torch.fx`` generates, and pytree contexts import modules named in the file;
- ``data/aotinductor/``: compiled shared libraries, loaded as they are.

:func:`check_pt2_archive` reads the archive with torch's own zip reader (the one ``torch.export.load``
uses, so both see the same members), and refuses, naming the member: any pickle that is not plain
tensor data (:func:`converters.untrusted_archives.pickle_refusal`), TorchScript objects, compiled code,
JSON whose names, shape expressions, guards or pytree contexts are not what ``torch.export.save``
writes, and members or declared tensors past the memory budget. :func:`load_exported_program` then
loads with every ``torch.load`` forced to ``weights_only`` (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``), the
opaque constants' ``pickle.loads`` checked and TorchScript objects refused, so torch cannot fall back to
a full unpickle even if a check missed something. ``allow_pickle=True``
(``--unsafe-allow-pickle``) skips both, for files the user trusts.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import zipfile
from pathlib import Path
from typing import Any, Iterator

from converters.pt2_program_check import program_refusal
from converters.untrusted_archives import (
    check_zip_members,
    is_zip,
    looks_like_pickle,
    pickle_refusal,
    torch_save_refusal,
)
from edge_sdk.errors import ModelTooLargeError, SourceModelError
from edge_sdk.formats.budget import ENV_VAR, default_budget, human

WEIGHTS_DIR, CONSTANTS_DIR, MODELS_DIR = "data/weights/", "data/constants/", "models/"
SAMPLE_INPUTS = "data/sample_inputs/{}.pt"
WEIGHTS_CONFIG, CONSTANTS_CONFIG = "data/weights/{}_weights_config.json", "data/constants/{}_constants_config.json"
TENSOR_PREFIX, CUSTOM_OBJ_PREFIX, OPAQUE_PREFIX = "tensor_", "custom_obj_", "opaque_obj_"
#: members torch.export.load turns into native code (AOTInductor shared libraries) or never reads here
CODE_DIRS = ("data/aotinductor/",)
#: JSON members are small (a model.json of a 300-layer net is a few MB); anything bigger is refused unread
JSON_CAP = 256 * 1024**2
TRUST_HINT = "Pass --unsafe-allow-pickle (allow_pickle=True) only if you trust the file"

_FORCE, _NO_FORCE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_ENV_LOCK = threading.Lock()


def load_exported_program(path: Path, *, allow_pickle: bool = False, limit: int | None = None) -> Any:
    """``torch.export.load(path)``, after :func:`check_pt2_archive` and with ``torch.load`` held to weights_only;
    ``allow_pickle=True`` loads the file as torch would, trusting it."""
    import torch

    if allow_pickle:
        return torch.export.load(str(path))
    check_pt2_archive(path, limit=limit)
    with weights_only_torch_load():
        return torch.export.load(str(path))


@contextlib.contextmanager
def weights_only_torch_load() -> Iterator[None]:
    """Every unpickling ``torch.export.load`` does in this block is held to tensor data, whatever the archive
    check concluded: ``torch.load`` runs with ``weights_only=True`` even where torch passes False (it reads
    ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` at each call); the ``pickle.loads`` of opaque constants checks the
    pickle first; TorchScript objects are refused. Process-wide while it lasts (a concurrent trusted load
    is only made stricter) and serialised by a lock."""
    import pickle

    import torch

    try:
        from torch.export.pt2_archive import _package
    except ImportError:  # another torch layout: the environment variable still holds torch.load
        _package = None

    def refuse_torchscript(data: bytes) -> Any:
        raise SourceModelError(f"a .pt2 constant is a TorchScript object; {TRUST_HINT}")

    class CheckedPickle:  # what _package sees as its ``pickle`` module
        def __getattr__(self, name: str) -> Any:
            return getattr(pickle, name)

        @staticmethod
        def loads(data: bytes, *args: Any, **kwargs: Any) -> Any:
            why = pickle_refusal(bytes(data))
            if why is not None:
                raise SourceModelError(f"a .pt2 constant {why}; loading it would run code. {TRUST_HINT}")
            return pickle.loads(data, *args, **kwargs)

    patches = [(torch._C, "_pickle_load_obj", refuse_torchscript)] if hasattr(torch._C, "_pickle_load_obj") else []
    patches += [(_package, "pickle", CheckedPickle())] if _package is not None else []
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in (_FORCE, _NO_FORCE)}
        originals = [(obj, name, getattr(obj, name, None)) for obj, name, _ in patches]
        os.environ[_FORCE] = "1"
        os.environ.pop(_NO_FORCE, None)
        for obj, name, value in patches:
            setattr(obj, name, value)
        try:
            yield
        finally:
            for obj, name, value in originals:
                setattr(obj, name, value)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _refuse(path: Path, member: str, why: str) -> SourceModelError:
    return SourceModelError(f"{path.name}: member '{member}' {why}; loading it would run code. {TRUST_HINT}")


class _Archive:
    """A .pt2 read through torch's zip reader, members named as in the zip (with their root folder)."""

    def __init__(self, path: Path, limit: int) -> None:
        import torch

        self.path, self.limit = path, limit
        with zipfile.ZipFile(path) as zf:
            check_zip_members(path, zf, limit)
            python_names = sorted(n for n in zf.namelist() if not n.endswith("/"))
        try:
            self.reader = torch._C.PyTorchFileReader(str(path))
        except RuntimeError as e:
            raise SourceModelError(
                f"{path.name} is not a torch.export archive ({str(e).splitlines()[0][:160]}); save it with "
                "torch.export.save"
            ) from None
        self.records = list(self.reader.get_all_records())
        self.root = python_names[0].split("/")[0] + "/" if python_names else ""
        if sorted(self.root + r for r in self.records) != python_names:
            raise SourceModelError(
                f"{path.name}: its zip directory reads differently to Python's and torch's zip readers (a crafted "
                f"archive); refused. {TRUST_HINT}"
            )
        self.sizes = {r: int(self.reader.get_record_size(r)) for r in self.records}

    def name(self, record: str) -> str:
        return self.root + record

    def read(self, record: str, cap: int | None = None) -> bytes:
        cap = self.limit if cap is None else cap
        size = self.sizes[record]
        if size > cap:
            raise ModelTooLargeError(
                f"{self.path.name}: member '{self.name(record)}' is {human(size)} ({size} bytes), more than the "
                f"{human(cap)} such a member may take; refused unread. Raise the budget with {ENV_VAR} if the "
                "file is yours"
            )
        return bytes(self.reader.get_record(record))

    def json(self, record: str) -> Any:
        try:
            return json.loads(self.read(record, min(JSON_CAP, self.limit)))
        except (ValueError, RecursionError) as e:
            raise SourceModelError(
                f"{self.path.name}: member '{self.name(record)}' is not valid JSON ({type(e).__name__})"
            ) from None


def check_pt2_archive(path: Path, *, limit: int | None = None) -> None:
    """Refuse a ``.pt2`` whose loading would run code from it or allocate past ``limit`` bytes (default: the
    memory budget): :class:`SourceModelError` / :class:`ModelTooLargeError` naming the member and the reason."""
    limit = default_budget() if limit is None else int(limit)
    ar = _Archive(path, limit)
    if ar.sizes.get("archive_format") is None or ar.read("archive_format", 64) != b"pt2":
        raise SourceModelError(
            f"{path.name} is not a torch.export archive (no archive_format 'pt2': an older torch.export format "
            f"or another zip); re-save it with torch.export.save, or, if you trust the file, {TRUST_HINT[5:]}"
        )
    for r in ar.records:
        if r.startswith(CODE_DIRS):
            raise _refuse(path, ar.name(r), "is AOTInductor compiled code (a shared library torch would load)")
    raw, pickled = _payloads(ar)
    models = [r[len(MODELS_DIR) : -len(".json")] for r in ar.records if r.startswith(MODELS_DIR)]
    for model in models:
        why = program_refusal(ar.json(f"{MODELS_DIR}{model}.json"))
        if why is not None:
            raise _refuse(path, ar.name(f"{MODELS_DIR}{model}.json"), why)
        pickled |= {SAMPLE_INPUTS.format(model), f"{WEIGHTS_DIR}{model}.pt", f"{CONSTANTS_DIR}{model}.pt"}
    for r in ar.records:
        if r in pickled or (r not in raw and _unpicklable(ar, r)):
            why = torch_save_refusal(ar.read(r), limit)
            if why is not None:
                raise _refuse(path, ar.name(r), why)


def _unpicklable(ar: _Archive, record: str) -> bool:
    """Whether a member no config accounts for is a ``.pkl`` or starts like something an unpickler reads
    (only its first bytes are unpacked)."""
    if record.endswith(".pkl"):
        return True
    if record.endswith(".json") or ar.sizes[record] < 2:
        return False
    with zipfile.ZipFile(ar.path) as zf, zf.open(ar.name(record)) as f:
        head = f.read(4)
    return is_zip(head) or looks_like_pickle(head)


def _payloads(ar: _Archive) -> tuple[set[str], set[str]]:
    """Members the payload configs declare as raw tensor bytes, and members torch would unpickle.

    Mirrors ``_load_state_dict`` / ``_load_constants``: a config entry's ``path_name`` joined to its folder
    names the member; ``use_pickle`` tensors, opaque objects and TorchScript objects are unpickled.
    Declared tensor sizes are checked against the budget: an empty member becomes ``torch.zeros(sizes)``."""
    raw: set[str] = set()
    pickled: set[str] = set()
    zeros = 0
    configs = [(r, WEIGHTS_DIR) for r in ar.records if r.startswith(WEIGHTS_DIR) and r.endswith("_weights_config.json")]
    configs += [(r, CONSTANTS_DIR) for r in ar.records if r.startswith(CONSTANTS_DIR) and r.endswith("_config.json")]
    for record, folder in configs:
        config = ar.json(record)
        entries = config.get("config") if isinstance(config, dict) else None
        if not isinstance(entries, dict):
            raise SourceModelError(f"{ar.path.name}: member '{ar.name(record)}' is not a payload config")
        for fqn, meta in entries.items():
            if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
                raise SourceModelError(f"{ar.path.name}: member '{ar.name(record)}' has a malformed entry {fqn!r}")
            name = os.path.join(folder, meta["path_name"])
            kind = meta["path_name"]
            if folder == CONSTANTS_DIR and kind.startswith(CUSTOM_OBJ_PREFIX):
                raise _refuse(
                    ar.path, ar.name(name), "is a TorchScript object (torch._C._pickle_load_obj runs its code)"
                )
            if meta.get("use_pickle") or (folder == CONSTANTS_DIR and kind.startswith(OPAQUE_PREFIX)):
                pickled.add(name)
                continue
            raw.add(name)
            nbytes = _declared_bytes(ar, record, fqn, meta.get("tensor_meta"))
            if ar.sizes.get(name, 0) == 0:
                zeros += nbytes
                if zeros > ar.limit:
                    raise ModelTooLargeError(
                        f"{ar.path.name}: member '{ar.name(record)}' declares empty tensors that torch would fill "
                        f"with zeros, {human(zeros)} ({zeros} bytes) in all (at {fqn!r}), above the memory budget "
                        f"of {human(ar.limit)}; refused. Raise the budget with {ENV_VAR} if the file is yours"
                    )
    return raw - pickled, pickled


def _declared_bytes(ar: _Archive, record: str, fqn: str, tensor_meta: Any) -> int:
    """Bytes of the tensor a config entry declares, refused past the budget."""
    try:
        sizes = [s["as_int"] for s in tensor_meta["sizes"]]
        if not all(isinstance(s, int) and s >= 0 for s in sizes):
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise SourceModelError(
            f"{ar.path.name}: member '{ar.name(record)}' entry {fqn!r} has no valid tensor sizes"
        ) from None
    numel = 1
    for s in sizes:
        numel *= s
    nbytes = numel * _element_size(tensor_meta.get("dtype"))
    if nbytes > ar.limit:
        raise ModelTooLargeError(
            f"{ar.path.name}: member '{ar.name(record)}' declares tensor {fqn!r} of shape {sizes}: {human(nbytes)} "
            f"({nbytes} bytes), above the memory budget of {human(ar.limit)}; refused. Raise the budget with "
            f"{ENV_VAR} if the file is yours"
        )
    return nbytes


def _element_size(dtype: Any) -> int:
    try:
        import torch
        from torch._export.serde.serialize import deserialize_scalar_type

        return torch._utils._element_size(deserialize_scalar_type(dtype))
    except Exception:  # an unknown dtype code: torch refuses it later; count the widest element
        return 16
