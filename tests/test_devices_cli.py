"""``edge-sdk devices`` and the device flags of ``info``/``bench``, run as a user would."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "devices"


def test_devices_on_this_machine(cli):
    r = cli("devices")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("machine ")
    for text in ("runtime", "onnxruntime", "openvino", "plan [", "device=auto runs onnx on: ONNX Runtime CPU"):
        assert text in r.stdout
    data = json.loads(cli("devices", "--json").stdout)
    assert {"device", "runtimes", "plan", "missing", "would_run_on"} <= set(data)
    assert "CPUExecutionProvider" in data["runtimes"]["ort_providers"]
    assert "CPU" in data["runtimes"]["ov_devices"]
    assert data["would_run_on"]["openvino"] == "OpenVINO CPU"


def test_devices_from_a_fixture_tree_and_profiles(cli):
    r = cli("devices", "--root", str(FIXTURES / "pi5_coral_usb"))
    assert r.returncode == 0, r.stderr
    assert "Raspberry Pi 5 Model B Rev 1.0" in r.stdout and "coral-usb" in r.stdout
    assert "edgetpu_compiler" in r.stdout
    r = cli("devices", "--list-profiles", "--json")
    assert "jetson-orin" in json.loads(r.stdout)
    r = cli("devices", "--profile", "tpu9")
    assert r.returncode == 2 and "unknown device profile 'tpu9'" in r.stderr
