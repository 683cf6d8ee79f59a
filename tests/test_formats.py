"""Untrusted model files: recognised by content, refused with a typed error that says why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import edge_sdk as es
from edge_sdk.errors import ModelFileError, UnsafeModelError, UnsupportedFormatError


def test_format_detected_by_content_not_extension(three_formats, tmp_path):
    disguised = tmp_path / "model.bin"
    disguised.write_bytes(three_formats["tflite"].read_bytes())
    assert es.detect_format(disguised) == "tflite"
    assert es.detect_format(three_formats["onnx"]) == "onnx"
    assert es.detect_format(three_formats["openvino"]) == "openvino"


def _truncate(src: Path, dst: Path, keep: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def _bad_file(kind: str, tmp: Path, three: dict[str, Path]) -> Path:
    random = os.urandom(4096)
    if kind == "missing":
        return tmp / "nope.onnx"
    if kind == "directory":
        (tmp / "adir.onnx").mkdir()
        return tmp / "adir.onnx"
    if kind == "empty":
        (tmp / "empty.tflite").write_bytes(b"")
        return tmp / "empty.tflite"
    if kind.startswith("random"):
        p = tmp / f"random.{kind.split('.')[1]}"
        p.write_bytes(b"\x00" + random)  # leading NUL: no accidental ONNX/TFL3/XML header
        return p
    if kind == "truncated.tflite":
        return _truncate(three["tflite"], tmp / "cut.tflite", 0.5)
    if kind == "truncated.onnx":
        return _truncate(three["onnx"], tmp / "cut.onnx", 0.6)
    if kind == "truncated.xml":
        return _truncate(three["openvino"], tmp / "cut.xml", 0.5)
    if kind in ("xml_without_bin", "truncated_bin"):
        xml = tmp / "net.xml"
        xml.write_bytes(three["openvino"].read_bytes())
        if kind == "truncated_bin":
            _truncate(three["openvino"].with_suffix(".bin"), tmp / "net.bin", 0.5)
        return xml
    if kind == "xml_entity_bomb":
        p = tmp / "bomb.xml"
        p.write_text('<?xml version="1.0"?><!DOCTYPE net [<!ENTITY a "aaaa">]><net><layers/></net>')
        return p
    if kind == "xml_not_ir":
        p = tmp / "page.xml"
        p.write_text('<?xml version="1.0"?><net name="x"><edges/></net>')
        return p
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, error, message",
    [
        ("missing", ModelFileError, "model file not found"),
        ("directory", ModelFileError, "is a directory, not a model file"),
        ("empty", ModelFileError, "model file is empty (0 bytes)"),
        ("random.tflite", UnsupportedFormatError, "a '.tflite' name suggests tflite, but the content is not"),
        ("random.onnx", ModelFileError, "is not a valid ONNX model (corrupt or truncated)"),
        ("random.xml", UnsupportedFormatError, "a '.xml' name suggests openvino, but the content is not"),
        ("truncated.tflite", ModelFileError, "corrupt or truncated TFLite file"),
        ("truncated.onnx", ModelFileError, "is not a valid ONNX model (corrupt or truncated)"),
        ("truncated.xml", ModelFileError, "is not valid OpenVINO IR XML (corrupt or truncated)"),
        ("xml_without_bin", ModelFileError, "needs its weights file net.bin next to it, and it is missing"),
        ("truncated_bin", ModelFileError, "(truncated or mismatched weights file)"),
        ("xml_entity_bomb", UnsafeModelError, "declares a DOCTYPE/ENTITY"),
        ("xml_not_ir", ModelFileError, "is XML but not OpenVINO IR"),
    ],
)
def test_bad_model_files_raise_typed_errors(kind, error, message, tmp_path, three_formats):
    path = _bad_file(kind, tmp_path, three_formats)
    with pytest.raises(error) as info:
        es.load(path)
    assert message in str(info.value)
    assert isinstance(info.value, es.EdgeSDKError)


def test_truncated_tflite_at_every_cut_never_reaches_the_runtime_unchecked(three_formats, tmp_path):
    """Every prefix of a valid model is refused by our checks or loads cleanly: never a crash."""
    data = three_formats["tflite"].read_bytes()
    for keep in range(16, len(data), max(1, len(data) // 40)):
        p = tmp_path / "cut.tflite"
        p.write_bytes(data[:keep])
        with pytest.raises(es.EdgeSDKError):
            es.load(p)


@pytest.mark.parametrize(
    "location, message",
    [
        ("../../etc/passwd", "external data at '../../etc/passwd', outside the model's folder"),
        ("/etc/passwd", "external data at '/etc/passwd', outside the model's folder"),
        ("sub/../../secret.bin", "outside the model's folder"),
    ],
)
def test_onnx_external_data_cannot_escape_the_model_folder(location, message, tmp_path):
    path = _external(tmp_path, location)
    with pytest.raises(UnsafeModelError) as info:
        es.load(path)
    assert message in str(info.value)


def _external(tmp_path: Path, location: str | None) -> Path:
    import builders

    return builders.onnx_with_external_data(tmp_path / "m", location)


def test_onnx_external_data_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside.data"
    path = _external(tmp_path, None)
    outside.write_bytes((path.parent / "ext.data").read_bytes())
    (path.parent / "ext.data").unlink()
    (path.parent / "ext.data").symlink_to(outside)
    with pytest.raises(UnsafeModelError, match="resolves to .*outside.data, outside the model's folder"):
        es.load(path)


def test_onnx_external_data_inside_the_folder_loads_and_runs(tmp_path):
    import numpy as np

    path = _external(tmp_path, None)
    with es.load(path) as m:
        assert m.run({"x": np.ones((2, 16), np.float32)})["y"].shape == (2, 4)


def test_onnx_external_data_missing_or_short(tmp_path):
    path = _external(tmp_path, None)
    data = path.parent / "ext.data"
    data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(ModelFileError, match="which has only 10 bytes"):
        es.load(path)
    data.unlink()
    with pytest.raises(ModelFileError, match="needs external data file 'ext.data', which does not exist"):
        es.load(path)


def test_size_limit_is_enforced(mlp_onnx):
    with pytest.raises(ModelFileError, match="above the 100-byte limit"):
        es.load(mlp_onnx, max_bytes=100)


def test_every_format_is_recognised_after_one_handler_was_imported_directly(three_formats):
    """Importing the ONNX wire parser first (as the converters do) must not leave TFLite/IR unrecognised."""
    import subprocess
    import sys

    code = (
        "import sys; from edge_sdk.formats.onnx_format import read_wire_model; "
        "from edge_sdk.formats import detect_format; "
        "print(' '.join(detect_format(p) for p in sys.argv[1:]))"
    )
    paths = [str(three_formats[k]) for k in ("tflite", "openvino", "onnx")]
    out = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["tflite", "openvino", "onnx"], out.stderr[-500:]
