"""Ed25519 signing keys for model bundles: generate a pair, load trusted public keys, name a key by its id.

Keys are plain PEM files: the private key as unencrypted PKCS#8 (``-----BEGIN PRIVATE KEY-----``, mode 0600),
the public key as SubjectPublicKeyInfo (``-----BEGIN PUBLIC KEY-----``) in ``PATH.pub``. A device trusts the
public keys it is given (``trusted_keys=[...]``, ``--pub``) or those named by ``EDGE_SDK_TRUSTED_KEYS``
(paths separated by ``os.pathsep``; a folder means every ``*.pub`` in it). ``cryptography`` is imported
inside the functions, so ``import edge_sdk`` stays light; without it a :class:`MissingExtraError` names the
``fleet`` extra.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from edge_sdk.errors import KeyFileError, MissingExtraError

if TYPE_CHECKING:  # the type only; the module is imported lazily
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    PublicKey = Ed25519PublicKey
    PrivateKey = Ed25519PrivateKey
else:
    PublicKey = Any
    PrivateKey = Any

#: the setting a device reads its trusted public keys from
TRUSTED_KEYS_ENV = "EDGE_SDK_TRUSTED_KEYS"
#: a key file larger than this is not a key (refused before parsing)
MAX_KEY_BYTES = 64 * 1024


def _crypto() -> Any:
    """The ``cryptography`` serialization and ed25519 modules, or a typed error naming the extra."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise MissingExtraError("signed model bundles", "fleet", "cryptography") from None
    return serialization, ed25519


def generate_keypair(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write a new Ed25519 private key to ``path`` (PKCS#8 PEM, 0600) and its public key to ``path.pub``.

    Refuses to overwrite either file (a lost signing key cannot be recovered, a replaced one breaks every
    device that trusts it). Returns ``(private, public)``.
    """
    serialization, ed25519 = _crypto()
    private_path = Path(path)
    public_path = private_path.with_name(private_path.name + ".pub")
    for p in (private_path, public_path):
        if p.exists() or p.is_symlink():
            raise KeyFileError(f"{p} already exists; refusing to overwrite a key (choose another path or remove it)")
    if not private_path.parent.is_dir():
        raise KeyFileError(f"cannot write {private_path}: folder {private_path.parent} does not exist")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except BaseException:
        private_path.unlink(missing_ok=True)
        raise
    return private_path, public_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` exclusively with ``mode`` (never following a symlink, never replacing a file)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
    except OSError as e:
        raise KeyFileError(f"cannot write {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, mode)


def _read_key_file(path: Path) -> bytes:
    try:
        if not path.is_file():
            raise KeyFileError(f"key file {path} does not exist (or is not a file)")
        if path.stat().st_size > MAX_KEY_BYTES:
            raise KeyFileError(f"{path} is {path.stat().st_size} bytes: not a key file")
        return path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read key file {path}: {e.strerror or e}") from None


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """The Ed25519 private key in a PEM file written by :func:`generate_keypair`."""
    serialization, ed25519 = _crypto()
    p = Path(path)
    data = _read_key_file(p)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        hint = " (that is a public key; sign with the private one)" if b"PUBLIC KEY" in data else ""
        raise KeyFileError(f"{p} is not an unencrypted PEM private key{hint}: {e}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"{p} holds a {type(key).__name__}; bundles are signed with Ed25519 (edge-sdk keygen)")
    return key


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """The Ed25519 public key in a PEM file (``PATH.pub``); a private key file gives its public half."""
    serialization, ed25519 = _crypto()
    p = Path(path)
    data = _read_key_file(p)
    if b"PRIVATE KEY" in data:
        return load_private_key(p).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{p} is not a PEM public key (edge-sdk keygen writes PATH.pub): {e}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise KeyFileError(f"{p} holds a {type(key).__name__}; bundles are signed with Ed25519 (edge-sdk keygen)")
    return key


def _expand(spec: str | os.PathLike[str]) -> list[Path]:
    """One spec -> key files: ``os.pathsep``-separated paths; a folder means its ``*.pub`` files."""
    parts = [s for s in str(spec).split(os.pathsep) if s.strip()] if isinstance(spec, str) else [os.fspath(spec)]
    out: list[Path] = []
    for part in parts:
        p = Path(part).expanduser()
        if p.is_dir():
            found = sorted(p.glob("*.pub"))
            if not found:
                raise KeyFileError(f"trusted key folder {p} holds no *.pub file")
            out.extend(found)
        else:
            out.append(p)
    return out


def load_public_keys(specs: Iterable[str | os.PathLike[str]]) -> list[PublicKey]:
    """Public keys from files (or folders of ``*.pub``, or ``os.pathsep``-separated lists of them, the form of
    ``EDGE_SDK_TRUSTED_KEYS``); duplicates are dropped. A missing or malformed file is a :class:`KeyFileError`."""
    keys: dict[str, PublicKey] = {}
    for spec in specs:
        for path in _expand(spec):
            key = load_public_key(path)
            keys.setdefault(key_id(key), key)
    return list(keys.values())


def env_trusted_keys() -> list[PublicKey] | None:
    """The keys ``EDGE_SDK_TRUSTED_KEYS`` names, or None when it is unset or empty."""
    value = os.environ.get(TRUSTED_KEYS_ENV, "").strip()
    if not value:
        return None
    return load_public_keys([value])


def resolve_trusted_keys(trusted_keys: Iterable[Any] | None) -> list[PublicKey] | None:
    """``trusted_keys`` (paths or key objects) as key objects; None -> the environment's; None when neither."""
    if trusted_keys is None:
        return env_trusted_keys()
    keys: dict[str, PublicKey] = {}
    for item in trusted_keys:
        for key in [item] if hasattr(item, "public_bytes") else load_public_keys([item]):
            keys.setdefault(key_id(key), key)
    return list(keys.values())


def raw_public_bytes(public_key: PublicKey) -> bytes:
    serialization, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: PublicKey) -> str:
    """A short fingerprint of a public key (first 16 hex digits of the SHA-256 of its 32 raw bytes)."""
    if hasattr(public_key, "public_key") and not hasattr(public_key, "verify"):  # a private key: its public half
        public_key = public_key.public_key()
    return hashlib.sha256(raw_public_bytes(public_key)).hexdigest()[:16]
