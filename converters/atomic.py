"""Atomic file output: write to a temp name in the same folder, then rename.

A crash or Ctrl-C mid-write leaves the temp file's name, never a half-written
model under the final name; ``staging_dir`` does the same for multi-file
outputs (OpenVINO .xml + .bin, SavedModel folders) and removes its leftovers.
Every temp path is tracked while it lives (:mod:`converters.cleanup`), so a
stopped CLI run removes them too; and every temp name carries its owner's
pid and start time, so after a SIGKILL the next run removes a dead run's
leftovers (:func:`remove_stale_temp_files`) and leaves a live run's alone.
A full disk is a :class:`DiskFullError` naming the folder and the space needed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from converters.cleanup import making_paths, owner_alive, owner_tag, remove, track, track_new_folders, untrack
from edge_sdk.errors import DiskFullError, OutputDirError
from edge_sdk.formats.budget import human

#: ``...{pid}.{start}.{pid namespace}-{random}[.suffix]``: the owner tag :func:`owner_tag` puts in temp names
_OWNED = re.compile(r"[.-](\d+)\.(\d+)\.(\d+)-[a-z0-9_]+(?:\.[A-Za-z0-9]+)?$")
#: untagged temp names in an output folder, from versions before owner tags
_LEGACY_SUFFIX, _LEGACY_PREFIXES = ".part", (".edge-sdk-stage-", ".edge-sdk-probe-")
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


@contextlib.contextmanager
def temp_workdir(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A private scratch folder (in ``parent``, else the system temp), removed on exit whatever happens,
    and when the CLI is stopped by a signal. Dead runs' folders there are removed first."""
    base = Path(parent) if parent is not None else temp_root()
    remove_stale_temp_files(base, prefix="." if prefix.startswith(".") else "edge-sdk-")
    with making_paths(), disk_space_errors(base, what=f"a work folder ({prefix}...)"):
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_tag()}-", dir=parent))
        track(path)
    try:
        yield path
    except OSError as e:
        _note_copy_size(e)  # before the source of a failed copy goes with this folder
        raise
    finally:
        remove(path)
        untrack(path)


def temp_root() -> Path:
    """The folder work folders go in (``TMPDIR``, else the system's)."""
    return Path(tempfile.gettempdir())


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and prove it is writable; raise OutputDirError naming the folder."""
    p = Path(path)
    made = [f for f in (p.absolute(), *p.absolute().parents) if not f.exists()]  # deepest first
    try:
        with making_paths():
            p.mkdir(parents=True, exist_ok=True)
            track_new_folders(made)  # a stop by a signal removes them while they are empty
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise disk_full_error(p.parent, f"the output directory {p.name}") from None
        raise OutputDirError(f"cannot create output directory {p}: {e.strerror}") from None
    if not p.is_dir():
        raise OutputDirError(f"output path {p} exists and is not a directory")
    try:
        with making_paths(), tempfile.NamedTemporaryFile(dir=p, prefix=f".edge-sdk-probe-{owner_tag()}-"):
            pass
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise disk_full_error(p, "a probe file") from None
        raise OutputDirError(f"output directory {p} is not writable: {e.strerror}") from None
    return p


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    with open_atomic(path, size=len(data)) as tmp:
        tmp.write_bytes(data)
    return path


@contextlib.contextmanager
def open_atomic(path: Path, *, size: int | None = None) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it is flushed to disk and renamed to ``path``, else
    removed. Out of space (``size``: bytes to be written, when known): :class:`DiskFullError`."""
    with disk_space_errors(path.parent, what=path.name, needed=size):
        path.parent.mkdir(parents=True, exist_ok=True)
        with making_paths():
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner_tag()}-", suffix=".part")
            os.close(fd)
            track(Path(tmp_name))
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is as readable as any other
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except OSError as e:
        written = tmp.stat().st_size if tmp.is_file() else 0
        tmp.unlink(missing_ok=True)  # first, so that the free space reported counts it
        if e.errno in _DISK_FULL:
            needed = size if size is not None else written + 1
            raise disk_full_error(path.parent, path.name, needed, at_least=size is None) from e
        raise
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
    """Rename staged files to their final names, each flushed to disk first. Companions (e.g. ``.bin``) must
    come before the file that names them (``.xml``) so a reader never sees the head without its body.
    A folder's manifest must not list them meanwhile: use :meth:`converters.manifest.OutputFolder.publish`."""
    folders = set()
    for src, dst in files.items():
        with disk_space_errors(dst.parent, what=dst.name):
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                if dst.exists():
                    shutil.rmtree(dst)
            else:
                _fsync(src)
            os.replace(src, dst)
        folders.add(dst.parent)
    for folder in folders:
        _fsync(folder)


def remove_stale_temp_files(folder: Path, prefix: str = ".") -> int:
    """Delete temp files and folders (names starting with ``prefix``) that dead runs left in ``folder``; a live
    run's, e.g. a conversion running into the same folder, are kept. Returns how many were removed.

    A name's owner tag (pid, start time, pid namespace) says whose it is. With ``prefix="."`` (an output
    folder), untagged ``.part`` files and stage folders from versions without tags are removed too."""
    n = 0
    try:
        entries = [e.name for e in os.scandir(folder)]
    except OSError:
        return 0
    for name in entries:
        if not name.startswith(prefix):
            continue
        owned = _OWNED.search(name)
        if owned:
            if owner_alive(*(int(g) for g in owned.groups())):
                continue
        elif prefix != "." or not (name.endswith(_LEGACY_SUFFIX) or name.startswith(_LEGACY_PREFIXES)):
            continue
        remove(folder / name)
        n += 1
    return n


# ---- disk full ------------------------------------------------------------------------------------------------
def disk_full_error(folder: Path, what: str, needed: int | None = None, *, at_least: bool = False) -> DiskFullError:
    """The typed error for a write in ``folder`` that ran out of space: names the folder, what was being
    written, the space it needs (when known) and the space free now."""
    try:
        free: int | None = shutil.disk_usage(folder).free
    except OSError:
        free = None
    need = "" if needed is None else f" needs {'more than ' if at_least else ''}{human(needed)};"
    has = "" if free is None else f" {human(free)} free there;"
    return DiskFullError(
        f"no space left on the device of {folder} while writing {what}:{need}{has} free some space or "
        "write elsewhere (-o OUT for the output folder, TMPDIR for the work folder)",
        folder=folder, needed=needed, free=free,
    )  # fmt: skip


@contextlib.contextmanager
def disk_space_errors(*folders: Path, what: str = "a conversion file", needed: int | None = None) -> Iterator[None]:
    """Turn a disk-full ``OSError`` (ENOSPC, EDQUOT) raised inside into :class:`DiskFullError`. The folder named
    is the candidate holding the file the error names (the destination of a copy), else the candidate with the
    least free space; the space needed is ``needed``, else the source's size for a copy. Enter it outside the
    temp folders it covers, so that the free space it reports is counted after they are removed."""
    try:
        yield
    except OSError as e:
        if e.errno not in _DISK_FULL:
            raise
        target = e.filename2 or e.filename
        folder, name = _where(Path(os.fsdecode(target)) if target else None, [Path(f) for f in folders])
        _note_copy_size(e)
        raise disk_full_error(folder, name or what, needed if needed is not None else e.copy_size) from e


def _note_copy_size(e: OSError) -> None:
    """For a copy that ran out of space (source and destination named): the source's size, while it exists."""
    if e.errno in _DISK_FULL and getattr(e, "copy_size", None) is None:
        source = e.filename if e.filename2 and e.filename else None
        e.copy_size = os.path.getsize(source) if source and os.path.isfile(source) else None


def _where(path: Path | None, folders: list[Path]) -> tuple[Path, str | None]:
    if path is not None:
        for f in sorted(folders, key=lambda f: len(f.resolve().parts), reverse=True):  # the innermost first
            with contextlib.suppress(ValueError):
                path.resolve().relative_to(f.resolve())
                return f, path.name
        return path.parent, path.name

    def free(f: Path) -> int:
        try:
            return shutil.disk_usage(f).free
        except OSError:
            return 1 << 62

    return min(folders, key=free), None


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk, so a crash after the rename finds the new bytes."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno in _DISK_FULL or e.errno == errno.EIO:
            raise
    finally:
        os.close(fd)
