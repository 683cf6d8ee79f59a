"""Crafted OpenVINO IR, runtime failures, close() during a run, the safety net and the cache key (issue 18).
Each test builds its hostile file in ``tmp_path`` (``untrusted_builders``)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from untrusted_builders import edit_ir, raises_everywhere, relu_onnx, tiny_ir

import edge_sdk as es
from edge_sdk.errors import (
    InferenceError,
    ModelClosedError,
    ModelFileError,
    ModelLoadError,
    ModelTooLargeError,
    first_line,
)

GiB = 1024**3


# -- OpenVINO ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("etype", ["dynamic", "undefined"])
def test_openvino_const_of_dynamic_type_is_a_typed_error(etype, tmp_path):
    src = tiny_ir(tmp_path / "src")
    path = edit_ir(
        src, tmp_path / "dyn.xml", b'element_type="f32" shape="1, 4"', f'element_type="{etype}" shape="1, 4"'.encode()
    )
    message = f"Const layer 'w' has element_type '{etype}'; a Const needs a concrete"
    raises_everywhere(path, ModelFileError, message)


def test_openvino_constant_layer_type_that_crashes_the_plugin_is_refused(tmp_path):
    """A 'Constant' (not 'Const') layer is built without data: compile_model segfaulted (found by the fuzzer)."""
    src = tiny_ir(tmp_path / "src")
    path = edit_ir(src, tmp_path / "constant.xml", b'type="Const"', b'type="Constant"')
    with pytest.raises(ModelFileError) as info:
        es.inspect_file(path)
    assert "Constant layer 'w' has type 'Constant'; OpenVINO IR stores constants as 'Const' layers" in str(info.value)


@pytest.mark.parametrize("kind", ["Assign", "ReadValue"])
def test_openvino_state_layer_without_its_variable_is_refused(kind, tmp_path):
    """An Assign/ReadValue with no variable_id is built with a null variable: read_model segfaulted (fuzzer)."""
    src = tiny_ir(tmp_path / "src")
    path = edit_ir(src, tmp_path / "state.xml", b'type="ReLU"', f'type="{kind}"'.encode())
    raises_everywhere(path, ModelFileError, f"{kind} layer 'y' has no <data variable_id=...>; a state layer must")


def test_openvino_declared_shapes_and_weights_are_bounded(tmp_path):
    src = tiny_ir(tmp_path / "src")
    path = edit_ir(
        src, tmp_path / "c.xml", b'shape="1, 4" offset="0" size="16"', b'shape="1, 1000000000" offset="0" size="16"'
    )
    raises_everywhere(path, ModelFileError, "Const layer 'w' declares shape [1, 1000000000] of f32 (4000000000 bytes)")
    path = edit_ir(src, tmp_path / "p.xml", b'shape="1,4" element_type', b'shape="1,1000000000000" element_type')
    raises_everywhere(path, ModelTooLargeError, "Parameter layer 'x' declares shape [1, 1000000000000] of f32")
    # weights read from the .bin count against the budget too
    with pytest.raises(
        ModelTooLargeError, match=r"add up to 32 B \(32 bytes, at weights read from tiny.bin at offset 16"
    ):
        es.load(src, max_memory=24)  # each 16-byte tensor fits, both weights together do not


def test_openvino_broadcast_to_a_constant_huge_shape_is_refused(tmp_path):
    """Broadcast to a Const target shape whose output port claims [1, 1]: the Const's values are checked."""
    ov = pytest.importorskip("openvino")
    from openvino import opset13 as ops

    x = ops.parameter([1], np.float32, name="x")
    big = ops.broadcast(x, ops.constant(np.array([100000, 100000], np.int64), name="target"), name="big")
    src = tmp_path / "bc.xml"
    ov.save_model(ov.Model([big], [x], "bc"), str(src))
    path = edit_ir(src, tmp_path / "lying.xml", b"<dim>100000</dim>", b"<dim>1</dim>")
    message = "the output of Broadcast layer 'big' (constant Const layer 'target') declares shape [100000, 100000]"
    raises_everywhere(path, ModelTooLargeError, message, max_memory=GiB)


def test_openvino_error_keeps_the_runtimes_reason(tmp_path):
    """A shape clash inside the IR: the message names the cause, not only OpenVINO's stage header."""
    src = tiny_ir(tmp_path / "src")
    path = edit_ir(
        src, tmp_path / "clash.xml", b'shape="1, 4" offset="0" size="16"', b'shape="1, 2" offset="0" size="8"'
    )
    with pytest.raises(ModelLoadError) as info:
        es.load(path, backend="openvino", cache_dir=None)
    assert "Argument shapes are inconsistent" in str(info.value)
    assert "Exception from" not in str(info.value) and "Check '" not in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'false' failed at src/frontends/common/src/"
            "frontend.cpp:58:\nFrontEnd API failed with GeneralFailure:\nConverting input model\n"
            "Unsupported data type UNDEFINED for input 'x'\n\n",
            "Unsupported data type UNDEFINED for input 'x'",
        ),
        (
            "Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'false' failed at src/frontends/common/src/"
            'frontend.cpp:47:\nLoading input model\nInput tensor isn\'t found for node "missing"\n',
            'Input tensor isn\'t found for node "missing"',
        ),
        (
            "Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:151:\n"
            "FrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted. Failed operations detailed"
            " log:\n-- MatMul-17 with a message:\nWhile validating ONNX node '<Node(MatMul): y>': Check 'a' failed at "
            "src/core/x.hpp:65:\nIncompatible MatMul matrix dimension.\n\nSummary:\n-- Conversion is failed for: "
            "MatMul-17\n",
            "Incompatible MatMul matrix dimension. (MatMul-17 with a message; While validating ONNX node "
            "'<Node(MatMul): y>'; Conversion is failed for: MatMul-17)",
        ),
        (
            "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad feed",
            "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad feed",
        ),
    ],
)
def test_first_line_keeps_the_reason_after_openvino_headers(text, expected):
    assert first_line(RuntimeError(text)) == expected


# -- Model: runs and close ---------------------------------------------------------------------------


class _SlowBackend:
    """A backend whose run blocks until released, and whose close drops its session (as the real ones do)."""

    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        from edge_sdk.tensor_spec import TensorSpec

        self.inputs = [TensorSpec("x", (1,), np.dtype("float32"))]
        self.outputs = [TensorSpec("y", (1,), np.dtype("float32"))]
        self.session: object = object()
        self.started, self.release, self.fail = threading.Event(), threading.Event(), fail

    def run(self, feeds):
        if self.fail:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned")
        self.started.set()
        self.release.wait(60)
        return [feeds[0] + 1 if self.session is not None else self.session.missing]  # AttributeError once closed

    def close(self) -> None:
        self.session = None


def _model(backend: _SlowBackend, tmp_path: Path) -> es.Model:
    from edge_sdk.formats import ModelFile

    return es.Model(backend, ModelFile(path=tmp_path / "fake.onnx", format="onnx", size=1))


def test_close_while_another_thread_runs_waits_for_the_run(tmp_path):
    backend = _SlowBackend()
    model = _model(backend, tmp_path)
    results: dict[str, object] = {}

    def run() -> None:
        try:
            results["run"] = model.run(np.zeros(1, np.float32))
        except Exception as e:  # recorded, asserted below
            results["run"] = e

    runner = threading.Thread(target=run)
    runner.start()
    assert backend.started.wait(60)
    closer = threading.Thread(target=model.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive() and backend.session is not None  # close waits for the run in flight
    with pytest.raises(ModelClosedError, match="fake.onnx is closed"):  # a run starting now is refused
        model.run(np.zeros(1, np.float32))
    backend.release.set()
    runner.join(60)
    closer.join(60)
    assert not closer.is_alive() and backend.session is None
    assert isinstance(results["run"], dict) and results["run"]["y"].tolist() == [1.0]
    with pytest.raises(ModelClosedError):
        model.run(np.zeros(1, np.float32))


def test_raw_runtime_error_in_run_is_an_inference_error(tmp_path):
    model = _model(_SlowBackend(fail=True), tmp_path)
    with pytest.raises(InferenceError) as info:
        model.run(np.zeros(1, np.float32))
    assert str(info.value) == (
        "fake failed to run fake.onnx: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned"
    )


# -- safety net, cache -------------------------------------------------------------------------------


def test_an_unforeseen_exception_in_a_check_is_still_typed(tmp_path, monkeypatch):
    import edge_sdk.formats as formats

    path = relu_onnx(tmp_path / "m.onnx")
    handler = formats._REGISTRY["onnx"]

    def boom(p, size, max_memory):
        raise KeyError("surprise")

    monkeypatch.setitem(
        formats._REGISTRY, "onnx", formats.FormatHandler("onnx", handler.extensions, handler.sniff, boom)
    )
    with pytest.raises(
        ModelFileError, match=r"is not a valid onnx model \(corrupt file; the check failed with KeyError"
    ):
        es.inspect_file(path)


def test_cache_key_of_a_huge_weights_file_reads_only_samples(tmp_path, monkeypatch):
    """A 10 GB sparse .bin: the OpenVINO cache key must not read it in full (counted by wrapping open)."""
    import builtins

    from edge_sdk import cache
    from edge_sdk.formats import ModelFile

    xml, weights = tmp_path / "big.xml", tmp_path / "big.bin"
    xml.write_text("<net/>")
    with open(weights, "wb") as f:
        f.truncate(10 * GiB)
    read = {"bytes": 0}

    class Counting:
        def __init__(self, f) -> None:
            self._f = f

        def read(self, n=-1):
            data = self._f.read(n)
            read["bytes"] += len(data)
            return data

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def counting_open(*args, **kwargs):
        return Counting(builtins.open(*args, **kwargs))  # noqa: SIM115 (closed by Counting.__exit__)

    monkeypatch.setattr(cache, "open", counting_open, raising=False)
    mf = ModelFile(path=xml, format="openvino", size=6, companions=(weights,))
    first = cache.model_hash(mf)
    assert 0 < read["bytes"] < 16 * 1024**2
    with open(weights, "r+b") as f:  # a rewrite of the same size changes the key (mtime and the sampled head)
        f.write(b"\1" * 16)
    assert cache.model_hash(mf) != first
    small = tmp_path / "small.bin"  # below the threshold the whole content is the key
    small.write_bytes(b"\0" * 4096)
    key = cache._file_digest(small, small.stat())
    small.write_bytes(b"\0" * 2048 + b"\1" + b"\0" * 2047)
    assert cache._file_digest(small, small.stat()) != key
