"""The device agent: desired-state checks, atomic download, probation verdicts, restart recovery, and one
`edge-sdk agent` process against a real mosquitto (state and telemetry topics, last will, SIGKILL during
probation restarts to a consistent slot)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from fleet_helpers import Broker, Watcher, agent_cmd, classifier, have_mosquitto, make_bundle, spawn, wait_for
from realtime_helpers import SlowModel

import edge_sdk as es
from edge_sdk.errors import FleetError
from edge_sdk.fleet import slots
from edge_sdk.fleet.agent import Agent
from edge_sdk.fleet.agent_install import InstallOptions
from edge_sdk.fleet.agent_state import AgentState, check_desired, download
from edge_sdk.fleet.probation import ProbationRules, run_probation, shipped_figures

SHA = "ab" * 32


@pytest.mark.parametrize(
    "url, error",
    [
        ("file:///srv/b.edgebundle", None),
        ("http://127.0.0.1:8000/b.edgebundle", None),
        ("http://localhost/b.edgebundle", None),
        ("http://10.0.0.5/b.edgebundle", "host '10.0.0.5' refused"),
        ("https://example.com/b.edgebundle", "only file:// and http://127.0.0.1"),
        ("ftp://127.0.0.1/b", "only file:// and http://127.0.0.1"),
        ("file://evil.example/b", "name no host"),
    ],
)
def test_desired_state_urls(url, error):
    doc = {"version": "v1", "url": url, "sha256": SHA}
    if error is None:
        assert check_desired(doc) == ("v1", url, SHA)
    else:
        with pytest.raises(FleetError, match=error):
            check_desired(doc)


def test_desired_state_needs_version_and_hash():
    with pytest.raises(FleetError, match="no version"):
        check_desired({"url": "file:///x", "sha256": SHA})
    with pytest.raises(FleetError, match="not 64 hex digits"):
        check_desired({"version": "v1", "url": "file:///x", "sha256": "abc"})


def test_download_checks_sha256_and_leaves_nothing_on_mismatch(tmp_path):
    src = tmp_path / "b.edgebundle"
    src.write_bytes(b"bundle bytes" * 1000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    with pytest.raises(FleetError, match="sha256 mismatch"):
        download(src.as_uri(), SHA, tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []
    got = download(src.as_uri(), digest, tmp_path / "dl")
    assert got.read_bytes() == src.read_bytes() and got.name == f"{digest}.edgebundle"


def test_download_over_loopback_http(tmp_path):
    (tmp_path / "www").mkdir()
    src = tmp_path / "www" / "b.edgebundle"
    src.write_bytes(b"x" * 100_000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/b.edgebundle"
        got = download(url, hashlib.sha256(src.read_bytes()).hexdigest(), tmp_path / "dl")
        assert got.read_bytes() == src.read_bytes()
    finally:
        server.shutdown()


# -- probation --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("probation")
    with (
        es.load(classifier(d / "good.onnx")) as good,
        es.load(classifier(d / "same.onnx", scale=1.001)) as same,
        es.load(classifier(d / "bad.onnx", bias=50.0)) as bad,
    ):
        yield {"good": good, "same": same, "bad": bad}


FRAMES = [np.full((40, 40, 3), c, np.uint8) for c in ((200, 10, 10), (10, 200, 10), (10, 10, 200))] * 4


def test_probation_passes_an_equivalent_model(models):
    rep = run_probation(models["same"], FRAMES, current=models["good"])
    assert rep.passed, rep.reason
    assert rep.agreement == 1.0 and rep.cosine > 0.999 and rep.errors == 0


def test_probation_fails_a_degraded_model_on_agreement(models):
    rep = run_probation(models["bad"], FRAMES, current=models["good"])
    assert not rep.passed and rep.agreement < 0.5
    assert "agreement with the current model" in rep.reason


def test_probation_fails_a_slow_model_on_latency(models):
    slow = SlowModel(models["same"], 0.03)
    slow.metadata = None  # type: ignore[attr-defined]
    rep = run_probation(slow, FRAMES[:4], current=models["good"], rules=ProbationRules(latency_slack_ms=5.0))
    assert not rep.passed and "latency p95" in rep.reason and "over the budget" in rep.reason
    rep = run_probation(models["same"], FRAMES[:4], current=models["good"], rules=ProbationRules(latency_budget_ms=0))
    assert not rep.passed and "over the budget 0 ms" in rep.reason


def test_probation_counts_errors(models):
    class Broken:
        inputs, outputs, metadata, path = models["good"].inputs, models["good"].outputs, None, Path("broken.onnx")

        def run(self, *a, **k):
            raise RuntimeError("boom")

    rep = run_probation(Broken(), FRAMES[:3], current=models["good"])
    assert not rep.passed and rep.errors == 3 and "3 error(s)" in rep.reason


def test_first_install_is_judged_by_the_shipped_figures(models):
    ok = {"passed": True, "metrics": [{"name": "logits", "cosine": 0.9999, "top1_agreement": 0.99}]}
    assert shipped_figures(ok) == {"metrics[0].cosine": 0.9999, "metrics[0].top1_agreement": 0.99}
    assert run_probation(models["good"], FRAMES[:2], validation=ok).passed
    low = {"passed": True, "metrics": [{"name": "logits", "cosine": 0.9999, "top1_agreement": 0.5}]}
    rep = run_probation(models["good"], FRAMES[:2], validation=low)
    assert not rep.passed and "metrics[0].top1_agreement=0.5 < 0.9" in rep.reason
    rep = run_probation(models["good"], FRAMES[:2], validation={})
    assert not rep.passed and "no validation figures" in rep.reason and "--accept-unvalidated" in rep.reason
    assert run_probation(models["good"], FRAMES[:2], validation={}, rules=ProbationRules(require_figures=False)).passed
    rep = run_probation(models["good"], FRAMES[:2], validation={"passed": False, "failures": ["cosine 0.5"]})
    assert not rep.passed and "own validation failed: cosine 0.5" in rep.reason


# -- restart recovery (no broker needed: recovery runs when the agent is built) ---------------------------------
def _staged(tmp_path: Path, versions: list[str]) -> tuple[Path, Path, dict[str, tuple[Path, str]]]:
    from edge_sdk.fleet.keys import generate_keypair

    key, pub = generate_keypair(tmp_path / "k")
    bundles = {v: make_bundle(tmp_path, classifier(tmp_path / f"{v}.onnx", scale=1 + i / 1000), key, v)
               for i, v in enumerate(versions)}  # fmt: skip
    return key, pub, bundles


def test_restart_after_a_kill_mid_download_starts_clean(tmp_path):
    _, pub, bundles = _staged(tmp_path, ["v1"])
    state = tmp_path / "state"
    (state / "downloads").mkdir(parents=True)
    (state / "downloads" / f"{bundles['v1'][1]}.edgebundle.part").write_bytes(b"half")
    desired = {"version": "v1", "url": bundles["v1"][0].as_uri(), "sha256": bundles["v1"][1]}
    AgentState(state="downloading", version="v1", desired=desired).save(state / "agent.json")
    agent = Agent("mqtt://127.0.0.1:1", "f", "d", InstallOptions(state, [pub]))
    assert list((state / "downloads").iterdir()) == []  # the half-written download is gone
    assert agent._pending == desired and agent.state.state == "downloading"
    assert "resumed after an interrupted downloading" in agent.state.reason
    agent._apply(agent._pending)
    assert agent.state.state == "active" and slots.read_active(state)["version"] == "v1"


def test_restart_after_a_kill_between_activation_and_record(tmp_path):
    _, pub, bundles = _staged(tmp_path, ["v1"])
    state = tmp_path / "state"
    slots.activate(state, slots.stage(state, bundles["v1"][0], [pub]))
    AgentState(state="probation", version="v1", desired={"version": "v1"}).save(state / "agent.json")
    agent = Agent("mqtt://127.0.0.1:1", "f", "d", InstallOptions(state, [pub]))
    assert agent.state.state == "active" and agent._pending is None
    assert json.loads((state / "agent.json").read_text())["state"] == "active"


# -- one agent process against mosquitto ---------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not have_mosquitto(), reason="mosquitto not installed")
def test_agent_killed_during_probation_restarts_to_a_consistent_slot(tmp_path):
    _, pub, bundles = _staged(tmp_path, ["v1", "v2"])
    broker = Broker(tmp_path).start()
    watch = Watcher(broker, "f")
    state = tmp_path / "state"
    # a slow camera: 12 frames at 4 fps keep the probation going for ~3 s
    cmd = agent_cmd(broker, "f", "d", state, pub, "--probation-frames", "12", "--telemetry-every", "0.5",
                    "--source", "synthetic:?fps=4&size=48x48")  # fmt: skip
    agent = spawn(cmd, tmp_path / "agent.log", nice=0)
    try:
        wait_for(lambda: watch.get("d", "status") == "online", 60, "agent online")
        for v in ("v1", "v2"):
            watch.publish("d", "model/desired", {"version": v, "url": bundles[v][0].as_uri(), "sha256": bundles[v][1]})
            if v == "v1":
                wait_for(lambda: watch.state("d").get("state") == "active", 60, "v1 active")
        wait_for(lambda: watch.state("d").get("state") == "probation" and watch.state("d")["version"] == "v2", 60, "v2")

        def v2_probation_telemetry() -> dict:  # v1's own probation also sent some, with nothing live yet
            t = watch.get("d", "telemetry") or {}
            return t if t.get("state") == "probation" and t.get("model_version") == "v1" else {}

        tele = wait_for(v2_probation_telemetry, 30, "telemetry during the v2 probation")
        assert tele["rss_bytes"] > 0 and "cpu_temp_c" in tele and tele["device"] == "d"
        assert tele["latency_ms"]["p95"] > 0  # the live model's, from its own probation
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        # the broker says offline for it (last will); the live slot is still the complete v1
        wait_for(lambda: watch.get("d", "status") == "offline", 30, "last will")
        assert slots.read_active(state)["version"] == "v1"
        from edge_sdk.fleet.bundle import verify_extracted

        assert verify_extracted(slots.active_model(state).parent, [pub]).version == "v1"
        assert json.loads((state / "agent.json").read_text())["state"] == "probation"
        agent = spawn(cmd, tmp_path / "agent.log", nice=0)
        wait_for(lambda: watch.get("d", "status") == "online", 60, "agent back online")
        wait_for(lambda: watch.state("d").get("state") == "active" and watch.state("d").get("version") == "v2",
                 90, "v2 active after the restart")  # fmt: skip
        assert slots.read_active(state)["version"] == "v2" and slots.read_active(state)["committed"]
        assert verify_extracted(slots.active_model(state).parent, [pub]).version == "v2"
        history = [(s or {}).get("state") for s in watch.history("d")]
        assert history.count("probation") >= 2  # the interrupted probation ran again from the start
    finally:
        agent.kill()
        agent.wait(10)
        watch.close()
        broker.stop()


def test_telemetry_reads_the_pipeline_metrics_and_the_thermal_zone(tmp_path):
    from edge_sdk.fleet.telemetry import Telemetry, cpu_temperature

    for i, (kind, milli) in enumerate((("acpitz", "41000"), ("x86_pkg_temp", "55500"))):
        z = tmp_path / "thermal" / f"thermal_zone{i}"
        z.mkdir(parents=True)
        (z / "type").write_text(kind + "\n")
        (z / "temp").write_text(milli + "\n")
    assert cpu_temperature(tmp_path / "thermal") == 55.5
    assert cpu_temperature(tmp_path / "none") is None
    metrics = tmp_path / "metrics.jsonl"
    lines = [
        {"type": "metrics", "fps": 10.0, "fps_recent": 11.0, "latency_ms": {"p50": 5}, "frames": {"dropped": 1}},
        {"type": "metrics", "fps": 20.0, "fps_recent": 21.0, "latency_ms": {"p50": 4}, "frames": {"dropped": 3}},
    ]
    metrics.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"type": "metr')  # a line being written
    doc = Telemetry(metrics).snapshot(version="v1", state="active", live_ms={"p50": 2.0, "p95": 3.0})
    assert doc["fps"] == 21.0 and doc["latency_ms"] == {"p50": 4} and doc["drops"] == 3
    assert doc["model_version"] == "v1" and doc["rss_bytes"] > 0 and doc["probation_ms"]["p95"] == 3.0
    doc = Telemetry(None).snapshot(version="v1", state="active", live_ms={"p50": 2.0, "p95": 3.0})
    assert doc["fps"] == 500.0 and doc["latency_source"] == "probation"
