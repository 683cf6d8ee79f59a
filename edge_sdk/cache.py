"""Per-user cache of compiled models (warm start): one folder per model hash, backend, device and precision.

Backends that can reuse compiled work (OpenVINO's ``CACHE_DIR``, ONNX Runtime's TensorRT engine
cache, the OpenVINO and Core ML EP caches) use :func:`model_cache_dir` by default. The root is
``$EDGE_SDK_CACHE_DIR``, else ``$XDG_CACHE_HOME/edge_sdk``, else ``~/.cache/edge_sdk``;
``EDGE_SDK_CACHE=0`` or the load option ``cache_dir=None`` turns it off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from edge_sdk.formats import ModelFile

log = logging.getLogger("edge_sdk")

#: the value of the ``cache_dir`` option meaning "use the per-user default"
DEFAULT = "default"
_HASHES: dict[tuple[str, int, int], str] = {}


def cache_root() -> Path:
    env = os.environ.get("EDGE_SDK_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edge_sdk"


#: files up to this size are hashed in full; bigger ones by identity and samples (see :func:`model_hash`)
FULL_HASH_BYTES = 64 * 1024**2
#: how many evenly spaced blocks of a big file are hashed, and their size (64 x 64 KiB = 4 MiB read)
SAMPLE_BLOCKS = 64
SAMPLE_BYTES = 64 * 1024


def _file_digest(path: Path, st: os.stat_result) -> str:
    """SHA-256 of a file: the whole content up to FULL_HASH_BYTES; above it, identity plus samples.

    Why not always the whole file: OpenVINO's ``.bin`` (or ONNX external data) can be many GB, and
    hashing it reads it all once just to name the cache folder, before the runtime reads it again
    (a 10 GB ``.bin`` took 107 s to load). A big file is keyed by its size, ``st_mtime_ns``, inode
    and device (any rewrite changes the mtime, any replacement the inode) plus SAMPLE_BLOCKS
    blocks spread over it (first and last included), so at most ~4 MiB is read whatever the size.
    The trade-off: a same-size in-place edit that also restores the mtime and misses every sample
    would reuse a stale compiled model; delete the cache (or set ``cache_dir=None``) after such surgery.
    A small file's digest is remembered on disk by the file's identity (see :func:`_digest_memo`).
    """
    if st.st_size <= FULL_HASH_BYTES:
        memo = _digest_memo(path, st)
        if memo is not None:
            try:
                known = memo.read_text().strip()
            except (OSError, UnicodeDecodeError):
                known = ""
            if len(known) == 64 and all(c in "0123456789abcdef" for c in known):
                return known
        digest = sha256_file(path)
        if memo is not None and _identity(path.stat()) == _identity(st):  # unchanged while it was read
            _write_small(memo, digest)
        return digest
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f"sampled:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_dev}".encode())
        last = st.st_size - SAMPLE_BYTES
        for i in range(SAMPLE_BLOCKS):
            f.seek(last * i // (SAMPLE_BLOCKS - 1))
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


#: a file's identity must be this old (mtime and ctime) before its digest is remembered on disk
SETTLED_NS = 2_000_000_000


def _digest_memo(path: Path, st: os.stat_result) -> Path | None:
    """Where the whole-file digest of ``path`` is remembered across processes, keyed by the file's identity:
    real path, device, inode, size, ``st_mtime_ns`` and ``st_ctime_ns``; None when the cache is off or the file
    changed in the last SETTLED_NS.

    Any write, rename over, ``touch`` or ``chmod`` gives the file a new ctime, and ctime cannot be set back (only
    by moving the system clock), so a remembered digest always names the bytes it was computed from. Files that
    changed within the last 2 s are not remembered (git's "racy clean" rule: a rewrite within one timestamp tick
    could keep the identity). This spares a CLI start hashing its model again to look up its probe verdict
    (18 MB: 20-30 ms on a small CPU); files above FULL_HASH_BYTES are keyed by identity and samples anyway.
    """
    if os.environ.get("EDGE_SDK_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    now = time.time_ns()
    if now - st.st_mtime_ns <= SETTLED_NS or now - st.st_ctime_ns <= SETTLED_NS:
        return None
    identity = "\0".join(map(str, (os.path.realpath(path), *_identity(st))))
    return cache_root() / "digests" / f"{hashlib.sha256(identity.encode()).hexdigest()[:40]}.sha256"


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _write_small(target: Path, text: str) -> None:
    """Write ``text`` atomically (temp file in the same folder, then rename); an unwritable cache costs only speed."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w") as f:
            f.write(text)
        os.replace(tmp, target)
    except OSError as e:
        log.debug("digest not remembered: cannot write %s (%s)", target, e.strerror or e)
        try:
            tmp.unlink()
        except OSError:
            pass


_SHA256: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """The whole file's SHA-256 (hex), remembered while its size, mtime and inode stay the same."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _SHA256:
        if len(_SHA256) > 64:
            _SHA256.clear()
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA256[key] = h.hexdigest()
    return _SHA256[key]


def model_hash(model_file: ModelFile) -> str:
    """SHA-256 (first 16 hex digits) of the model file and its companions; memoised per (path, size, mtime).

    Companions bigger than FULL_HASH_BYTES are keyed by identity and samples, not read in full
    (see :func:`_file_digest`)."""
    h = hashlib.sha256()
    for path in (model_file.path, *model_file.companions):
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        digest = _HASHES.get(key)
        if digest is None:
            digest = _HASHES[key] = _file_digest(path, st)
        h.update(digest.encode())
    return h.hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "default"


def resolve_cache_dir(value: Any, model_file: ModelFile, backend: str, device: str, precision: str) -> Path | None:
    """The cache folder for the ``cache_dir`` option: DEFAULT -> per-user keyed folder; falsy -> off; else the path."""
    if value in (None, False, ""):
        return None
    if value != DEFAULT:
        return Path(value)
    if os.environ.get("EDGE_SDK_CACHE", "1").lower() in ("0", "false", "no", "off"):
        return None
    try:
        folder = cache_root() / backend / f"{model_hash(model_file)}-{_slug(device)}-{_slug(precision)}"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:  # a read-only home must not stop a load: run without the cache
        log.warning("model cache disabled: cannot create %s (%s)", cache_root(), e.strerror or e)
        return None
    return folder
