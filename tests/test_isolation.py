"""safe=True: a native crash while loading becomes an edge_sdk error, not a dead caller."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import edge_sdk as es
from edge_sdk.errors import ModelFileError, ModelLoadError, ResourceLimitError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """safe=True remembers files that passed: each test gets its own verdicts."""
    monkeypatch.setenv("EDGE_SDK_CACHE_DIR", str(tmp_path / "cache"))


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


def test_memory_error_in_the_isolated_load_names_the_limit(mlp_onnx, tmp_path, monkeypatch):
    site = tmp_path / "oom_site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import onnxruntime\n"
        "def _oom(*a, **k):\n"
        "    raise MemoryError('cannot allocate 3 GB')\n"
        "onnxruntime.InferenceSession = _oom\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("EDGE_SDK_PROBE_MEMORY", "5G")
    with pytest.raises(ResourceLimitError) as info:
        es.load(mlp_onnx, safe=True)
    msg = str(info.value)
    assert "mlp.onnx needs more memory than the isolated probe's limit of 5.0 GiB" in msg
    assert "MemoryError: cannot allocate 3 GB" in msg and "EDGE_SDK_PROBE_MEMORY=10G" in msg


def test_safe_load_runs_under_the_address_space_limit(tmp_path, monkeypatch):
    from test_cli_probe import _hungry_onnx

    model = _hungry_onnx(tmp_path / "hungry.onnx")
    monkeypatch.setenv("EDGE_SDK_PROBE_MEMORY", "2G")
    with pytest.raises(ResourceLimitError, match="hungry.onnx needs more memory than .* limit of 2.0 GiB"):
        es.load(model, safe=True)


def test_safe_load_remembers_a_file_that_passed(mlp_onnx, tmp_path, monkeypatch):
    es.load(mlp_onnx, safe=True).close()
    (verdict,) = (tmp_path / "cache" / "probes").glob("*.json")
    assert json.loads(verdict.read_text())["kind"] == "load"
    # the same file again: the verdict answers, so a runtime that would now crash is not even started
    for key, value in _crashing_runtime_env(tmp_path, "SIGSEGV").items():
        monkeypatch.setenv(key, value)
    es.load(mlp_onnx, safe=True).close()
    monkeypatch.setenv("EDGE_SDK_CACHE", "0")
    with pytest.raises(ModelLoadError, match="crashed"):
        es.load(mlp_onnx, safe=True)


@pytest.mark.parametrize(
    "value, expected",
    [("8G", 8 * 1024**3), ("512M", 512 * 1024**2), ("0", None), ("off", None), (123456789, 123456789)],
)
def test_probe_memory_limit_values(value, expected):
    from edge_sdk.isolation import probe_memory_limit

    assert probe_memory_limit(value) == expected


def test_probe_memory_limit_default_and_bad_values(monkeypatch):
    from edge_sdk.errors import BackendOptionError
    from edge_sdk.isolation import MIN_MEMORY_BYTES, probe_memory_limit, probe_timeout

    monkeypatch.delenv("EDGE_SDK_PROBE_MEMORY", raising=False)
    assert probe_memory_limit(budget=1024**3) == MIN_MEMORY_BYTES
    assert probe_memory_limit(budget=16 * 1024**3) == 32 * 1024**3
    monkeypatch.setenv("EDGE_SDK_PROBE_MEMORY", "lots")
    with pytest.raises(BackendOptionError, match="EDGE_SDK_PROBE_MEMORY / --probe-memory.*not a size: 'lots'"):
        probe_memory_limit()
    with pytest.raises(BackendOptionError, match="probe timeout '-1' is not a positive number"):
        probe_timeout("-1")
