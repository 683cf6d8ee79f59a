"""Remember across processes that a model file passed its untrusted-file check, keyed by the file's identity.

A CLI start checks its model before anything else (an ONNX file of 18 MB: 25-40 ms of parsing on a small CPU,
a third of what ``edge-sdk run`` adds over a raw runtime script). The verdict is kept under
``<cache root>/checked/`` with the same key as the remembered digests (:mod:`edge_sdk.cache`): real path,
device, inode, size, ``st_mtime_ns`` and ``st_ctime_ns`` of the file and of each companion (``.bin``, external
data), the memory budget and size limit the check ran with, and :data:`CHECKS_REVISION`. Any write, rename
over, ``touch`` or ``chmod`` gives a file a new ctime, which cannot be set back, so a remembered verdict always
names the bytes that were checked; files changed within the last 2 s are not remembered (git's "racy clean"
rule). Only passes are remembered: a file that failed is checked again, and says why, every time.
``EDGE_SDK_CACHE=0`` turns it off. The folder is the user's own (0700), like the probe verdicts it sits beside.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

#: bump when a format's checks become stricter: verdicts of older checks are then not used
CHECKS_REVISION = 1


def _record_path(key: tuple[object, ...]) -> Path | None:
    if os.environ.get("EDGE_SDK_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    from edge_sdk.cache import cache_root

    identity = "\0".join(map(str, (CHECKS_REVISION, *key)))
    return cache_root() / "checked" / f"{hashlib.sha256(identity.encode()).hexdigest()[:40]}.json"


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so stored and current keys compare equal."""
    return json.loads(json.dumps(value))


def recall(path: str | os.PathLike[str], key: tuple[object, ...], companions_key: Any) -> Any:
    """The remembered :class:`~edge_sdk.formats.ModelFile` of ``path`` (None: not remembered, or a companion
    changed since). ``companions_key(model_file)`` gives the companions' current identities."""
    from edge_sdk.formats import ModelFile

    target = _record_path(key)
    if target is None:
        return None
    try:
        rec = json.loads(target.read_text(encoding="utf-8"))
        model_file = ModelFile(Path(path), str(rec["format"]), int(rec["size"]),
                               tuple(Path(c) for c in rec["companions"]))  # fmt: skip
        stored = rec["companions_key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return model_file if _plain(companions_key(model_file)) == stored else None


def remember(key: tuple[object, ...], model_file: Any, companions_key: Any) -> None:
    """Keep the verdict that ``model_file`` passed (an unwritable cache costs only speed)."""
    from edge_sdk.cache import _write_small

    target = _record_path(key)
    if target is None:
        return
    absolute = type(model_file)(model_file.path, model_file.format, model_file.size,
                                tuple(Path(os.path.realpath(c)) for c in model_file.companions))  # fmt: skip
    record = {"format": model_file.format, "size": model_file.size,
              "companions": [str(c) for c in absolute.companions],
              "companions_key": _plain(companions_key(absolute))}  # fmt: skip
    _write_small(target, json.dumps(record))
