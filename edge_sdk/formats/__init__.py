"""Model file formats: recognise a file by its content and check it before any runtime sees it.

One registry, keyed by format name. Each entry lives in its own module and
provides ``sniff`` (cheap content test on the first bytes) and ``validate``
(the full untrusted-file check). :func:`inspect_file` is the single entry point
the loader and the CLI use.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edge_sdk.errors import EdgeSDKError, ModelFileError, UnsupportedFormatError

#: refuse files larger than this unless the caller raises the limit (ONNX's protobuf limit is 2 GiB;
#: bigger models use external data, whose files are checked separately).
MAX_MODEL_BYTES = 4 * 1024**3
#: the smallest valid model of any supported format is larger than this.
MIN_MODEL_BYTES = 16
HEAD_BYTES = 512


@dataclass(frozen=True)
class ModelFile:
    """A model file that passed the checks of its format."""

    path: Path
    format: str
    size: int
    companions: tuple[Path, ...] = field(default=())  # .bin of OpenVINO, external data of ONNX


@dataclass(frozen=True)
class FormatHandler:
    name: str
    extensions: tuple[str, ...]
    sniff: Callable[[bytes], bool]
    #: ``validate(path, size, max_memory)``: the full check; ``max_memory`` is the budget (None: default)
    validate: Callable[[Path, int, int | None], ModelFile]


_REGISTRY: dict[str, FormatHandler] = {}


def register_format(handler: FormatHandler) -> None:
    _REGISTRY[handler.name] = handler


def format_names() -> list[str]:
    _ensure_registered()
    return list(_REGISTRY)


def _ensure_registered() -> None:
    """Import every built-in handler (each registers itself). Not skipped when the registry is merely
    non-empty: importing one handler module directly (``onnx_format`` for its wire parser) registers
    that one alone."""
    from edge_sdk.formats import onnx_format, openvino_format, tflite_format  # noqa: F401


def _check_regular_file(path: Path, max_bytes: int) -> int:
    if not path.exists() and not path.is_symlink():
        raise ModelFileError(f"model file not found: {path}")
    try:
        st = path.stat()
    except OSError as e:
        raise ModelFileError(f"cannot read model file {path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(
            f"{path} is a directory, not a model file; pass the .onnx, .tflite or OpenVINO .xml file inside it"
        )
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{path} is not a regular file (device, pipe or socket); pass a model file")
    if st.st_size == 0:
        raise ModelFileError(f"model file is empty (0 bytes): {path}")
    if st.st_size < MIN_MODEL_BYTES:
        raise ModelFileError(f"model file is too small to be a model ({st.st_size} bytes): {path}")
    if st.st_size > max_bytes:
        raise ModelFileError(
            f"model file is {st.st_size} bytes, above the {max_bytes}-byte limit: {path}; "
            "pass max_bytes=... to load a model this large on purpose"
        )
    if not os.access(path, os.R_OK):
        raise ModelFileError(f"model file is not readable (permissions): {path}")
    return st.st_size


def detect_format(path: str | os.PathLike[str], *, max_bytes: int = MAX_MODEL_BYTES) -> str:
    """Name of the format of ``path``, decided by content (the extension is only a tie-breaker)."""
    return inspect_file(path, max_bytes=max_bytes).format


#: files that passed :func:`inspect_file` in this process, keyed by what identifies their bytes (see _stat_key)
_INSPECTED: dict[tuple[object, ...], tuple[ModelFile, tuple[object, ...]]] = {}


def _stat_key(path: str | os.PathLike[str], *limits: object) -> tuple[object, ...] | None:
    """Identity of a file's current bytes: device, inode, size, mtime and ctime (ctime cannot be set back)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    budget = os.environ.get("EDGE_SDK_MAX_MODEL_MEMORY")
    return (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, budget, *limits)


def _settled(key: tuple[object, ...]) -> bool:
    """Remembered only when last changed over 2 s ago (git's "racy clean" rule): file timestamps tick coarsely,
    so a rewrite of the same size within one tick could keep the key; a later rewrite gets a newer mtime."""
    now = time.time_ns()
    return all(isinstance(t, int) and now - t > 2_000_000_000 for t in key[4:6])


def _companions_key(model_file: ModelFile) -> tuple[object, ...]:
    return tuple(_stat_key(c) for c in model_file.companions)


def inspect_file(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_MODEL_BYTES, max_memory: int | None = None
) -> ModelFile:
    """Check an untrusted model file and return what it is; raise a typed error if it is not a model.

    ``max_bytes`` bounds the file's size; ``max_memory`` bounds what it declares (tensor shapes,
    weights read from companion files), default from ``EDGE_SDK_MAX_MODEL_MEMORY`` or half the
    machine's memory (see ``edge_sdk.formats.budget``). A file (and its companions) unchanged since it
    passed, in this process or an earlier one (:mod:`edge_sdk.formats.checked_cache`), is not parsed again.
    """
    key = _stat_key(path, max_bytes, max_memory)
    hit = _INSPECTED.get(key) if key is not None else None
    if hit is not None and _companions_key(hit[0]) == hit[1]:
        return hit[0]
    from edge_sdk.formats import checked_cache

    settled = key is not None and _settled(key)
    model_file = checked_cache.recall(path, key, _companions_key) if settled else None
    if model_file is None:
        model_file = _inspect_uncached(path, max_bytes, max_memory)
        if settled and _stat_key(path, max_bytes, max_memory) == key:
            checked_cache.remember(key, model_file, _companions_key)
    if settled and _stat_key(path, max_bytes, max_memory) == key:
        if len(_INSPECTED) >= 32:
            _INSPECTED.clear()
        _INSPECTED[key] = (model_file, _companions_key(model_file))
    return model_file


def _inspect_uncached(path: str | os.PathLike[str], max_bytes: int, max_memory: int | None) -> ModelFile:
    _ensure_registered()
    p = Path(path)
    size = _check_regular_file(p, max_bytes)
    with open(p, "rb") as f:
        head = f.read(HEAD_BYTES)
    matches = [h for h in _REGISTRY.values() if h.sniff(head)]
    by_ext = [h for h in _REGISTRY.values() if p.suffix.lower() in h.extensions]
    if not matches:
        # ONNX has no magic number; its sniff is weak, so an .onnx name still gets the full parse.
        matches = [h for h in by_ext if h.name == "onnx"]
    if not matches:
        expected = f" (a '{p.suffix}' name suggests {by_ext[0].name}, but the content is not)" if by_ext else ""
        raise UnsupportedFormatError(
            f"{p} is not a model format edge_sdk can load{expected}; "
            "supported: ONNX (.onnx), TFLite (.tflite), OpenVINO IR (.xml + .bin)"
        )
    matches.sort(key=lambda h: h not in by_ext)
    handler = matches[0]
    try:
        return handler.validate(p, size, max_memory)
    except EdgeSDKError:
        raise
    except Exception as e:  # a check that tripped on bytes nobody foresaw: still a typed, one-line error
        from edge_sdk.errors import first_line

        raise ModelFileError(
            f"{p} is not a valid {handler.name} model (corrupt file; the check failed with "
            f"{type(e).__name__}: {first_line(e)})"
        ) from None
