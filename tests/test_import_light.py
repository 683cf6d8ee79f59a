"""``import edge_sdk`` must not drag any runtime or framework into a device's memory."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "tensorflow",
    "torch",
    "onnx",
    "onnxruntime",
    "openvino",
    "cv2",
    "keras",
    "nncf",
    "sounddevice",
    "jax",
    "tf2onnx",
)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return set(out.split())


def test_import_edge_sdk_pulls_in_no_runtime():
    loaded = _modules_after("import edge_sdk")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_loading_an_onnx_model_imports_only_onnxruntime(mlp_onnx):
    loaded = _modules_after(f"import edge_sdk; edge_sdk.load({str(mlp_onnx)!r})")
    tops = {m.split(".")[0] for m in loaded}
    assert "onnxruntime" in tops
    assert not tops & {"tensorflow", "torch", "openvino", "cv2", "onnx", "keras"}


def test_cli_help_imports_no_runtime():
    loaded = _modules_after("from edge_sdk.cli.main import build_parser; build_parser()")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
