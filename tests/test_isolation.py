"""safe=True: a native crash while loading becomes an edge_sdk error, not a dead caller."""

from __future__ import annotations

import os

import numpy as np
import pytest

import edge_sdk as es
from edge_sdk.errors import ModelFileError, ModelLoadError


def _crashing_runtime_env(tmp_path, signal_name: str) -> dict[str, str]:
    """A child-process environment whose onnxruntime dies with ``signal_name`` during session creation."""
    site = tmp_path / "crash_site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, signal\n"
        "import onnxruntime\n"
        "def _die(*a, **k):\n"
        f"    os.kill(os.getpid(), signal.{signal_name})\n"
        "onnxruntime.InferenceSession = _die\n"
    )
    return {"PYTHONPATH": str(site)}


@pytest.mark.parametrize("signal_name", ["SIGSEGV", "SIGABRT"])
def test_native_crash_in_isolated_load_is_a_typed_error(mlp_onnx, tmp_path, monkeypatch, signal_name):
    for key, value in _crashing_runtime_env(tmp_path, signal_name).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ModelLoadError) as info:
        es.load(mlp_onnx, safe=True)
    assert f"onnxruntime crashed ({signal_name}) while loading mlp.onnx in an isolated process" in str(info.value)


def test_isolated_load_passes_good_models_and_typed_errors_through(mlp_onnx, tmp_path):
    m = es.load(mlp_onnx, safe=True)
    assert m(np.ones((1, 16), np.float32)).shape == (1, 4)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(mlp_onnx.read_bytes()[:-40])
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        es.load(broken, safe=True)


def test_isolated_runtime_refusal_keeps_its_message(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.example")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "custom.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]),
        path,
    )
    with pytest.raises(ModelLoadError, match="onnxruntime could not load custom.onnx: .*NoSuchOp"):
        es.load(path, safe=True)
    assert os.path.exists(path)
