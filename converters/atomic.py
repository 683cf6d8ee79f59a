"""Atomic file output: write to a temp name in the same folder, then rename.

A crash or Ctrl-C mid-write leaves the temp file's name, never a half-written
model under the final name; ``staging_dir`` does the same for multi-file
outputs (OpenVINO .xml + .bin, SavedModel folders) and removes its leftovers.
Every temp path is tracked while it lives (:mod:`converters.cleanup`), so a
stopped CLI run removes them too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from converters.cleanup import remove, track, untrack
from edge_sdk.errors import OutputDirError


@contextlib.contextmanager
def temp_workdir(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A private scratch folder (in ``parent``, else the system temp), removed on exit whatever happens,
    and when the CLI is stopped by a signal."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    track(path)
    try:
        yield path
    finally:
        remove(path)
        untrack(path)


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and prove it is writable; raise OutputDirError naming the folder."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f"cannot create output directory {p}: {e.strerror}") from None
    if not p.is_dir():
        raise OutputDirError(f"output path {p} exists and is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=p, prefix=".edge-sdk-probe-"):
            pass
    except OSError as e:
        raise OutputDirError(f"output directory {p} is not writable: {e.strerror}") from None
    return p


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    with open_atomic(path) as tmp:
        tmp.write_bytes(data)
    return path


@contextlib.contextmanager
def open_atomic(path: Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it is renamed to ``path``, else removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    track(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is as readable as any other
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        untrack(tmp)


@contextlib.contextmanager
def staging_dir(parent: Path) -> Iterator[Path]:
    """A temp folder inside ``parent`` for multi-file outputs; removed whatever happens.

    Move finished files out with :func:`publish` (each move is a rename, atomic per file).
    """
    parent.mkdir(parents=True, exist_ok=True)
    with temp_workdir(".edge-sdk-stage-", parent) as stage:
        yield stage


def publish(files: dict[Path, Path]) -> None:
    """Rename staged files to their final names. Companions (e.g. ``.bin``) must come before
    the file that names them (``.xml``) so a reader never sees the head without its body."""
    for src, dst in files.items():
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            if dst.exists():
                shutil.rmtree(dst)
            os.replace(src, dst)
        else:
            os.replace(src, dst)


def remove_stale_temp_files(folder: Path) -> int:
    """Delete ``.part`` files and stage folders left by a killed process; returns how many."""
    n = 0
    for p in folder.glob(".*.part"):
        p.unlink(missing_ok=True)
        n += 1
    for p in folder.glob(".edge-sdk-stage-*"):
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n
