"""The parts of `make arm64-check` (scripts/arm64) that run without an arm64 rootfs.

The whole check builds a Debian bookworm arm64 userland under qemu-user and runs for many minutes, so it
is a documented target (docs/devices.md), not part of the test suite; these tests keep its pieces honest:
the scripts parse, the Makefile target calls them, the device pins match what the host converts with,
and the report helpers read the jsonl sinks the pipeline really writes.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARM64 = ROOT / "scripts" / "arm64"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"arm64_{name}", ARM64 / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


device_check = _module("device_check")
host_prep = _module("host_prep")


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize("script", ["check.sh", "rootfs.sh", "chroot.sh", "binfmt.sh"])
def test_shell_scripts_parse(script):
    path = ARM64 / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_makefile_target_runs_the_check():
    text = (ROOT / "Makefile").read_text()
    m = re.search(r"^arm64-check:.*\n((?:\t.*\n?)+)", text, re.M)
    assert m, "no arm64-check target"
    assert "scripts/arm64/check.sh" in m.group(1)


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: '{line}' is not pinned"
            out[name.lower()] = version
    return out


def test_device_pins_match_what_the_host_converts_with():
    """aarch64 and x86 outputs are compared: both sides must run the same runtime versions."""
    pins = _pins(ARM64 / "requirements-device.txt")
    assert set(pins) == {"numpy", "onnxruntime", "ai-edge-litert", "openvino", "opencv-python-headless"}
    assert not {"torch", "tensorflow", "tensorflow-cpu"} & set(pins)
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name in ("onnxruntime", "ai-edge-litert", "openvino"):
        m = re.search(rf'"{name}==([\d.]+)\.\*"', pyproject)
        assert m and pins[name].startswith(m.group(1) + "."), f"{name} {pins[name]} vs the convert extra"
    assert _pins(ARM64 / "requirements-nodeps.txt") == {"silero-vad": "6.2.3"}
    assert "silero-vad==6.2.3" in (ROOT / "Makefile").read_text()  # the zoo version the host uses


def test_cosine_and_table():
    a = np.array([1.0, 2.0, 3.0])
    assert device_check._cosine(a, a) == pytest.approx(1.0)
    assert device_check._cosine(a, -a) == pytest.approx(-1.0)
    assert device_check.MIN_COSINE["fp32"] >= 0.9999 > device_check.MIN_COSINE["int8"] >= 0.95
    out = device_check.table(["a", "bb"], [["x", "1"], ["long", "2"]]).splitlines()
    assert out[0] == "a     bb" and out[1] == "----  --" and out[3] == "long  2"


def _write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in lines))
    return path


def test_readers_of_the_sinks(tmp_path):
    """The line shapes `edge-sdk run` writes (classify results, VAD events inside result lines, metrics)."""
    top = lambda label: [{"class": 1, "label": label, "score": 0.8}]  # noqa: E731
    clip = _write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"type": "result", "task": "classify", "frame": 0, "top": top("Egyptian cat")},
            {"type": "source", "event": "EOS", "detail": "end of file"},
            {"type": "result", "task": "classify", "frame": 1, "top": top("tabby")},
            {"type": "metrics", "final": True, "results": 2},
        ],
    )
    assert device_check._labels(clip) == {0: "Egyptian cat", 1: "tabby"}
    vad = _write_jsonl(
        tmp_path / "v.jsonl",
        [
            {"type": "result", "task": "vad", "frame": 1, "speech_prob": 0.1, "events": []},
            {"type": "result", "frame": 2, "speech_prob": 0.99, "events": [{"event": "SPEECH_START", "t_s": 1.47}]},
            {
                "type": "result",
                "frame": 3,
                "speech_prob": 0.2,
                "events": [{"event": "SPEECH_END", "t_s": 4.6, "segment": {"start_s": 1.47, "end_s": 4.6}}],
            },
            {"type": "metrics", "final": True, "events": [{"type": "source", "event": "EOS"}]},
        ],
    )
    assert device_check._speech_segments(vad) == [(1.47, 4.6)]
    assert sorted(device_check._results(vad)) == [1, 2, 3]


def test_a_failed_step_is_a_row_and_the_check_goes_on(tmp_path, capsys):
    c = device_check.Check(tmp_path, ROOT)
    assert c.step("good", lambda: "fine") is True
    assert c.step("bad", lambda: 1 / 0) is False
    assert [(r["step"], r["ok"]) for r in c.rows] == [("good", True), ("bad", False)]
    assert "ZeroDivisionError" in c.rows[1]["detail"]
    assert "[FAIL] bad" in capsys.readouterr().out


def test_board_fixtures_the_check_uses_exist():
    for fixture in device_check.BOARDS:
        assert (ROOT / "tests" / "fixtures" / "arm_boards" / fixture / "proc" / "cpuinfo").is_file()


def test_host_prep_lists_the_six_artifacts(tmp_path):
    assert host_prep.artifacts(tmp_path) == []
    folder = tmp_path / "artifacts"
    folder.mkdir()
    names = [f"m_{p}.{e}" for p in ("fp32", "int8") for e in ("onnx", "tflite", "xml")]
    for n in [*names, "m_fp32.bin", "manifest.json"]:
        (folder / n).write_text("")
    assert [p.name for p in host_prep.artifacts(tmp_path)] == sorted(names)
    assert len(names) == host_prep.EXPECTED
    assert "--target-isa" not in host_prep.CONVERT and host_prep.TARGET_ISA == "arm64-dotprod"
