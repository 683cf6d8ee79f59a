"""Rollout over a real mosquitto to a fleet of 20 `edge-sdk agent` processes (issue 16, "Must show"):
a good bundle reaches 100 %; a degraded one is rolled back in the first cohort and never reaches the second;
a tampered one is refused by every device; the broker killed mid-rollout and restarted: the rollout completes.

The fleet is one module fixture (20 processes start once, ~1 s of CPU each); each test rolls out its own
version from whatever the fleet runs. Timeouts are generous and nothing asserts on wall-clock time.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fleet_helpers import (
    REPO,
    Broker,
    Watcher,
    agent_cmd,
    classifier,
    have_mosquitto,
    make_bundle,
    read_json,
    rollout_cmd,
    spawn,
    tamper,
    wait_for,
)

from edge_sdk.fleet.rollout import parse_cohorts, parse_share, split_cohorts

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_mosquitto(), reason="mosquitto not installed")]
FLEET = "shop"
N = 20
DEVICES = [f"cam{i:02d}" for i in range(N)]


class Fleet:
    def __init__(self, work: Path) -> None:
        from edge_sdk.fleet.keys import generate_keypair

        self.work = work
        self.key, self.pub = generate_keypair(work / "signing")
        self.broker = Broker(work).start()
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        for d in DEVICES:
            cmd = agent_cmd(self.broker, FLEET, d, work / d, self.pub, "--probation-frames", "6",
                            "--telemetry-every", "5", "--source", "synthetic:?fps=0&size=48x48")  # fmt: skip
            self.agents[d] = spawn(cmd, work / f"{d}.log")
        self.watch = Watcher(self.broker, FLEET)
        self.versions = 0

    def bundle(self, **perturb: Any) -> tuple[Path, str, str]:
        self.versions += 1
        version = f"v{self.versions}"
        model = classifier(self.work / f"{version}.onnx", **perturb)
        path, digest = make_bundle(self.work, model, self.key, version)
        return path, digest, version

    def rollout(self, path: Path, digest: str, version: str, *extra: str, timeout: float = 240) -> tuple[int, dict]:
        cmd = rollout_cmd(self.broker, FLEET, path, digest, version, "--expect", str(N), "--timeout", "150", *extra)
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=REPO)
        return proc.returncode, _json(proc.stdout, proc.stderr)

    def agent_json(self, device: str) -> dict[str, Any]:
        return read_json(self.work / device / "agent.json")

    def live(self, device: str) -> str | None:
        return read_json(self.work / device / "active").get("version")

    def close(self) -> None:
        for p in self.agents.values():
            p.terminate()
        for p in self.agents.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.watch.close()
        self.broker.stop()


def _json(stdout: bytes, stderr: bytes) -> dict[str, Any]:
    try:
        return json.loads(stdout)
    except ValueError:
        raise AssertionError(f"rollout printed no JSON; stderr: {stderr.decode()[-2000:]}") from None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    f = Fleet(tmp_path_factory.mktemp("fleet"))
    try:
        wait_for(lambda: all(f.watch.get(d, "status") == "online" for d in DEVICES), 90, "20 agents online")
        path, digest, version = f.bundle()
        rc, report = f.rollout(path, digest, version, "--cohorts", "100")  # first install: shipped figures
        assert rc == 0 and report["reached"] == N, report
        yield f
    finally:
        f.close()


def test_cohorts_and_shares_parse():
    assert parse_cohorts("1,10,100") == [1.0, 10.0, 100.0]
    assert parse_share("5%") == pytest.approx(0.05) and parse_share("0.2") == pytest.approx(0.2)
    devices = [f"d{i}" for i in range(20)]
    assert [len(c) for c in split_cohorts(devices, [1, 10, 100])] == [1, 1, 18]
    assert [len(c) for c in split_cohorts(devices, [1, 5, 20], "count")] == [1, 4, 15]
    with pytest.raises(Exception, match="growing positive numbers"):
        parse_cohorts("10,1")


def test_good_bundle_reaches_the_whole_fleet(fleet: Fleet):
    path, digest, version = fleet.bundle(scale=1.001)
    rc, report = fleet.rollout(path, digest, version, "--cohorts", "1,10,100")
    assert rc == 0, report["reason"]
    assert report["result"] == "complete" and report["reached"] == N
    assert [c["size"] for c in report["cohorts"]] == [1, 1, 18]
    for d in DEVICES:
        assert fleet.live(d) == version
        assert fleet.agent_json(d)["state"] == "active"
    assert all(fleet.watch.state(d).get("version") == version for d in DEVICES)


def test_degraded_bundle_is_rolled_back_in_the_first_cohort(fleet: Fleet):
    before = {d: fleet.live(d) for d in DEVICES}
    path, digest, version = fleet.bundle(bias=50.0)  # every frame's top-1 becomes the last class
    rc, report = fleet.rollout(path, digest, version, "--cohorts", "1,10,100", "--max-failed", "5%")
    assert rc == 3, report
    assert report["result"] == "stopped" and len(report["cohorts"]) == 1
    first = report["cohorts"][0]
    assert first["rolled_back"] == 1 and first["result"] == "set back"
    (d0,) = first["devices"]
    reason = report["states"][d0]["reason"]
    assert reason.startswith("probation: agreement with the current model 0.0 < 0.9"), reason
    # it never reached the second cohort: no other device ever saw it
    for d in DEVICES[1:]:
        assert all((s or {}).get("version") != version for s in fleet.watch.history(d)), d
        assert fleet.live(d) == before[d]
    wait_for(lambda: fleet.watch.state(d0).get("state") == "active", 60, "first cohort set back")
    assert fleet.live(d0) == before[d0]


def test_tampered_bundle_is_refused_by_every_device(fleet: Fleet):
    before = {d: fleet.live(d) for d in DEVICES}
    good, _, version = fleet.bundle()
    path, digest = tamper(good, fleet.work / "tampered.edgebundle")
    rc, report = fleet.rollout(path, digest, version, "--cohorts", "100", "--max-failed", "100%")
    assert rc == 3 and report["reached"] == 0
    for d in DEVICES:
        st = report["states"][d]
        assert st["state"] == "failed" and st["version"] == version
        assert "model.onnx" in st["reason"], st["reason"]  # the reason names the member
        assert fleet.live(d) == before[d]


def test_broker_killed_mid_rollout_and_restarted(fleet: Fleet):
    path, digest, version = fleet.bundle(scale=1.002)
    cmd = rollout_cmd(fleet.broker, FLEET, path, digest, version, "--expect", str(N), "--timeout", "150",
                      "--cohorts", "1,10,100")  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        wait_for(lambda: fleet.watch.state(DEVICES[0]).get("version") == version, 90, "first cohort under way")
        fleet.broker.kill()
        time.sleep(1.0)
        fleet.broker.start()  # same port, no persistence: retained messages and sessions are gone
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    report = _json(out, err)
    assert proc.returncode == 0, report["reason"]
    assert report["reached"] == N and report["broker_reconnects"] >= 1
    for d in DEVICES:  # no device stuck or lost: every one live on the new version, and online again
        assert fleet.live(d) == version
        assert fleet.agent_json(d)["state"] == "active"
    wait_for(lambda: all(fleet.watch.get(d, "status") == "online" for d in DEVICES), 60, "all online again")
