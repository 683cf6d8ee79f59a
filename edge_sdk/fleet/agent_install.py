"""One install of a desired model on a device: download, verify, stage, probation, then activate or roll back.

Runs the steps of :mod:`edge_sdk.fleet.agent_state`'s machine and reports each transition through a
callback (the agent persists it and publishes it). The signed-bundle and slot operations are those of
:mod:`edge_sdk.fleet.bundle` and :mod:`edge_sdk.fleet.slots`; the active model only ever changes through
``slots.activate`` / ``slots.rollback`` (atomic), so a kill leaves the old model or the new one live.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_sdk.errors import EdgeSDKError
from edge_sdk.fleet.agent_state import check_desired, download
from edge_sdk.fleet.probation import ProbationRules, run_probation

log = logging.getLogger("edge_sdk.fleet.agent")
#: (state, version, reason, extra) -> None
Report = Callable[[str, "str | None", str, "dict[str, Any] | None"], None]
DEFAULT_SOURCE = "synthetic:?fps=0&size=320x240"


@dataclass
class InstallOptions:
    """Where the agent keeps its slots, which keys it trusts, where probation frames come from."""

    state_dir: Path
    trusted_keys: list[Any] = field(default_factory=list)
    source: str = DEFAULT_SOURCE
    rules: ProbationRules = field(default_factory=ProbationRules)
    threads: int = 1


def read_frames(source: str, n: int, timeout: float = 10.0) -> list[np.ndarray]:
    """The first ``n`` frames of ``source`` (RGB uint8), the same list fed to both models."""
    from edge_sdk.sources import open_source

    frames: list[np.ndarray] = []
    with open_source(source) as src:
        while len(frames) < n:
            f = src.read(timeout=timeout)
            if f is None:
                break
            frames.append(np.ascontiguousarray(f.data))
    return frames


def active(state_dir: Path) -> tuple[Path | None, dict[str, Any]]:
    """(model file of the live slot, that slot's manifest as a dict) or (None, {}) when nothing is live."""
    from edge_sdk.fleet import slots

    found = slots.active_model(state_dir)
    if found is None:
        return None, {}
    return _model_and_manifest(found)


def _model_and_manifest(found: Any) -> tuple[Path | None, dict[str, Any]]:
    """Normalise what the slots API returns (a model path, a slot folder, or an object with both)."""
    path = getattr(found, "model_path", None) or getattr(found, "path", None) or found
    manifest = getattr(found, "manifest", None)
    path = Path(path)
    if manifest is None:
        manifest = _slot_manifest(path if path.is_dir() else path.parent)
    if path.is_dir():
        model_file = (manifest or {}).get("model_file")
        path = path / model_file if model_file else path
    return path, _as_dict(manifest)


def _slot_manifest(slot: Path) -> dict[str, Any]:
    import json

    for name in ("manifest.json", "bundle.json", "MANIFEST.json"):
        p = slot / name
        if p.is_file():
            try:
                return json.loads(p.read_text())
            except ValueError:
                return {}
    return {}


def _as_dict(manifest: Any) -> dict[str, Any]:
    if manifest is None:
        return {}
    if isinstance(manifest, dict):
        return manifest
    if hasattr(manifest, "to_dict"):
        return manifest.to_dict()
    from dataclasses import asdict, is_dataclass

    return asdict(manifest) if is_dataclass(manifest) else dict(vars(manifest))


def _load(path: Path, threads: int) -> Any:
    import edge_sdk as es

    return es.load(path, threads=threads)


def install(desired: dict[str, Any], opts: InstallOptions, report: Report) -> str:
    """Take ``desired`` from download to active (or rolled_back / failed); returns the final state."""
    from edge_sdk.fleet import bundle, slots

    version = desired.get("version") if isinstance(desired.get("version"), str) else None
    step = "downloading"
    try:
        version, url, sha = check_desired(desired)
        report("downloading", version, "", None)
        path = download(url, sha, opts.state_dir / "downloads")
        step = "verifying"
        report("verifying", version, "", None)
        manifest = bundle.verify_bundle(path, opts.trusted_keys or None)
        if str(manifest.version) != version:
            raise EdgeSDKError(f"bundle carries version {manifest.version}, desired state says {version}")
        step = "staging"
        slot = Path(slots.stage(opts.state_dir, path, opts.trusted_keys or None))
        report("staged", version, f"slot {slot.name}", None)
        step = "probation"
        report("probation", version, "", None)
        rep = _probation(slot, manifest, opts)
    except EdgeSDKError as e:
        log.warning("%s %s failed: %s", step, version, e)
        report("failed", version, f"{step}: {e}", None)
        return "failed"
    if not rep.passed:
        report("rolled_back", version, f"probation: {rep.reason}", rep.to_dict())
        return "rolled_back"
    try:
        slots.activate(opts.state_dir, slot)
    except EdgeSDKError as e:
        report("failed", version, f"activating: {e}", rep.to_dict())
        return "failed"
    report("active", version, f"probation passed ({_summary(rep)})", rep.to_dict())
    return "active"


def _summary(rep: Any) -> str:
    parts = [f"{rep.frames} frames", f"p95 {rep.candidate_ms.get('p95')} ms"]
    if rep.agreement is not None:
        parts.append(f"agreement {rep.agreement}")
    if rep.reference != "current model":
        parts.append(rep.reference)
    return ", ".join(parts)


def _probation(slot: Path, manifest: Any, opts: InstallOptions) -> Any:
    """Load the live model (if any) and the staged candidate and run them side by side on the same frames."""
    cand_path = slot / manifest.model_file
    cur_path, _ = active(opts.state_dir)
    frames = read_frames(opts.source, opts.rules.frames)
    current = _load(cur_path, opts.threads) if cur_path is not None and cur_path.is_file() else None
    try:
        try:
            candidate = _load(cand_path, opts.threads)
        except EdgeSDKError as e:
            from edge_sdk.fleet.probation import ProbationReport

            return ProbationReport(False, f"candidate does not load: {e}", len(frames), "classify", errors=1)
        with candidate:
            validation = getattr(manifest, "validation", None)
            return run_probation(candidate, frames, current=current, validation=validation, rules=opts.rules)
    finally:
        if current is not None:
            current.close()


def switch_back(desired: dict[str, Any], opts: InstallOptions, report: Report) -> str | None:
    """A desired version that is the one in the other slot (a rollout setting devices back): switch slots
    atomically, no download or probation (it was live before). None when that slot does not hold it."""
    from edge_sdk.fleet import slots

    version = desired.get("version")
    prev = previous_version(opts.state_dir)
    if not version or prev != version:
        return None
    try:
        slots.rollback(opts.state_dir)
    except EdgeSDKError as e:
        report("failed", version, f"switching back to {version}: {e}", None)
        return "failed"
    report("active", version, "switched back to the previous slot", None)
    return "active"


def previous_version(state_dir: Path) -> str | None:
    """Version in the inactive slot, when it holds a complete, once-active model (else None)."""
    from edge_sdk.fleet import slots

    fn = getattr(slots, "previous_model", None) or getattr(slots, "inactive_model", None)
    if fn is None:
        return None
    found = fn(state_dir)
    if found is None:
        return None
    _, manifest = _model_and_manifest(found)
    v = manifest.get("version")
    return str(v) if v is not None else None


def active_version(state_dir: Path) -> str | None:
    """Version of the live slot's bundle, or None."""
    try:
        _, manifest = active(state_dir)
    except EdgeSDKError:
        return None
    v = manifest.get("version")
    return str(v) if v is not None else None
