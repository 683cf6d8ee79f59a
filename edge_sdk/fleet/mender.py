"""The states of the ``edge-model`` Mender update module: ``python -m edge_sdk.fleet.mender STATE DIR``.

``scripts/mender/edge-model`` (installed as ``/usr/share/mender/modules/v3/edge-model``) calls this with the
state Mender is in and the module's file tree ``DIR`` (``header/``, ``files/``, ``tmp/``; update module
protocol v3). The Mender artifact's payload is one ``.edgebundle``; Mender stores it in ``DIR/files/``
(``Download`` does not consume the streams).

- ``ArtifactInstall``: verify the bundle against the trusted keys, stage it into the inactive slot
  (:mod:`edge_sdk.fleet.slots`), load it and run one warm-up inference (``EDGE_SDK_MENDER_SMOKE=0`` skips
  that), then activate it (uncommitted);
- ``ArtifactCommit``: commit the live slot;
- ``ArtifactRollback`` / ``ArtifactFailure``: if this deployment activated a slot that is still live,
  switch back to the previous one;
- ``NeedsArtifactReboot``: ``No``; ``SupportsRollback``: ``Yes``; ``ProvidePayloadFileSizes``: ``No``;
  every other state (reboot states, ``Download``, ``Cleanup``, states of later protocol versions): nothing.

Settings (environment, or ``/etc/default/edge-model`` read by the shell script): ``EDGE_SDK_STATE_DIR``
(default ``/var/lib/edge-sdk``), ``EDGE_SDK_TRUSTED_KEYS`` (default ``/etc/edge-sdk/trusted-keys``, a folder
of ``*.pub``). Errors go to stderr as one line and exit 1, which makes Mender fail (and roll back) the update.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Sequence

from edge_sdk.errors import EdgeSDKError
from edge_sdk.fleet import slots

DEFAULT_STATE_DIR = "/var/lib/edge-sdk"
DEFAULT_KEYS = "/etc/edge-sdk/trusted-keys"
#: what this deployment did, kept in the module's tmp/ between states
MARKER = "edge-model-activated.json"
ANSWERS = {"NeedsArtifactReboot": "No", "SupportsRollback": "Yes", "ProvidePayloadFileSizes": "No"}


def state_dir() -> Path:
    return Path(os.environ.get("EDGE_SDK_STATE_DIR") or DEFAULT_STATE_DIR)


def trusted_keys() -> list[str]:
    value = os.environ.get("EDGE_SDK_TRUSTED_KEYS") or DEFAULT_KEYS
    return [value]


def find_bundle(tree: Path) -> Path:
    """The one bundle in ``DIR/files/``."""
    from edge_sdk.fleet.bundle import is_bundle

    files = tree / "files"
    found = sorted(p for p in files.glob("*") if p.is_file() and not p.is_symlink() and is_bundle(p))
    if len(found) != 1:
        names = ", ".join(p.name for p in files.glob("*")) if files.is_dir() else "no files/ folder"
        raise EdgeSDKError(f"expected one .edgebundle in {files}, found {len(found)} ({names or 'empty'})")
    return found[0]


def _smoke(model_path: Path) -> None:
    """Load the staged model and run one inference on zeros: a model its runtime refuses never goes live."""
    if os.environ.get("EDGE_SDK_MENDER_SMOKE", "1").lower() in ("0", "false", "no", "off"):
        return
    import edge_sdk

    with edge_sdk.load(model_path, warmup=1, trusted_keys=trusted_keys()):
        pass


def install(tree: Path) -> None:
    bundle = find_bundle(tree)
    root = state_dir()
    before = slots.read_active(root)
    slot = slots.stage(root, bundle, trusted_keys())
    manifest = json.loads((slot / "bundle.json").read_text(encoding="utf-8"))
    _smoke(slot / manifest["model_file"])
    slots.activate(root, slot)
    marker = {"slot": slot.name, "version": manifest["version"], "replaced": before and before.get("version")}
    (tree / "tmp").mkdir(exist_ok=True)
    (tree / "tmp" / MARKER).write_text(json.dumps(marker), encoding="utf-8")
    print(f"edge-model: {manifest['version']} active in slot {slot.name} (uncommitted)", file=sys.stderr)


def rollback(tree: Path) -> None:
    """Undo this deployment's activation, if it happened and is still live; otherwise nothing."""
    marker_path = tree / "tmp" / MARKER
    if not marker_path.is_file():
        return  # ArtifactInstall failed before activating: the old model never stopped being live
    marker = json.loads(marker_path.read_text(encoding="utf-8"))
    root = state_dir()
    rec = slots.read_active(root)
    if rec is None or rec.get("slot") != marker.get("slot") or rec.get("version") != marker.get("version"):
        return  # already rolled back (ArtifactRollback then ArtifactFailure)
    if rec.get("previous_version") is None:
        print(f"edge-model: nothing to roll back to; {rec.get('version')} stays live", file=sys.stderr)
        return
    slot = slots.rollback(root)
    marker_path.unlink()
    print(f"edge-model: rolled back to {rec.get('previous_version')} in slot {slot}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python -m edge_sdk.fleet.mender STATE DIR", file=sys.stderr)
        return 2
    state, tree = args[0], Path(args[1])
    if state in ANSWERS:
        print(ANSWERS[state])
        return 0
    try:
        if state == "ArtifactInstall":
            install(tree)
        elif state == "ArtifactCommit":
            slots.commit(state_dir())
        elif state in ("ArtifactRollback", "ArtifactFailure"):
            rollback(tree)
    except EdgeSDKError as e:
        print(f"edge-model {state}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
