"""The zip layer of model bundles: written atomically, read as untrusted input.

Reading refuses, before any byte is used: names that are not flat file names (``/``, ``\\``, ``..``, absolute,
drive letters, control characters, leading dots), duplicates, folders, symlinks and other special entries,
encrypted or oddly compressed members, too many members, members above :data:`MAX_MEMBER_BYTES` (checked
against the declared size and again while streaming, so a lying header cannot inflate past it). Members are
extracted into a fresh temp folder (``O_EXCL | O_NOFOLLOW``) beside the destination, hashed while written,
and the folder is renamed into place only when every hash matched.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Iterable, Mapping

from edge_sdk.errors import BundleError

MANIFEST_NAME = "bundle.json"
SIG_NAME = "bundle.sig"
HEADER_NAMES = (MANIFEST_NAME, SIG_NAME)
#: a manifest larger than this is refused (labels of 100k classes are ~2 MB)
MAX_MANIFEST_BYTES = 16 * 1024**2
#: one member's limit (the loader's default model size limit)
MAX_MEMBER_BYTES = 4 * 1024**3
MAX_MEMBERS = 64
#: all members together (declared sizes): a bundle cannot fill a device's disk past this
MAX_TOTAL_BYTES = 8 * 1024**3
#: flat file names only; at most 200 characters
_NAME = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9._+\-]{0,199}")
_CHUNK = 1 << 20


def check_name(name: str) -> None:
    """Refuse a member name that is not a plain file name (path traversal, absolute, hidden, odd characters)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise BundleError(
            f"unsafe member name {name!r}: a bundle holds plain file names only (no folders, "
            "'..', absolute paths or special characters)",
            reason="unsafe_member",
            member=str(name),
        )


def open_zip(path: Path) -> zipfile.ZipFile:
    """The bundle as a ZipFile, or a BundleError(reason="not_a_bundle") saying why not."""
    try:
        if not path.is_file():
            raise BundleError(f"{path} does not exist (or is not a file)", reason="not_a_bundle")
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise BundleError(f"{path.name} is not a model bundle (not a readable zip: {e})",
                          reason="not_a_bundle") from None  # fmt: skip


def check_entries(zf: zipfile.ZipFile, where: str) -> dict[str, zipfile.ZipInfo]:
    """Every entry's name, type, size and method checked; name -> info."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS + len(HEADER_NAMES):
        raise BundleError(f"{where} has {len(infos)} members (limit {MAX_MEMBERS})", reason="too_large")
    out: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        check_name(name)
        if name in out:
            raise BundleError(f"{where}: member '{name}' appears twice", reason="unsafe_member", member=name)
        ftype = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type recorded (permission bits only)
        if info.is_dir() or (ftype and ftype != stat.S_IFREG):
            raise BundleError(f"{where}: member '{name}' is not a regular file (a folder, symlink or device)",
                              reason="unsafe_member", member=name)  # fmt: skip
        if info.flag_bits & 0x1:
            raise BundleError(f"{where}: member '{name}' is encrypted", reason="unsafe_member", member=name)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BundleError(f"{where}: member '{name}' uses compression method {info.compress_type}",
                              reason="unsafe_member", member=name)  # fmt: skip
        limit = MAX_MANIFEST_BYTES if name in HEADER_NAMES else MAX_MEMBER_BYTES
        if info.file_size > limit:
            raise BundleError(f"{where}: member '{name}' declares {info.file_size} bytes, above the {limit}-byte "
                              "limit", reason="too_large", member=name)  # fmt: skip
        out[name] = info
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        raise BundleError(
            f"{where} declares {total} bytes in all, above the {MAX_TOTAL_BYTES}-byte limit", reason="too_large"
        )
    if MANIFEST_NAME not in out:
        raise BundleError(f"{where} is not a model bundle (no {MANIFEST_NAME} inside)", reason="not_a_bundle")
    return out


def _stream(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, sink: IO[bytes] | None = None) -> str:
    """Read a member (bounded by its declared size), optionally copying it to ``sink``; its sha256."""
    h = hashlib.sha256()
    n = 0
    try:
        with zf.open(info) as f:
            while block := f.read(_CHUNK):
                n += len(block)
                if n > info.file_size:
                    raise BundleError(f"{where}: member '{info.filename}' is longer than it declares",
                                      reason="tampered", member=info.filename)  # fmt: skip
                h.update(block)
                if sink is not None:
                    sink.write(block)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:  # bad CRC, truncated, bad deflate data
        raise BundleError(f"{where}: member '{info.filename}' is corrupt or tampered with ({e})", reason="tampered",
                          member=info.filename) from None  # fmt: skip
    return h.hexdigest()


def read_header(zf: zipfile.ZipFile, infos: Mapping[str, zipfile.ZipInfo], where: str) -> tuple[bytes, bytes | None]:
    """(``bundle.json`` bytes, ``bundle.sig`` bytes or None when unsigned)."""
    raw = _read_member(zf, infos[MANIFEST_NAME], where)
    sig = _read_member(zf, infos[SIG_NAME], where) if SIG_NAME in infos else None
    return raw, sig


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bytes:
    import io

    buf = io.BytesIO()
    _stream(zf, info, where, buf)
    return buf.getvalue()


def _listed(infos: Mapping[str, zipfile.ZipInfo], files: Mapping[str, str], where: str) -> None:
    for name in files:
        if name in HEADER_NAMES:
            raise BundleError(f"{where}: the manifest lists '{name}' as a member", reason="bad_manifest", member=name)
        if name not in infos:
            raise BundleError(f"{where}: member '{name}' is missing", reason="missing_member", member=name)
    for name in infos:
        if name not in files and name not in HEADER_NAMES:
            raise BundleError(f"{where}: member '{name}' is not listed in the signed manifest",
                              reason="unlisted_member", member=name)  # fmt: skip


def _mismatch(where: str, name: str) -> BundleError:
    return BundleError(f"{where}: member '{name}' was tampered with (its sha256 differs from the signed manifest)",
                       reason="tampered", member=name)  # fmt: skip


def check_members(zf: zipfile.ZipFile, infos: Mapping[str, zipfile.ZipInfo], files: Mapping[str, str],
                  where: str) -> None:  # fmt: skip
    """Every listed member present with its signed sha256, nothing unlisted."""
    _listed(infos, files, where)
    for name, digest in files.items():
        if _stream(zf, infos[name], where) != digest:
            raise _mismatch(where, name)


def extract_members(zf: zipfile.ZipFile, infos: Mapping[str, zipfile.ZipInfo], files: Mapping[str, str],
                    where: str, dest: Path, extra: Mapping[str, bytes]) -> None:  # fmt: skip
    """Write the listed members (and ``extra`` files) into a temp folder beside ``dest``, checking each hash,
    then put the folder in place of ``dest`` (an existing ``dest`` is moved aside first, then removed)."""
    _listed(infos, files, where)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        for name, digest in files.items():
            with _create(tmp / name) as f:
                if _stream(zf, infos[name], where, f) != digest:
                    raise _mismatch(where, name)
                f.flush()
                os.fsync(f.fileno())
        for name, data in extra.items():
            with _create(tmp / name) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o755)
        fsync_dir(tmp)
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _create(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    return os.fdopen(fd, "wb")


def fsync_dir(path: Path) -> None:
    """fsync a folder so a rename into it survives a power cut (best effort: some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_dir(new: Path, dest: Path) -> None:
    """Put folder ``new`` at ``dest``: a rename when ``dest`` is absent, else ``dest`` goes aside first."""
    old = None
    if dest.exists() or dest.is_symlink():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{os.urandom(4).hex()}")
        os.replace(dest, old)
    os.replace(new, dest)
    fsync_dir(dest.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def read_small(path: Path, where: str) -> bytes:
    """A header file of an extracted folder (regular, not a symlink, bounded)."""
    try:
        st = os.lstat(path)
    except OSError:
        raise BundleError(f"{where} is not an extracted bundle (no {path.name})", reason="not_a_bundle") from None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{where}: {path.name} is not a regular file of a bundle", reason="unsafe_member",
                          member=path.name)  # fmt: skip
    return path.read_bytes()


def check_folder(folder: Path, files: Mapping[str, str]) -> None:
    """Every listed file of an extracted bundle present, regular (not a symlink) and with its signed hash."""
    for name, digest in files.items():
        p = folder / name
        try:
            st = os.lstat(p)
        except OSError:
            raise BundleError(f"{folder}: member '{name}' is missing", reason="missing_member", member=name) from None
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{folder}: member '{name}' is not a regular file", reason="unsafe_member", member=name)
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda f=f: f.read(_CHUNK), b""):
                h.update(block)
        if h.hexdigest() != digest:
            raise _mismatch(str(folder), name)


def write_zip(out: Path, header: Iterable[tuple[str, bytes]], members: Iterable[Path]) -> None:
    """Write the bundle to a temp file beside ``out``, then rename it into place (never a half-written bundle)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, data in header:
                    zf.writestr(_info(name), data)
                for p in members:
                    with open(p, "rb") as src, zf.open(_info(p.name), "w", force_zip64=True) as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible: no wall-clock in the zip
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.compress_type = zipfile.ZIP_STORED
    return info
