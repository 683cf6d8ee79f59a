"""--json on every verb: stdout holds one strict JSON document (or JSON lines for a stream), an error included."""

from __future__ import annotations

import json

import pytest

# -- every --json: one strict JSON document on stdout -------------------------------------------------------


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _json_invocations(cli_models, tmp_path) -> dict[str, list[list[str]]]:
    static, dyn, image = str(cli_models["static"]), str(cli_models["dynamic"]), str(cli_models["image"])
    converted = tmp_path / "conv"
    return {
        "info": [["info", static]],
        "bench": [["bench", static, "--runs", "2", "--warmup", "0"],
                  ["bench", static, "--runs", "2", "--warmup", "0", "--cold-warm"]],
        "zoo": [["zoo", "list"]],
        "convert": [["convert", static, "-o", str(converted)]],
        "diff": [["diff", static, str(converted / "static_fp32.onnx")]],
        "prune": [["prune", static, "--no-default-skips", "--min-params", "0", "-o", str(tmp_path / "pr")],
                  ["prune", static, "--no-default-skips", "--min-params", "0", "--list-layers"]],
        "devices": [["devices"], ["devices", "--list-profiles"]],
        "reshape": [["reshape", dyn, "-o", str(tmp_path / "r.onnx"), "--input-shape", "x=2,16"]],
        "run": [["run", image, "--task", "classify", "--source", "synthetic:?frames=3&size=32x32"]],
        "serve": [["serve", "--print-systemd-unit"]],  # serving itself: JSON lines (tests/test_serve_http.py)
        "keygen": [["keygen", str(tmp_path / "k")]],
        "bundle": [["bundle", static, "-o", str(tmp_path / "m.edgebundle"), "--key", str(tmp_path / "k")]],
        "verify": [["verify", str(tmp_path / "m.edgebundle"), "--pub", str(tmp_path / "k.pub")]],
    }  # fmt: skip


def test_every_verb_json_is_one_strict_json_document(cli, cli_models, tmp_path):
    from edge_sdk.cli.main import COMMANDS

    calls = _json_invocations(cli_models, tmp_path)
    # demo: test_demo_json_is_one_json_document (slow); agent and rollout need a broker: their --json is read by
    # tests/test_fleet_rollout.py (one JSON document) and the agent writes JSON to MQTT, not stdout
    assert set(calls) | {"demo", "agent", "rollout"} == set(COMMANDS)
    for invocations in calls.values():
        for args in invocations:
            r = cli(*args, "--json")
            assert r.returncode == 0, (args, r.stderr)
            try:
                doc = _strict_json(r.stdout)
            except ValueError as e:
                pytest.fail(f"edge-sdk {' '.join(args)} --json: stdout is not one JSON document ({e}): {r.stdout!r}")
            assert doc is not None, args
    doc = _strict_json(cli("convert", str(cli_models["static"]), "-o", str(tmp_path / "c2"), "--json").stdout)
    assert doc["artifacts"][0]["metrics"][0]["snr_db"] == "inf"  # identical outputs: not the non-JSON Infinity


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_run_sink_stdout_is_pure_json_lines(cli, cli_models, extra):
    r = cli("run", str(cli_models["image"]), "--task", "classify", "--source", "synthetic:?fps=0&frames=3&size=32x32",
            "--sink", "-", *extra)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [_strict_json(line) for line in r.stdout.splitlines()]
    assert [x.get("type") for x in lines].count("result") == 3
    if not extra:
        assert "results" in r.stderr and "last result:" in r.stderr  # the summary table went to stderr
    else:
        assert lines[-1]["task"] == "classify" and lines[-1]["metrics"]["results"] == 3


@pytest.mark.slow
def test_demo_json_is_one_json_document(cli, tmp_path):
    pytest.importorskip("torch")
    r = cli("demo", "--pipeline-only", "-o", str(tmp_path), "--json", timeout=1200)
    assert r.returncode == 0, r.stderr
    assert "pipeline" in _strict_json(r.stdout)


def test_an_error_under_json_is_json_on_stdout_too(cli, tmp_path):
    r = cli("bench", str(tmp_path / "nope.onnx"), "--json")
    assert r.returncode == 2
    doc = json.loads(r.stdout)  # a script reading stdout gets an object, not nothing
    assert doc["command"] == "bench" and doc["exit_code"] == 2 and doc["type"] == "ModelFileError"
    assert "nope.onnx" in doc["error"] and r.stderr.strip().splitlines()[-1] == f"edge-sdk bench: error: {doc['error']}"
    # a verb that wrote its report and then exits non-zero keeps stdout one document: test_prune_reports_a_destroyed_
    # model_as_failed and tests/test_fleet_rollout.py parse it
