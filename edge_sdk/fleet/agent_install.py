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


def active(state_dir: Path) -> Path | None:
    """The live model file (``slots.active_model``), or None when nothing was ever activated."""
    from edge_sdk.fleet import slots

    return slots.active_model(state_dir)


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
        slots.commit(opts.state_dir)  # the probation was its trial: accepted
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
    cur_path = active(opts.state_dir)
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
    """Version in the inactive slot, when it still holds the model that was live before (else None)."""
    from edge_sdk.fleet import slots

    rec = slots.read_active(state_dir)
    if rec is None or slots.previous_model(state_dir) is None:
        return None
    v = rec.get("previous_version")
    return str(v) if v is not None else None


def active_version(state_dir: Path) -> str | None:
    """Version of the live slot's bundle, or None (nothing live, or an unreadable record)."""
    from edge_sdk.fleet import slots

    try:
        rec = slots.read_active(state_dir)
    except EdgeSDKError:
        return None
    v = (rec or {}).get("version")
    return str(v) if v is not None else None
