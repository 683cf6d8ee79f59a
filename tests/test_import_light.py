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


def test_device_verbs_import_no_framework(mlp_onnx):
    """``info`` infers ONNX shapes with ORT's tool, whose package ``__init__`` imports torch where installed."""
    code = (
        "import contextlib, io\nfrom edge_sdk.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['info', {str(mlp_onnx)!r}, '--no-probe', '--json']) == 0\n"
        f"    assert main(['bench', {str(mlp_onnx)!r}, '--no-probe', '--runs', '2', '--json']) == 0"
    )
    loaded = _modules_after(code)
    assert "edge_sdk._ort_symbolic_shape_infer" in loaded  # the shape inference that used to pull in torch ran
    assert not {m.split(".")[0] for m in loaded} & {"tensorflow", "torch", "keras", "nncf", "tf2onnx"}
