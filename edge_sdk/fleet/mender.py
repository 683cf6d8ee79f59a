"""The states of the ``edge-model`` Mender update module: ``python -m edge_sdk.fleet.mender STATE DIR``.

``scripts/mender/edge-model`` (installed as ``/usr/share/mender/modules/v3/edge-model``) calls this with the
state Mender is in and the module's file tree ``DIR`` (``header/``, ``files/``, ``tmp/``; update module
protocol v3). The Mender artifact's payload is one ``.edgebundle``; Mender stores it in ``DIR/files/``
(``Download`` does not consume the streams).

- ``ArtifactInstall``: verify the bundle against the trusted keys, stage it into the inactive slot
  (:mod:`edge_sdk.fleet.slots`), run the device agent's probation on it (:mod:`edge_sdk.fleet.probation`
  through :mod:`edge_sdk.fleet.agent_install`: the same frames to the live model and the candidate, latency
  p95, no errors, agreement; the shipped validation figures on a first install), then activate it
  (uncommitted). A failed probation exits 1 with the reason and the old model stays live;
- ``ArtifactCommit``: commit the live slot;
- ``ArtifactRollback`` / ``ArtifactFailure``: if this deployment activated a slot that is still live,
  switch back to the previous one;
- ``NeedsArtifactReboot``: ``No``; ``SupportsRollback``: ``Yes``; ``ProvidePayloadFileSizes``: ``No``;
  every other state (reboot states, ``Download``, ``Cleanup``, states of later protocol versions): nothing.

Settings (environment, or ``/etc/default/edge-model`` read by the shell script): ``EDGE_SDK_STATE_DIR``
(default ``/var/lib/edge-sdk``), ``EDGE_SDK_TRUSTED_KEYS`` (default ``/etc/edge-sdk/trusted-keys``, a folder
of ``*.pub``). The probation (the agent's defaults, ``edge-sdk agent`` options in brackets):
``EDGE_SDK_PROBATION_SOURCE`` (``--source``; default the agent's synthetic test pattern
``synthetic:?fps=0&size=320x240``; a video file, image, folder or ``synthetic:...``),
``EDGE_SDK_PROBATION_FRAMES`` (30), ``EDGE_SDK_PROBATION_LATENCY_FACTOR`` (1.5),
``EDGE_SDK_PROBATION_LATENCY_BUDGET_MS`` (none), ``EDGE_SDK_PROBATION_MIN_AGREEMENT`` (0.9),
``EDGE_SDK_PROBATION_MIN_COSINE`` (0.98), ``EDGE_SDK_PROBATION_ACCEPT_UNVALIDATED`` (``--accept-unvalidated``;
0). Errors go to stderr as one line and exit 1, which makes Mender fail (and roll back) the update.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

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


def _env_number(name: str, default: float | None, kind: type = float) -> Any:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise EdgeSDKError(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}") from None
    if value < 0 or (kind is int and value < 1):
        raise EdgeSDKError(f"{name}={raw!r} is out of range")
    return value


def probation_options(root: Path) -> Any:
    """The agent's install options from the ``EDGE_SDK_PROBATION_*`` settings (the agent's defaults)."""
    from edge_sdk.fleet.agent_install import DEFAULT_SOURCE, InstallOptions
    from edge_sdk.fleet.probation import ProbationRules

    d = ProbationRules()
    accept = (os.environ.get("EDGE_SDK_PROBATION_ACCEPT_UNVALIDATED") or "0").strip().lower()
    rules = ProbationRules(
        frames=_env_number("EDGE_SDK_PROBATION_FRAMES", d.frames, int),
        latency_factor=_env_number("EDGE_SDK_PROBATION_LATENCY_FACTOR", d.latency_factor),
        latency_budget_ms=_env_number("EDGE_SDK_PROBATION_LATENCY_BUDGET_MS", d.latency_budget_ms),
        min_agreement=_env_number("EDGE_SDK_PROBATION_MIN_AGREEMENT", d.min_agreement),
        min_cosine=_env_number("EDGE_SDK_PROBATION_MIN_COSINE", d.min_cosine),
        require_figures=accept in ("", "0", "false", "no", "off"),
    )  # fmt: skip
    source = (os.environ.get("EDGE_SDK_PROBATION_SOURCE") or "").strip() or DEFAULT_SOURCE
    return InstallOptions(root, trusted_keys(), source, rules)


def probation(root: Path, slot: Path) -> str:
    """Run the agent's probation on the candidate staged in ``slot`` beside the live model; a summary when it
    passed, an EdgeSDKError naming the rule it broke (with the numbers) when not."""
    from edge_sdk.fleet.agent_install import _probation, _summary
    from edge_sdk.fleet.bundle import MANIFEST_NAME, BundleManifest

    manifest = BundleManifest.from_bytes((slot / MANIFEST_NAME).read_bytes())  # stage() verified it
    rep = _probation(slot, manifest, probation_options(root))
    if not rep.passed:
        reason = rep.reason.replace("edge-sdk agent --accept-unvalidated", "EDGE_SDK_PROBATION_ACCEPT_UNVALIDATED=1")
        raise EdgeSDKError(f"probation of {manifest.version} failed: {reason}")
    return _summary(rep)


def install(tree: Path) -> None:
    bundle = find_bundle(tree)
    root = state_dir()
    before = slots.read_active(root)
    slot = slots.stage(root, bundle, trusted_keys())
    manifest = json.loads((slot / "bundle.json").read_text(encoding="utf-8"))
    summary = probation(root, slot)  # raises when the candidate is worse: nothing activated, the old model live
    slots.activate(root, slot)
    marker = {"slot": slot.name, "version": manifest["version"], "replaced": before and before.get("version")}
    (tree / "tmp").mkdir(exist_ok=True)
    (tree / "tmp" / MARKER).write_text(json.dumps(marker), encoding="utf-8")
    print(f"edge-model: {manifest['version']} passed probation ({summary}); active in slot {slot.name} "
          "(uncommitted)", file=sys.stderr)  # fmt: skip


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
