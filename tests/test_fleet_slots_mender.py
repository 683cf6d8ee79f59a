"""A/B model slots and the ``edge-model`` Mender update module (issue 16 items 2 and 4): staging never touches
the live model, activation and rollback are atomic, the module answers Mender's states as the client calls it
and its ArtifactInstall runs the agent's probation (a worse model fails the install; the old one stays live)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cryptography")
pytest.importorskip("onnxruntime")

import edge_sdk as es  # noqa: E402
from edge_sdk.errors import BundleError, SlotError  # noqa: E402
from edge_sdk.fleet import slots  # noqa: E402
from edge_sdk.fleet.bundle import build_bundle  # noqa: E402
from edge_sdk.fleet.keys import generate_keypair  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "scripts" / "mender" / "edge-model"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Keys and three bundles: v1 and v2 (different weights) signed by the trusted key, v3 by another."""
    import builders

    d = tmp_path_factory.mktemp("slots_kit")
    priv, pub = generate_keypair(d / "signer")
    other, _ = generate_keypair(d / "other")
    out = {"pub": pub}
    for name, features, key in (("v1", 4, priv), ("v2", 3, priv), ("v3", 2, other)):
        (d / name).mkdir()
        model = builders.onnx_mlp(d / name / "mlp.onnx", out_features=features)
        out[name] = d / f"{name}.edgebundle"
        build_bundle(model, out[name], key, version=name)
    return out


def version(state: Path) -> str | None:
    rec = slots.read_active(state)
    return rec and rec["version"]


def test_stage_activate_commit_rollback(tmp_path: Path, kit: dict[str, Path]) -> None:
    state = tmp_path / "state"
    assert slots.active_model(state) is None
    a = slots.stage(state, kit["v1"], [kit["pub"]])
    assert a == state / "slots" / "a" and slots.active_model(state) is None  # staged, not live
    slots.activate(state, a)
    assert slots.active_model(state) == a / "mlp.onnx" and version(state) == "v1"
    slots.commit(state)
    b = slots.stage(state, kit["v2"], [kit["pub"]])
    assert b == state / "slots" / "b" and version(state) == "v1"  # the live slot is never written
    slots.activate(state, b)
    rec = slots.read_active(state)
    assert (rec["slot"], rec["version"], rec["previous"], rec["previous_version"], rec["committed"]) == (
        "b",
        "v2",
        "a",
        "v1",
        False,
    )
    assert slots.previous_model(state) == a / "mlp.onnx"
    assert slots.rollback(state) == "a" and version(state) == "v1"
    with es.load(slots.active_model(state), trusted_keys=[kit["pub"]]) as m:  # a slot's files are signed
        assert m.run({"x": np.zeros((1, 16), np.float32)})["y"].shape == (1, 4)
    assert slots.rollback(state) == "b" and version(state) == "v2"  # a rollout setting devices back: toggles
    assert sorted(p.name for p in (state / "slots").iterdir()) == ["a", "b"]


def test_a_failed_stage_leaves_the_live_model_and_a_partial_one_is_cleaned(tmp_path: Path, kit) -> None:
    state = tmp_path / "state"
    slots.activate(state, slots.stage(state, kit["v1"], [kit["pub"]]))
    live = slots.active_model(state)
    with pytest.raises(BundleError, match="not trusted"):
        slots.stage(state, kit["v3"], [kit["pub"]])
    assert slots.active_model(state) == live and version(state) == "v1"
    # what a kill in the middle of a stage leaves: a temp folder and a set-aside slot, both dot-named
    (state / "slots" / ".b.1234.tmp").mkdir()
    (state / "slots" / ".b.1234.tmp" / "mlp.onnx").write_bytes(b"half")
    (state / "slots" / ".b.old-1-ab").mkdir()
    assert slots.active_model(state) == live
    slots.stage(state, kit["v2"], [kit["pub"]])
    assert sorted(p.name for p in (state / "slots").iterdir()) == ["a", "b"]
    with pytest.raises(SlotError, match="no previous model"):
        slots.rollback(state)


def test_activate_refuses_an_empty_or_damaged_slot(tmp_path: Path, kit: dict[str, Path]) -> None:
    state = tmp_path / "state"
    with pytest.raises(SlotError, match="holds no staged bundle"):
        slots.activate(state, "b")
    b = slots.stage(state, kit["v1"], [kit["pub"]])
    (b / "mlp.onnx").write_bytes(b"\0" + (b / "mlp.onnx").read_bytes()[1:])
    with pytest.raises(SlotError, match="slot a .* is damaged: .*member 'mlp.onnx' was tampered with"):
        slots.activate(state, b)
    assert slots.read_active(state) is None
    with pytest.raises(SlotError, match="not a slot"):
        slots.activate(state, tmp_path)


def test_the_active_record_is_replaced_whole(tmp_path: Path, kit: dict[str, Path]) -> None:
    state = tmp_path / "state"
    slots.activate(state, slots.stage(state, kit["v1"], [kit["pub"]]))
    slots.activate(state, slots.stage(state, kit["v2"], [kit["pub"]]))
    assert json.loads((state / "active").read_text())["slot"] == "b"
    assert not [p for p in state.iterdir() if p.name.startswith(".active")]  # no temp record left


# ---- Mender -------------------------------------------------------------------------------------------------
def module_tree(root: Path, bundle: Path, artifact: str) -> Path:
    """The file tree the Mender client gives an update module (v3): header/, files/ (the stored payload), tmp/."""
    tree = root / artifact
    (tree / "header").mkdir(parents=True)
    (tree / "header" / "header-info").write_text(
        json.dumps({"payloads": [{"type": "edge-model"}], "artifact_provides": {"artifact_name": artifact}})
    )
    (tree / "header" / "type-info").write_text(json.dumps({"type": "edge-model"}))
    (tree / "header" / "meta-data").write_text("{}")
    (tree / "files").mkdir()
    (tree / "files" / bundle.name).write_bytes(bundle.read_bytes())
    (tree / "tmp").mkdir()
    (tree / "version").write_text("3\n")
    return tree


def mender(state: str, tree: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Call the module as the client does: ``MODULE STATE DIR``."""
    return subprocess.run([str(MODULE), state, str(tree)], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def mkit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bundles for the Mender module, whose ArtifactInstall runs the probation: tiny image classifiers with
    shipped validation figures (fleet_helpers, as the agent and rollout tests). v1 and v2 agree (v2's weights
    x1.001), v3 is signed by an untrusted key, ``bad`` has its outputs perturbed (every top-1 the last class)."""
    from fleet_helpers import classifier, make_bundle

    d = tmp_path_factory.mktemp("mender_kit")
    priv, pub = generate_keypair(d / "signer")
    other, _ = generate_keypair(d / "other")
    out = {"pub": pub}
    for name, key, perturb in (("v1", priv, {}), ("v2", priv, {"scale": 1.001}), ("v3", other, {}),
                               ("bad", priv, {"bias": 50.0})):  # fmt: skip
        out[name], _ = make_bundle(d, classifier(d / f"{name}.onnx", **perturb), key, name)
    return out


@pytest.fixture
def menv(tmp_path: Path, mkit: dict[str, Path]) -> dict[str, str]:
    return {
        **os.environ,
        "EDGE_SDK_PYTHON": sys.executable,
        "EDGE_SDK_STATE_DIR": str(tmp_path / "state"),
        "EDGE_SDK_TRUSTED_KEYS": str(mkit["pub"]),
        "EDGE_SDK_PROBATION_SOURCE": "synthetic:?fps=0&size=48x48",
        "EDGE_MODEL_CONFIG": str(tmp_path / "none"),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }


def deploy(tree: Path, env: dict[str, str], *, fail_after_install: bool = False) -> list[tuple[str, int, str]]:
    """The client's sequence for one deployment (standalone install, no reboot), with a failure after install
    (e.g. an ArtifactInstall_Leave state script failing) when asked."""
    calls: list[tuple[str, int, str]] = []

    def call(state: str) -> int:
        r = mender(state, tree, env)
        calls.append((state, r.returncode, r.stdout.strip() or r.stderr.strip()))
        return r.returncode

    call("ProvidePayloadFileSizes")
    if call("Download") == 0 and call("ArtifactInstall") == 0 and not fail_after_install:
        call("NeedsArtifactReboot")
        call("SupportsRollback")
        if call("ArtifactCommit") == 0:
            call("Cleanup")
            return calls
    call("SupportsRollback")
    call("ArtifactRollback")
    call("ArtifactFailure")
    call("Cleanup")
    return calls


def test_mender_module_installs_commits_and_rolls_back(tmp_path: Path, mkit: dict[str, Path], menv) -> None:
    state = Path(menv["EDGE_SDK_STATE_DIR"])
    calls = deploy(module_tree(tmp_path, mkit["v1"], "model-v1"), menv)
    assert [(s, rc) for s, rc, _ in calls] == [
        ("ProvidePayloadFileSizes", 0),
        ("Download", 0),
        ("ArtifactInstall", 0),
        ("NeedsArtifactReboot", 0),
        ("SupportsRollback", 0),
        ("ArtifactCommit", 0),
        ("Cleanup", 0),
    ]
    answers = {s: out for s, _, out in calls}
    assert (answers["ProvidePayloadFileSizes"], answers["NeedsArtifactReboot"], answers["SupportsRollback"]) == (
        "No",
        "No",
        "Yes",
    )
    rec = slots.read_active(state)
    assert (rec["version"], rec["committed"]) == ("v1", True)

    # v2 installs, then the deployment fails before commit: Mender rolls back, v1 is live again
    calls = deploy(module_tree(tmp_path, mkit["v2"], "model-v2"), menv, fail_after_install=True)
    assert [s for s, _, _ in calls][-4:] == ["SupportsRollback", "ArtifactRollback", "ArtifactFailure", "Cleanup"]
    assert all(rc == 0 for _, rc, _ in calls), calls
    assert version(state) == "v1" and slots.active_model(state) == state / "slots" / "a" / "model.onnx"

    # v2 again, all the way: committed in slot b
    calls = deploy(module_tree(tmp_path / "again", mkit["v2"], "model-v2"), menv)
    assert all(rc == 0 for _, rc, _ in calls), calls
    rec = slots.read_active(state)
    assert (rec["slot"], rec["version"], rec["committed"], rec["previous_version"]) == ("b", "v2", True, "v1")


def test_mender_module_refuses_a_bundle_signed_by_another_key(tmp_path: Path, mkit: dict[str, Path], menv) -> None:
    state = Path(menv["EDGE_SDK_STATE_DIR"])
    assert all(rc == 0 for _, rc, _ in deploy(module_tree(tmp_path, mkit["v1"], "model-v1"), menv))
    calls = deploy(module_tree(tmp_path, mkit["v3"], "model-v3"), menv)
    install = next(c for c in calls if c[0] == "ArtifactInstall")
    assert install[1] == 1 and install[2].count("\n") == 0
    assert install[2].startswith("edge-model ArtifactInstall: error: v3.edgebundle is signed by key ")
    assert "not trusted" in install[2]
    assert [s for s, _, _ in calls][-3:] == ["ArtifactRollback", "ArtifactFailure", "Cleanup"]
    assert all(rc == 0 for s, rc, _ in calls if s != "ArtifactInstall")
    assert version(state) == "v1"  # the live model never changed; rollback did not go past it


def test_mender_module_ignores_states_it_does_not_use(tmp_path: Path, mkit: dict[str, Path], menv) -> None:
    tree = module_tree(tmp_path, mkit["v1"], "model-v1")
    for state in ("ArtifactReboot", "ArtifactVerifyReboot", "ArtifactRollbackReboot", "SomeFutureState"):
        r = mender(state, tree, menv)
        assert (r.returncode, r.stdout) == (0, ""), (state, r.stderr)
    assert slots.read_active(Path(menv["EDGE_SDK_STATE_DIR"])) is None


def install_line(calls: list[tuple[str, int, str]]) -> tuple[int, str]:
    return next((rc, out) for s, rc, out in calls if s == "ArtifactInstall")


def test_mender_probation_passes_a_good_bundle_and_it_commits(tmp_path: Path, mkit: dict[str, Path], menv) -> None:
    """First install judged by its shipped figures, the next beside the live model on the same frames; both from
    the default probation source (no EDGE_SDK_PROBATION_SOURCE: the agent's synthetic test pattern)."""
    state = Path(menv["EDGE_SDK_STATE_DIR"])
    env = {k: v for k, v in menv.items() if k != "EDGE_SDK_PROBATION_SOURCE"}
    calls = deploy(module_tree(tmp_path, mkit["v1"], "model-v1"), env)
    assert all(rc == 0 for _, rc, _ in calls), calls
    assert "v1 passed probation (30 frames, p95 " in install_line(calls)[1]
    assert "shipped validation figures" in install_line(calls)[1]
    calls = deploy(module_tree(tmp_path, mkit["v2"], "model-v2"), env)
    assert [(s, rc) for s, rc, _ in calls][2:6] == [
        ("ArtifactInstall", 0),
        ("NeedsArtifactReboot", 0),
        ("SupportsRollback", 0),
        ("ArtifactCommit", 0),
    ]
    assert "v2 passed probation (30 frames, p95 " in install_line(calls)[1]
    assert "agreement 1.0" in install_line(calls)[1] and "active in slot b (uncommitted)" in install_line(calls)[1]
    rec = slots.read_active(state)
    assert (rec["slot"], rec["version"], rec["committed"], rec["previous_version"]) == ("b", "v2", True, "v1")


def test_mender_probation_fails_a_degraded_bundle_and_the_old_model_stays(tmp_path: Path, mkit, menv) -> None:
    """The degraded bundle is signed and loads and runs: only the probation catches it. ArtifactInstall exits 1
    with one line naming the agreement; ArtifactRollback and ArtifactFailure leave v1 live and committed."""
    state = Path(menv["EDGE_SDK_STATE_DIR"])
    assert all(rc == 0 for _, rc, _ in deploy(module_tree(tmp_path, mkit["v1"], "model-v1"), menv))
    calls = deploy(module_tree(tmp_path, mkit["bad"], "model-bad"), menv)
    rc, line = install_line(calls)
    assert rc == 1 and line.count("\n") == 0, line
    assert line == ("edge-model ArtifactInstall: error: probation of bad failed: "
                    "agreement with the current model 0.0 < 0.9")  # fmt: skip
    assert [s for s, _, _ in calls][-4:] == ["SupportsRollback", "ArtifactRollback", "ArtifactFailure", "Cleanup"]
    assert all(rc == 0 for s, rc, _ in calls if s != "ArtifactInstall"), calls
    rec = slots.read_active(state)
    assert (rec["slot"], rec["version"], rec["committed"]) == ("a", "v1", True)
    assert slots.active_model(state) == state / "slots" / "a" / "model.onnx"
    # a good bundle still installs after it (the failed one only ever sat in the inactive slot)
    assert all(rc == 0 for _, rc, _ in deploy(module_tree(tmp_path / "again", mkit["v2"], "model-v2"), menv))
    assert version(state) == "v2"


def test_mender_probation_thresholds_come_from_the_settings(tmp_path: Path, mkit: dict[str, Path], menv) -> None:
    """A latency budget of 0 ms no model meets (first install, nothing live: nothing to roll back to); a bad
    setting is one line too."""
    state = Path(menv["EDGE_SDK_STATE_DIR"])
    tree = module_tree(tmp_path, mkit["v1"], "model-v1")
    r = mender("ArtifactInstall", tree, {**menv, "EDGE_SDK_PROBATION_LATENCY_BUDGET_MS": "0"})
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("edge-model ArtifactInstall: error: probation of v1 failed: latency p95 ")
    assert r.stderr.rstrip().endswith(" ms over the budget 0 ms")
    assert mender("ArtifactFailure", tree, menv).returncode == 0 and slots.read_active(state) is None
    r = mender("ArtifactInstall", tree, {**menv, "EDGE_SDK_PROBATION_MIN_AGREEMENT": "high"})
    assert (r.returncode, r.stderr) == (
        1,
        "edge-model ArtifactInstall: error: EDGE_SDK_PROBATION_MIN_AGREEMENT='high' is not a number\n",
    )
    assert slots.read_active(state) is None


KILLER = """
import os, shutil, sys
from edge_sdk.fleet import slots
state, bundle, pub, at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
count = [0]
def killing(fn):
    def wrapped(*a, **k):
        count[0] += 1
        if count[0] == at:
            os._exit(137)  # as SIGKILL: no cleanup, no finally
        return fn(*a, **k)
    return wrapped
os.replace, os.fsync, shutil.rmtree = killing(os.replace), killing(os.fsync), killing(shutil.rmtree)
slots.activate(state, slots.stage(state, bundle, [pub]))
"""


def test_a_kill_at_any_step_of_stage_and_activate_leaves_a_usable_model(tmp_path: Path, kit: dict[str, Path]) -> None:
    """The process dies (os._exit, no cleanup) at the 1st, 2nd, ... file-system step of staging and activating v2
    over a live v1: after every kill the live model is a complete, verified v1 or v2, and a new stage works."""
    from edge_sdk.fleet.bundle import verify_extracted

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    seen = set()
    for at in range(1, 40):
        state = tmp_path / f"s{at}"
        slots.activate(state, slots.stage(state, kit["v1"], [kit["pub"]]))
        r = subprocess.run(
            [sys.executable, "-c", KILLER, str(state), str(kit["v2"]), str(kit["pub"]), str(at)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode in (0, 137), r.stderr
        live = slots.active_model(state)
        manifest = verify_extracted(live.parent, [kit["pub"]])
        assert manifest.version == version(state) in ("v1", "v2")
        seen.add(manifest.version)
        slots.stage(state, kit["v1"], [kit["pub"]])  # what was left behind does not block the next stage
        assert verify_extracted(slots.active_model(state).parent, [kit["pub"]]).version == manifest.version
        if r.returncode == 0:
            break
    assert r.returncode == 0 and at > 5 and seen == {"v1", "v2"}
