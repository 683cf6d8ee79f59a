"""Signed model bundles (``.edgebundle``): build, verify, extract.

A bundle is one zip file (members stored, flat names only) holding:

- ``bundle.json``: the manifest (:class:`BundleManifest`) as canonical JSON (sorted keys, no spaces, ASCII):
  version, creation time, signing key id, the sha256 of every other member, the model file's name, its
  embedded metadata (task, preprocessing, labels) and the conversion record's validation figures;
- ``bundle.sig``: the 64-byte Ed25519 signature of the exact bytes of ``bundle.json``;
- the members: the model file, its companions (OpenVINO ``.bin``, ONNX external data), other artifacts of
  the same conversion and its ``manifest.json`` when built from a conversion output folder.

So the signature covers every byte a device runs and the quality figures it was shipped with. Bundles are
untrusted input: names, sizes, types and hashes are checked before anything is used (see :mod:`._archive`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from edge_sdk.errors import BundleError, EdgeSDKError
from edge_sdk.fleet import _archive
from edge_sdk.fleet._archive import MANIFEST_NAME, SIG_NAME
from edge_sdk.fleet.keys import key_id, load_private_key, resolve_trusted_keys

log = logging.getLogger("edge_sdk.fleet")

FORMAT_VERSION = 1
#: the file suffix of a bundle (a bundle is also recognised by content: a zip holding bundle.json)
SUFFIX = ".edgebundle"
#: the conversion record a folder carries, packed as a member
RECORD_NAME = "manifest.json"


@dataclass(frozen=True)
class BundleManifest:
    """What ``bundle.json`` says (all of it signed)."""

    format_version: int
    version: str
    created: str
    key_id: str
    files: dict[str, str]  # member name -> sha256 (hex)
    model_file: str
    metadata: dict[str, Any] = field(default_factory=dict)  # the model's embedded record: task, preprocessing...
    validation: dict[str, Any] = field(default_factory=dict)  # the conversion record's figures for model_file
    source: dict[str, Any] = field(default_factory=dict)  # where it came from: kind, name, original, tools

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def canonical_bytes(self) -> bytes:
        """The exact bytes that are signed and stored as ``bundle.json``."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: bytes, where: str = MANIFEST_NAME) -> BundleManifest:
        """Parse and type-check a manifest; anything off is a BundleError(reason="bad_manifest")."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise BundleError(f"{where} is not valid JSON: {e}", reason="bad_manifest") from None
        if not isinstance(data, dict):
            raise BundleError(f"{where} must hold a JSON object", reason="bad_manifest")
        types = {"format_version": int, "version": str, "created": str, "key_id": str, "files": dict,
                 "model_file": str, "metadata": dict, "validation": dict, "source": dict}  # fmt: skip
        for name, t in types.items():
            if not isinstance(data.get(name), t) or isinstance(data.get(name), bool):
                raise BundleError(f"{where}: field '{name}' is missing or not a {t.__name__}", reason="bad_manifest")
        if data["format_version"] > FORMAT_VERSION:
            raise BundleError(
                f"{where}: bundle format {data['format_version']} is newer than this edge-sdk reads "
                f"({FORMAT_VERSION}); upgrade edge-sdk on the device", reason="bad_manifest")  # fmt: skip
        files = data["files"]
        for name, digest in files.items():
            _archive.check_name(name)
            if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
                raise BundleError(f"{where}: sha256 of '{name}' is not 64 hex digits", reason="bad_manifest")
        if data["model_file"] not in files:
            raise BundleError(f"{where}: model_file '{data['model_file']}' is not among its files",
                              reason="bad_manifest")  # fmt: skip
        return cls(**{k: data[k] for k in types})


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII only, non-finite floats as null: one byte string per manifest."""
    return json.dumps(_finite(data), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")  # fmt: skip


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {str(k): _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- building ------------------------------------------------------------------------------------------------
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


def _validation(record: dict[str, Any], model_name: str, names: Iterable[str]) -> dict[str, Any]:
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


def _metadata(model: Path) -> dict[str, Any]:
    from edge_sdk.metadata import model_metadata

    try:
        meta = model_metadata(model)
    except EdgeSDKError as e:
        raise BundleError(f"cannot bundle {model}: {e}", reason="build") from None
    if meta is None:
        return {}
    return {k: v for k, v in meta.to_dict().items() if k not in ("origin", "where") and v is not None}


def _select(src: Path, artifact: str | None) -> tuple[Path, list[Path], dict[str, Any]]:
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


def build_bundle(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    private_key: str | os.PathLike[str],
    *,
    version: str | None = None,
    artifact: str | None = None,
) -> BundleManifest:
    """Pack a model file or a conversion output folder into a signed bundle at ``out`` (written atomically).

    From a folder, every artifact its ``manifest.json`` lists (with companions) and the manifest itself are
    packed; the model file is ``artifact`` or the first artifact that passed validation. ``version``
    defaults to ``<model stem>+<first 12 hex digits of its sha256>``.
    """
    src_path = Path(src)
    key = load_private_key(private_key)
    model, members, record = _select(src_path, artifact)
    names = [p.name for p in members]
    if len(set(names)) != len(names):
        raise BundleError(f"two members of {src_path} share a name: {sorted(names)}", reason="build")
    for n in names:
        _archive.check_name(n)
    files = {p.name: _sha256(p) for p in members}
    manifest = BundleManifest(
        format_version=FORMAT_VERSION,
        version=version or f"{model.stem}+{files[model.name][:12]}",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        key_id=key_id(key.public_key()),
        files=files,
        model_file=model.name,
        metadata=_metadata(model),
        validation=_validation(record, model.name, names),
        source={
            "kind": "conversion" if src_path.is_dir() else "file",
            "name": src_path.name,
            "original": record.get("source"),
            "converted": record.get("created"),
            "tools": record.get("tools"),
        },  # fmt: skip
    )
    raw = manifest.canonical_bytes()
    manifest = BundleManifest.from_bytes(raw)  # what a device will read (floats normalised)
    _archive.write_zip(Path(out), [(MANIFEST_NAME, raw), (SIG_NAME, key.sign(raw))], members)
    return manifest


# ---- verifying -----------------------------------------------------------------------------------------------
def _trusted(trusted_keys: Sequence[Any] | None) -> list[Any]:
    keys = resolve_trusted_keys(trusted_keys)
    if not keys:
        raise BundleError("no trusted keys to verify the bundle against: pass --pub KEY.pub (trusted_keys=[...] in "
                          "Python) or set EDGE_SDK_TRUSTED_KEYS", reason="no_trusted_keys")  # fmt: skip
    return keys


def check_signature(raw: bytes, sig: bytes | None, keys: Sequence[Any], where: str) -> BundleManifest:
    """The manifest, once ``sig`` is a valid signature of ``raw`` by one of ``keys``; else a BundleError
    naming the key id the manifest claims."""
    from cryptography.exceptions import InvalidSignature

    try:
        claimed = json.loads(raw).get("key_id")
    except (ValueError, UnicodeDecodeError, AttributeError):
        claimed = None
    claimed = claimed if isinstance(claimed, str) else "?"
    if sig is None:
        raise BundleError(f"{where} is unsigned (no {SIG_NAME}): sign it with edge-sdk bundle --key KEY",
                          reason="unsigned", key_id=claimed)  # fmt: skip
    ids = {key_id(k): k for k in keys}
    signer = None
    for kid, k in ids.items():
        try:
            k.verify(sig, raw)
            signer = kid
            break
        except InvalidSignature:
            continue
    if signer is None:
        if claimed in ids:
            raise BundleError(f"{where}: bad signature: {MANIFEST_NAME} does not match its signature by key "
                              f"{claimed} (manifest tampered with, or signature swapped)", reason="bad_signature",
                              key_id=claimed)  # fmt: skip
        raise BundleError(f"{where} is signed by key {claimed}, which is not trusted (trusted: {', '.join(ids)})",
                          reason="untrusted_key", key_id=claimed)  # fmt: skip
    manifest = BundleManifest.from_bytes(raw, f"{where}: {MANIFEST_NAME}")
    if manifest.key_id != signer:
        raise BundleError(f"{where}: signed by key {signer} but its manifest names key {manifest.key_id}",
                          reason="bad_signature", key_id=signer)  # fmt: skip
    return manifest


def verify_bundle(bundle: str | os.PathLike[str], trusted_keys: Sequence[Any] | None = None) -> BundleManifest:
    """Check a bundle end to end (structure, signature by a trusted key, every member's sha256) and return its
    manifest. ``trusted_keys``: key files or key objects; default ``EDGE_SDK_TRUSTED_KEYS``."""
    keys = _trusted(trusted_keys)
    path = Path(bundle)
    with _archive.open_zip(path) as zf:
        infos = _archive.check_entries(zf, path.name)
        raw, sig = _archive.read_header(zf, infos, path.name)
        manifest = check_signature(raw, sig, keys, path.name)
        _archive.check_members(zf, infos, manifest.files, path.name)
    return manifest


def extract_bundle(
    bundle: str | os.PathLike[str], dest_dir: str | os.PathLike[str], trusted_keys: Sequence[Any] | None = None
) -> tuple[BundleManifest, Path]:
    """Verify a bundle and extract it into ``dest_dir`` (a temp folder beside it, renamed into place once every
    member matched its hash). Returns the manifest and the model file's path. ``dest_dir`` keeps
    ``bundle.json`` and ``bundle.sig`` so the folder can be verified again (:func:`verify_extracted`)."""
    keys = _trusted(trusted_keys)
    path, dest = Path(bundle), Path(dest_dir)
    with _archive.open_zip(path) as zf:
        infos = _archive.check_entries(zf, path.name)
        raw, sig = _archive.read_header(zf, infos, path.name)
        manifest = check_signature(raw, sig, keys, path.name)
        assert sig is not None  # check_signature refuses an unsigned bundle
        _archive.extract_members(zf, infos, manifest.files, path.name, dest, {MANIFEST_NAME: raw, SIG_NAME: sig})
    return manifest, dest / manifest.model_file


def verify_extracted(folder: str | os.PathLike[str], trusted_keys: Sequence[Any] | None = None) -> BundleManifest:
    """Verify a folder written by :func:`extract_bundle` (a slot, a cache entry) as if it were the bundle."""
    keys = _trusted(trusted_keys)
    d = Path(folder)
    raw = _archive.read_small(d / MANIFEST_NAME, str(d))
    sig = _archive.read_small(d / SIG_NAME, str(d)) if (d / SIG_NAME).exists() else None
    manifest = check_signature(raw, sig, keys, str(d))
    _archive.check_folder(d, manifest.files)
    return manifest


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is meant as a bundle: its suffix, or a zip's first bytes (no model format starts so)."""
    p = Path(path)
    if p.suffix.lower() == SUFFIX:
        return True
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def manifest_of(bundle: str | os.PathLike[str]) -> BundleManifest:
    """The manifest of a bundle WITHOUT verifying it (for display and diagnosis only; never trust it)."""
    path = Path(bundle)
    with _archive.open_zip(path) as zf:
        raw, _ = _archive.read_header(zf, _archive.check_entries(zf, path.name), path.name)
    return BundleManifest.from_bytes(raw)
