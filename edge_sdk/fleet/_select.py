"""What a bundle packs: the model file (checked as a model) and its companions, the other artifacts and the
conversion record of an output folder, the model's embedded metadata and its validation figures."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable

from edge_sdk.errors import BundleError, EdgeSDKError

log = logging.getLogger("edge_sdk.fleet")
#: the conversion record a folder carries, packed as a member
RECORD_NAME = "manifest.json"


def _model_members(model: Path) -> list[Path]:
    """The model file checked as a model, and its companions (``.bin``, external data), companions first."""
    from edge_sdk.formats import inspect_file

    try:
        mf = inspect_file(model)
    except EdgeSDKError as e:
        raise BundleError(f"cannot bundle {model}: {e}", reason="build") from None
    for c in mf.companions:
        if c.parent.resolve() != model.parent.resolve():
            raise BundleError(f"cannot bundle {model}: its companion {c} is outside its folder", reason="build")
    return [*mf.companions, mf.path]


def _artifact_record(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    for a in record.get("artifacts") or []:
        if isinstance(a, dict) and a.get("path") == name:
            return a
    return None


def validation_figures(record: dict[str, Any], model_name: str, names: Iterable[str]) -> dict[str, Any]:
    """The conversion record's figures for the model file (and a summary for the other artifacts)."""
    keep = ("target", "precision", "passed", "failures", "metrics", "route", "quantizer", "size_bytes", "latency")
    art = _artifact_record(record, model_name)
    if art is None:
        return {}
    out: dict[str, Any] = {k: art.get(k) for k in keep if k in art}
    if isinstance(record.get("validation"), dict):
        out["held_out"] = record["validation"]
    others = {n: {k: a.get(k) for k in ("target", "precision", "passed", "metrics")}
              for n in names if n != model_name and (a := _artifact_record(record, n)) is not None}  # fmt: skip
    if others:
        out["other_artifacts"] = others
    return out


def embedded_metadata(model: Path) -> dict[str, Any]:
    from edge_sdk.metadata import model_metadata

    try:
        meta = model_metadata(model)
    except EdgeSDKError as e:
        raise BundleError(f"cannot bundle {model}: {e}", reason="build") from None
    if meta is None:
        return {}
    return {k: v for k, v in meta.to_dict().items() if k not in ("origin", "where") and v is not None}


def select(src: Path, artifact: str | None) -> tuple[Path, list[Path], dict[str, Any]]:
    """(model file, member files, conversion record) for a model file or a conversion output folder."""
    from edge_sdk.metadata import read_manifest

    if src.is_dir():
        record_path = src / RECORD_NAME
        if not record_path.is_file():
            raise BundleError(f"{src} is a folder without {RECORD_NAME}: give a model file or a conversion output "
                              "folder (edge-sdk convert ... -o DIR)", reason="build")  # fmt: skip
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BundleError(f"cannot read {record_path}: {e}", reason="build") from None
        arts = [a for a in record.get("artifacts") or [] if isinstance(a, dict) and isinstance(a.get("path"), str)]
        pending = set(record.get("pending") or [])
        names = [a["path"] for a in arts if a["path"] not in pending and (src / a["path"]).is_file()]
        if artifact is not None:
            if artifact not in names:
                raise BundleError(f"--artifact {artifact}: not an artifact of {record_path} (it lists: "
                                  f"{', '.join(names) or 'none'})", reason="build")  # fmt: skip
            names = [artifact]
        if not names:
            raise BundleError(f"{record_path} lists no artifact present in {src}", reason="build")
        passed = [a["path"] for a in arts if a["path"] in names and a.get("passed")]
        model_name = artifact or (passed[0] if passed else names[0])
        if not passed:
            log.warning("no artifact in %s passed validation; bundling %s with its figures", src, model_name)
        models = [src / n for n in names]
    else:
        if not src.is_file():
            raise BundleError(f"{src} does not exist (give a model file or a conversion output folder)",
                              reason="build")  # fmt: skip
        record = read_manifest(src)  # only when it records this very file
        model_name, models = src.name, [src]
    members: list[Path] = []
    for m in models:
        members += [p for p in _model_members(m) if p not in members]
    for m in models:
        if read_manifest(m) != record and record:
            raise BundleError(f"{src / RECORD_NAME} does not record {m.name} as it is on disk (replaced since?); "
                              "convert again or bundle the file alone", reason="build")  # fmt: skip
    if record:
        members.append(models[0].parent / RECORD_NAME)
    return models[0].parent / model_name, members, record
