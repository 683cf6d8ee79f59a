"""The agent's persistent state machine (``STATE_DIR/agent.json``) and its atomic bundle download.

States::

    idle -> downloading -> verifying -> staged -> probation -> active
                 |             |           |          `------> rolled_back   (probation failed)
                 `-------------`-----------`-----------------> failed        (download, signature, staging)

``agent.json`` is rewritten atomically (temp file, fsync, rename, fsync of the folder) at every
transition, so a kill at any point leaves either the old or the new record. A record found in a busy
state (downloading .. probation) at start means the agent died mid-install: the install restarts from
the download (the half-downloaded ``*.part`` files are removed; a staged slot is never the active one).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edge_sdk.errors import FleetError
from edge_sdk.fleet._archive import fsync_dir
from edge_sdk.fleet.mqtt_client import LOOPBACK

STATES = ("idle", "downloading", "verifying", "staged", "probation", "active", "rolled_back", "failed")
BUSY = frozenset({"downloading", "verifying", "staged", "probation"})
TERMINAL = frozenset({"active", "rolled_back", "failed"})
_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class AgentState:
    """What agent.json holds: the machine's state, the desired document it works on, the live version."""

    state: str = "idle"
    version: str | None = None
    reason: str = ""
    ts: float = field(default_factory=time.time)
    desired: dict[str, Any] | None = None
    active_version: str | None = None
    probation: dict[str, Any] | None = None
    live_ms: dict[str, Any] | None = None  # latency p50/p95 of the live model, measured in its last probation

    def public(self) -> dict[str, Any]:
        """The retained ``model/state`` document."""
        doc = {"state": self.state, "version": self.version, "reason": self.reason, "ts": self.ts,
               "active_version": self.active_version}  # fmt: skip
        if self.probation:
            doc["probation"] = {k: self.probation.get(k) for k in ("agreement", "cosine", "candidate_ms", "errors")}
        return doc

    @classmethod
    def load(cls, path: Path) -> AgentState:
        """The saved record, or a fresh one when there is none (or it is unreadable: then say so in reason)."""
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as e:
            return cls(reason=f"agent.json unreadable ({e}); starting fresh")
        known = {f.name for f in fields(cls)}
        st = cls(**{k: v for k, v in doc.items() if k in known}) if isinstance(doc, dict) else cls()
        return st if st.state in STATES else cls(reason=f"agent.json had unknown state {st.state!r}")

    def save(self, path: Path) -> None:
        atomic_write(path, json.dumps(asdict(self), indent=1, sort_keys=True).encode())


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def check_desired(doc: dict[str, Any]) -> tuple[str, str, str]:
    """(version, url, sha256) of a desired-state document; FleetError naming what is wrong."""
    version, url, sha = doc.get("version"), doc.get("url"), str(doc.get("sha256") or "").lower()
    if not isinstance(version, str) or not version:
        raise FleetError("desired state has no version")
    if not isinstance(url, str) or not url:
        raise FleetError(f"desired state for {version} has no bundle url")
    if not _SHA.match(sha):
        raise FleetError(f"desired state for {version}: sha256 {doc.get('sha256')!r} is not 64 hex digits")
    u = urlsplit(url)
    if u.scheme == "file":
        if u.netloc not in ("", "localhost"):
            raise FleetError(f"bundle url {url}: file:// URLs name no host")
    elif u.scheme == "http":
        if u.hostname not in LOOPBACK:
            raise FleetError(f"bundle url {url}: host {u.hostname!r} refused (only {', '.join(LOOPBACK)})")
    else:
        raise FleetError(f"bundle url {url}: only file:// and http://127.0.0.1 are allowed")
    return version, url, sha


def download(url: str, sha256: str, folder: Path, *, timeout: float = 30.0, chunk: int = 1 << 16) -> Path:
    """Fetch ``url`` into ``folder/<sha256>.edgebundle`` atomically, checking its sha256 while it streams.

    An existing complete file with that name is reused (it was renamed into place only after its hash
    matched). A mismatch deletes the partial file and raises FleetError.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{sha256}.edgebundle"
    if final.is_file():
        return final
    part = folder / f"{sha256}.edgebundle.part"
    h = hashlib.sha256()
    u = urlsplit(url)
    try:
        src = open(unquote(u.path), "rb") if u.scheme == "file" else urllib.request.urlopen(url, timeout=timeout)  # noqa: S310, SIM115 - scheme and host checked in check_desired
    except OSError as e:
        raise FleetError(f"cannot download {url}: {getattr(e, 'strerror', None) or e}") from None
    try:
        with src, open(part, "wb") as out:
            while True:
                block = src.read(chunk)
                if not block:
                    break
                h.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
    except OSError as e:
        part.unlink(missing_ok=True)
        raise FleetError(f"download of {url} broke off: {getattr(e, 'strerror', None) or e}") from None
    if h.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise FleetError(f"sha256 mismatch for {url}: got {h.hexdigest()[:16]}..., expected {sha256[:16]}...")
    os.replace(part, final)
    fsync_dir(folder)
    return final


def clean_partials(folder: Path, keep: int = 2) -> None:
    """Remove interrupted downloads, and all but the ``keep`` newest complete bundles."""
    if not folder.is_dir():
        return
    for p in folder.glob("*.part"):
        p.unlink(missing_ok=True)
    done = sorted(folder.glob("*.edgebundle"), key=lambda p: p.stat().st_mtime, reverse=True)
    for p in done[keep:]:
        p.unlink(missing_ok=True)
