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
from typing import Any, Sequence

from edge_sdk.errors import BundleError
from edge_sdk.fleet import _archive
from edge_sdk.fleet._archive import MANIFEST_NAME, SIG_NAME
from edge_sdk.fleet._select import embedded_metadata, select, validation_figures
from edge_sdk.fleet.keys import key_id, load_private_key, resolve_trusted_keys

log = logging.getLogger("edge_sdk.fleet")

FORMAT_VERSION = 1
#: the file suffix of a bundle (a bundle is also recognised by content: a zip holding bundle.json)
SUFFIX = ".edgebundle"


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


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- building ------------------------------------------------------------------------------------------------
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
    model, members, record = select(src_path, artifact)
    names = [p.name for p in members]
    if len(set(names)) != len(names):
        raise BundleError(f"two members of {src_path} share a name: {sorted(names)}", reason="build")
    for n in names:
        _archive.check_name(n)
    files = {p.name: sha256_of(p) for p in members}
    manifest = BundleManifest(
        format_version=FORMAT_VERSION,
        version=version or f"{model.stem}+{files[model.name][:12]}",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        key_id=key_id(key.public_key()),
        files=files,
        model_file=model.name,
        metadata=embedded_metadata(model),
        validation=validation_figures(record, model.name, names),
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
