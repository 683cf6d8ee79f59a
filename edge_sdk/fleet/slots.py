"""A/B model slots on a device: stage a verified bundle beside the live model, switch atomically, roll back.

Layout under a state folder (shared by the agent and the Mender update module)::

    STATE_DIR/slots/a/        an extracted, verified bundle (bundle.json, bundle.sig, the members)
    STATE_DIR/slots/b/        the other one
    STATE_DIR/active          JSON: {"slot": "a", "version": ..., "model_file": ..., "previous": "b",
                              "previous_version": ..., "committed": false, "activated": ...}
    STATE_DIR/.lock           flock'd while a slot or the record changes

Crash safety: a slot is only written through a temp folder renamed into place (:func:`extract_bundle`),
and only the inactive slot is ever written; ``active`` is replaced whole with ``os.replace`` after an fsync.
So a kill at any point leaves ``active`` naming a complete slot: the previous model, or the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from edge_sdk.errors import BundleError, SlotError

SLOTS = ("a", "b")
ACTIVE = "active"


def _slot_dir(state_dir: Path, slot: str) -> Path:
    return Path(state_dir) / "slots" / slot


@contextlib.contextmanager
def _locked(state_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``STATE_DIR/.lock`` (one writer at a time: the agent, the Mender module, a person)."""
    root = Path(state_dir)
    try:
        (root / "slots").mkdir(parents=True, exist_ok=True)
        fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise SlotError(f"cannot use state folder {root}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield root
    finally:
        os.close(fd)


def read_active(state_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The active-slot record, or None when nothing was ever activated."""
    path = Path(state_dir) / ACTIVE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise SlotError(
            f"{path} is unreadable ({e}); it is only ever replaced whole, so the disk is at fault"
        ) from None
    if not isinstance(data, dict) or data.get("slot") not in SLOTS:
        raise SlotError(f"{path} does not name a slot ({SLOTS})")
    return data


def _write_active(root: Path, record: dict[str, Any]) -> None:
    tmp = root / f".{ACTIVE}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / ACTIVE)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _slot_name(state_dir: Path, slot: str | os.PathLike[str]) -> str:
    """``"a"``/``"b"``, a slot folder, or a file inside one -> the slot's name."""
    if isinstance(slot, str) and slot in SLOTS:
        return slot
    p = Path(slot).absolute()
    slots_dir = (Path(state_dir) / "slots").absolute()
    for candidate in (p, p.parent):
        if candidate.parent == slots_dir and candidate.name in SLOTS:
            return candidate.name
    raise SlotError(f"{slot} is not a slot of {state_dir} (give 'a', 'b' or {slots_dir}/a|b)")


def _slot_manifest(state_dir: Path, slot: str) -> dict[str, Any] | None:
    """The slot's bundle.json as a dict (unverified: the slot was verified when staged), or None if empty."""
    try:
        data = json.loads((_slot_dir(state_dir, slot) / "bundle.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def inactive_slot(state_dir: str | os.PathLike[str]) -> str:
    """The slot a new bundle goes to: the one not active (``"a"`` when nothing is)."""
    rec = read_active(state_dir)
    return "a" if rec is None else SLOTS[1 - SLOTS.index(rec["slot"])]


def _clean_partials(root: Path) -> None:
    """Temp and set-aside folders a killed stage left in ``slots/`` (names start with a dot)."""
    for p in (root / "slots").glob(".*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def stage(state_dir: str | os.PathLike[str], bundle: str | os.PathLike[str],
          trusted_keys: Sequence[Any] | None = None) -> Path:  # fmt: skip
    """Verify ``bundle`` and extract it into the inactive slot; returns that slot's folder. The live model is
    untouched; a failure (bad bundle, full disk, kill) leaves the inactive slot as it was or empty."""
    from edge_sdk.fleet.bundle import extract_bundle

    with _locked(state_dir) as root:
        _clean_partials(root)
        slot = inactive_slot(root)
        dest = _slot_dir(root, slot)
        extract_bundle(bundle, dest, trusted_keys)
        return dest


def activate(state_dir: str | os.PathLike[str], slot: str | os.PathLike[str]) -> None:
    """Make ``slot`` the live one (after checking every file of it against its bundle.json); the record keeps
    the slot it replaces as ``previous``, uncommitted until :func:`commit`."""
    from edge_sdk.fleet._archive import check_folder

    with _locked(state_dir) as root:
        name = _slot_name(root, slot)
        manifest = _slot_manifest(root, name)
        if manifest is None or not isinstance(manifest.get("files"), dict):
            raise SlotError(f"slot {name} of {root} holds no staged bundle (stage one first)")
        try:
            check_folder(_slot_dir(root, name), manifest["files"])
        except BundleError as e:
            raise SlotError(f"slot {name} of {root} is damaged: {e}") from None
        old = read_active(root)
        if old is not None and old["slot"] == name:
            return  # already live
        _write_active(root, {
            "slot": name, "version": manifest.get("version"), "model_file": manifest.get("model_file"),
            "previous": old["slot"] if old else None, "previous_version": old.get("version") if old else None,
            "committed": False, "activated": _now(),
        })  # fmt: skip


def commit(state_dir: str | os.PathLike[str]) -> None:
    """Mark the live slot as accepted (Mender's ArtifactCommit, the end of a probation)."""
    with _locked(state_dir) as root:
        rec = read_active(root)
        if rec is None:
            raise SlotError(f"nothing is active in {root} to commit")
        if not rec.get("committed"):
            _write_active(root, {**rec, "committed": True})


def previous_model(state_dir: str | os.PathLike[str]) -> Path | None:
    """The model file of the slot that was live before the current one, if that slot still holds it."""
    rec = read_active(state_dir)
    if rec is None or rec.get("previous") not in SLOTS:
        return None
    manifest = _slot_manifest(Path(state_dir), rec["previous"])
    if manifest is None or manifest.get("version") != rec.get("previous_version"):
        return None  # overwritten by a later stage
    path = _slot_dir(Path(state_dir), rec["previous"]) / str(manifest.get("model_file"))
    return path if path.is_file() else None


def rollback(state_dir: str | os.PathLike[str]) -> str:
    """Make the previous slot live again (the current one becomes ``previous``); returns the slot now live.
    A SlotError when there is nothing to go back to."""
    with _locked(state_dir) as root:
        rec = read_active(root)
        if rec is None:
            raise SlotError(f"nothing is active in {root}: no rollback possible")
        if previous_model(root) is None:
            raise SlotError(f"{root}: no previous model to roll back to (slot {rec.get('previous')} does not hold "
                            f"version {rec.get('previous_version')})")  # fmt: skip
        prev = rec["previous"]
        manifest = _slot_manifest(root, prev) or {}
        _write_active(root, {
            "slot": prev, "version": manifest.get("version"), "model_file": manifest.get("model_file"),
            "previous": rec["slot"], "previous_version": rec.get("version"), "committed": True,
            "activated": _now(), "rolled_back_from": rec.get("version"),
        })  # fmt: skip
        return prev


def active_model(state_dir: str | os.PathLike[str]) -> Path | None:
    """The live model file, or None when nothing is active."""
    rec = read_active(state_dir)
    if rec is None:
        return None
    path = _slot_dir(Path(state_dir), rec["slot"]) / str(rec.get("model_file"))
    if not path.is_file():
        raise SlotError(f"{Path(state_dir) / ACTIVE} names {path}, which is missing")
    return path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
