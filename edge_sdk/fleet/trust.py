"""What ``edge_sdk.load`` does with trusted keys: bundles extracted into a content-addressed cache, plain files
accepted only as part of a verified extracted bundle (a slot, a cache entry).

The cache folder of a bundle is ``<cache root>/bundles/<first 32 hex digits of the bundle's sha256>`` (the
root of ``edge_sdk.cache``: ``$EDGE_SDK_CACHE_DIR``, ``$XDG_CACHE_HOME/edge_sdk`` or ``~/.cache/edge_sdk``).
An existing entry is verified again (signature and every file's hash) before each use, so a damaged or
altered cache is re-extracted, never trusted.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from edge_sdk.errors import BundleError, UnsignedModelError
from edge_sdk.fleet.bundle import BundleManifest, extract_bundle, is_bundle, verify_extracted

log = logging.getLogger("edge_sdk.fleet")


def bundle_cache_dir() -> Path:
    from edge_sdk.cache import cache_root

    return cache_root() / "bundles"


def cached_extract(bundle: str | os.PathLike[str], trusted_keys: Sequence[Any] | None = None
                   ) -> tuple[BundleManifest, Path]:  # fmt: skip
    """Verify ``bundle`` and extract it once into the cache; (manifest, model file path)."""
    from edge_sdk.cache import sha256_file

    path = Path(bundle)
    if not path.is_file():
        raise BundleError(f"{path} does not exist (or is not a file)", reason="not_a_bundle")
    folder = bundle_cache_dir() / sha256_file(path)[:32]
    if folder.is_dir():
        try:
            manifest = verify_extracted(folder, trusted_keys)
            return manifest, folder / manifest.model_file
        except BundleError as e:
            if e.reason in ("no_trusted_keys", "untrusted_key"):  # the keys, not the cache: say it of the bundle
                raise BundleError(str(e).replace(str(folder), path.name), reason=e.reason, key_id=e.key_id) from None
            log.warning("cached bundle %s failed verification (%s): extracting it again", folder, e)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise BundleError(
            f"cannot create the bundle cache {folder.parent}: {e.strerror or e}", reason="build"
        ) from None
    return extract_bundle(path, folder, trusted_keys)


def check_signed_file(path: str | os.PathLike[str], trusted_keys: Sequence[Any] | None = None) -> BundleManifest:
    """The manifest of the verified extracted bundle ``path`` belongs to (it and its companions listed); else an
    :class:`UnsignedModelError` saying how to ship it signed."""
    p = Path(path)
    folder = p.parent
    if (folder / "bundle.json").is_file():
        manifest = verify_extracted(folder, trusted_keys)
        if p.name in manifest.files:
            from edge_sdk.formats import inspect_file

            unlisted = [c.name for c in inspect_file(p).companions if c.name not in manifest.files]
            if not unlisted:
                return manifest
            raise UnsignedModelError(f"{p}: its companion file(s) {', '.join(unlisted)} are not in the signed "
                                     f"bundle of {folder}", reason="unlisted_member", member=unlisted[0])  # fmt: skip
    source = "trusted_keys=[...]" if trusted_keys is not None else "EDGE_SDK_TRUSTED_KEYS"
    raise UnsignedModelError(
        f"{p} is not signed, and trusted keys are set ({source}): only signed bundles load. Ship it as one: "
        f"edge-sdk bundle {p.name} -o model.edgebundle --key KEY, then load model.edgebundle (or load it "
        "without trusted keys set)", reason="unsigned")  # fmt: skip


def trusted_model_path(path: str | os.PathLike[str], trusted_keys: Sequence[Any] | None = None) -> Path:
    """The model file ``edge_sdk.load`` should open for ``path`` (see the module docstring)."""
    if is_bundle(path):
        return cached_extract(path, trusted_keys)[1]
    if not Path(path).exists():
        return Path(path)  # the loader's own check says it is missing
    check_signed_file(path, trusted_keys)
    return Path(path)


def clear_cache() -> None:
    """Remove every extracted bundle from the cache (they are extracted again on the next load)."""
    shutil.rmtree(bundle_cache_dir(), ignore_errors=True)
