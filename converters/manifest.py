"""``OUT/manifest.json``: what was converted, how, with which tools, and how close each artifact is.

The manifest always describes the files beside it, whenever the process is killed: :class:`OutputFolder`
publishes artifacts and manifest together. Before a file is replaced, the manifest is rewritten (atomically)
without it, the name listed under ``pending``; then the file is renamed into place; at the end the new manifest
records every published file's size and sha256 under ``files``. So every file a manifest lists has the content
it records, and a reader (``edge_sdk.metadata``) checks that before applying it. Each artifact's entry also
holds the record embedded in the artifact itself (``converters.embed_metadata``): the manifest is keyed per
file, and entries of an earlier run's artifacts still beside it are kept.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from converters.atomic import publish, write_bytes_atomic
from edge_sdk.cache import sha256_file

MANIFEST = "manifest.json"
#: files that belong to another one (an OpenVINO .xml names its .bin): replacing either retracts both
COMPANIONS = {".xml": (".bin",), ".bin": (".xml",)}

TOOL_PACKAGES = (
    "edge-sdk", "numpy", "torch", "tensorflow-cpu", "keras", "ai-edge-litert", "ai-edge-quantizer", "litert-torch",
    "onnx", "onnxruntime", "onnxscript", "tf2onnx", "openvino", "nncf",
)  # fmt: skip


def tool_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in TOOL_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return versions


def file_record(path: Path) -> dict[str, Any]:
    """Size and sha256 of a file, as the manifest records it."""
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def write_manifest(output_dir: Path, content: dict[str, Any], files: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write ``manifest.json`` atomically; ``files``: name -> :func:`file_record` of each file it describes."""
    content = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **content}
    content["tools"] = tool_versions()
    if files is not None:
        content["files"] = dict(sorted(files.items()))
    path = output_dir / MANIFEST
    write_bytes_atomic(path, (json.dumps(content, indent=2, default=_jsonable) + "\n").encode())
    return path


class OutputFolder:
    """An output folder whose ``manifest.json`` describes the files beside it at every moment.

    ``publish`` and ``replacing`` retract a file from the existing manifest before it changes; ``write_manifest``
    writes the final one with the records of every file this run published.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.files: dict[str, dict[str, Any]] = {}

    def retract(self, names: Iterable[str]) -> None:
        """Rewrite the manifest, if it lists any of ``names`` (or their companions), without them."""
        retract(self.path, names)

    def publish(self, files: dict[Path, Path], metadata: dict[str, Any] | None = None) -> None:
        """Move staged files (source -> final path, companions first) into the folder and record them.

        ``metadata``: edge_sdk's record of the artifact (:func:`converters.embed_metadata.artifact_metadata`),
        written inside the model file (the last one) first, so the size and sha256 recorded are the final
        file's; the manifest keeps the record too, under this file's entry."""
        written = None
        if metadata is not None:
            from converters.embed_metadata import embed

            written = embed(list(files)[-1], metadata)
        records = {dst.name: file_record(src) for src, dst in files.items() if src.is_file()}
        if written is not None:
            records[list(files.values())[-1].name]["metadata"] = written
        self.retract(dst.name for dst in files.values())
        publish(files)
        self.files.update(records)

    def record(self, path: Path) -> None:
        """A file this run wrote into the folder by other means (after :meth:`retract`): list it at the end."""
        if path.parent.resolve() == self.path.resolve() and path.is_file():
            self.files[path.name] = file_record(path)

    def write_manifest(self, content: dict[str, Any]) -> Path:
        """The final manifest: ``content`` and the records of this run's files, plus the per-file records of
        earlier runs' artifacts still beside them unchanged (a folder holding two conversions lists both,
        each with its own metadata)."""
        return write_manifest(self.path, content, {**self._earlier_records(), **self.files})

    def _earlier_records(self) -> dict[str, dict[str, Any]]:
        """Records (with metadata) in the existing manifest of files this run did not write, true on disk."""
        try:
            files = json.loads((self.path / MANIFEST).read_text(encoding="utf-8")).get("files")
        except (OSError, ValueError, AttributeError):
            return {}
        if not isinstance(files, dict):
            return {}
        mine = {c for n in self.files for c in companions(n)}
        kept: dict[str, dict[str, Any]] = {}
        for name, rec in files.items():
            group = companions(name)
            if group & mine or not isinstance(rec, dict) or not isinstance(rec.get("metadata"), dict):
                continue
            if all(isinstance(files.get(n), dict) and _still(self.path / n, files[n]) for n in group if n in files):
                kept.update({n: files[n] for n in group if n in files})
        return kept


def _still(path: Path, record: dict[str, Any]) -> bool:
    """Whether ``path`` still has the size and sha256 ``record`` says."""
    try:
        same_size = path.is_file() and record.get("size") == path.stat().st_size
        return same_size and record.get("sha256") == sha256_file(path)
    except OSError:
        return False


def retract(folder: Path, names: Iterable[str]) -> bool:
    """Before replacing ``names`` in ``folder``: atomically rewrite its manifest without them (artifact entries
    and file records, companions included), their names under ``pending``. Returns whether it was rewritten."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # none, or unreadable: a reader ignores it, and the run's end replaces it
    if not isinstance(data, dict):
        return False
    gone = {c for n in names for c in companions(n)}
    artifacts = data.get("artifacts")
    kept = [a for a in artifacts if not (isinstance(a, dict) and gone & companions(str(a.get("path"))))] \
        if isinstance(artifacts, list) else artifacts  # fmt: skip
    files = data.get("files")
    kept_files = {k: v for k, v in files.items() if k not in gone} if isinstance(files, dict) else files
    pending = set(data.get("pending") or []) if isinstance(data.get("pending"), list) else set()
    if kept == artifacts and kept_files == files:
        return False  # it lists none of them
    data.update(artifacts=kept, files=kept_files, pending=sorted(pending | gone))
    if artifacts is None:
        del data["artifacts"]
    if files is None:
        del data["files"]
    write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
    return True


def companions(name: str) -> set[str]:
    """``name`` and the files that belong with it (``m.xml`` <-> ``m.bin``)."""
    p = Path(name)
    return {name, *(p.with_suffix(s).name for s in COMPANIONS.get(p.suffix, ()))}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and value != value:
        return None
    return str(value)
