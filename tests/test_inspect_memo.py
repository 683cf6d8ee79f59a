"""A model file is parsed once per process while unchanged (the CLI checks it before its probe and in load),
never served stale: rewritten or freshly written files are parsed again."""

from __future__ import annotations

import os
import time

import pytest
from builders import onnx_mlp

from edge_sdk import formats
from edge_sdk.errors import ModelFileError


@pytest.fixture
def parses(monkeypatch):
    calls = []
    real = formats._inspect_uncached

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(formats, "_inspect_uncached", counting)
    formats._INSPECTED.clear()
    return calls


def _age(path, seconds=10):
    """mtime set back; ctime cannot be, so the tests move the module's clock forward instead."""
    old = time.time() - seconds
    os.utime(path, (old, old))
    return path


def test_a_settled_file_is_parsed_once(tmp_path, parses, monkeypatch):
    path = _age(onnx_mlp(tmp_path / "m.onnx"))
    monkeypatch.setattr(formats.time, "time_ns", lambda now=time.time_ns: now() + 10_000_000_000)
    first = formats.inspect_file(path)
    assert formats.inspect_file(path) is first
    assert len(parses) == 1


def test_a_fresh_file_is_parsed_every_time(tmp_path, parses):
    path = onnx_mlp(tmp_path / "m.onnx")
    formats.inspect_file(path)
    formats.inspect_file(path)
    assert len(parses) == 2


def test_a_rewritten_file_is_checked_again(tmp_path, parses, monkeypatch):
    path = _age(onnx_mlp(tmp_path / "m.onnx"))
    monkeypatch.setattr(formats.time, "time_ns", lambda now=time.time_ns: now() + 10_000_000_000)
    formats.inspect_file(path)
    path.write_bytes(b"\x00" * path.stat().st_size)  # same size, garbage
    with pytest.raises(ModelFileError, match="is not a valid ONNX model"):
        formats.inspect_file(path)
    assert len(parses) == 2
