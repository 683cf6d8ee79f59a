"""Zoo files carry their own metadata (issue 14): the file `edge-sdk zoo path NAME` prints (what ``materialize``
writes) holds the zoo entry's task, preprocessing and labels inside it, written by converters/embed_metadata.py
as `convert` writes them, so a copy of the file alone runs with no flags and no guess. The record has no
timestamp (the same package gives byte-identical files) and a cached file is reused only while it carries it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from converters import zoo
from edge_sdk.metadata import read_embedded

#: what `run` says about a model that carries nothing (see test_model_metadata.py)
NO_METADATA = ("carries no preprocessing", "carries no task", "no edge_sdk metadata inside")


def _need(name: str) -> zoo.ZooEntry:
    entry = zoo.get(name)
    if not entry.is_installed():
        pytest.skip(f"pip package {entry.missing_package()} is not installed")
    return entry


def _zoo_path(cli, name: str, cache: Path, *extra: str) -> Path:
    r = cli("zoo", "path", name, "--cache-dir", str(cache), *extra)
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip())


def _alone(path: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, dest / path.name)
    return dest / path.name


def _photo_dir(folder: Path, name: str) -> Path:
    import cv2

    from converters.datasets import named_image

    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{name}.png"), named_image(name)[..., ::-1])
    return folder


def _run_json(cli, model: Path, source: Path) -> tuple[dict, str]:
    r = cli("run", str(model), "--source", str(source), "--no-probe", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


@pytest.mark.parametrize(
    "name, extra, task",
    [("centerface", (), "detect"), ("centerface", ("--input-shape", "input=1,3,256,320"), "detect"),
     ("silero-vad", (), "vad"), ("silero-vad", ("--variant", "op16"), "vad")],
)  # fmt: skip
def test_zoo_path_file_carries_the_entrys_metadata(cli, tmp_path, name, extra, task):
    entry = _need(name)
    copy = _alone(_zoo_path(cli, name, tmp_path / "cache", *extra), tmp_path / "alone")
    meta = read_embedded(copy)
    assert meta is not None and meta.origin == "embedded", f"{copy.name} carries no edge_sdk metadata"
    assert meta.task == task and meta.labels is None
    opts = {"input_shape": (1, 3, 256, 320)} if extra and name == "centerface" else {}
    assert meta.preprocess_spec() == entry.preprocess(**opts)
    assert meta.source["kind"] == "zoo" and meta.source["model"] == name and len(meta.source["sha256"]) == 64
    if name == "centerface":
        assert meta.input_layout == "NCHW" and meta.preprocessing["size"] == ([256, 320] if extra else [480, 640])


def test_centerface_zoo_file_alone_finds_the_astronauts_face(cli, tmp_path):
    """The issue's case: `edge-sdk run $(edge-sdk zoo path centerface) astronaut.png`, the file copied alone."""
    _need("centerface")
    copy = _alone(_zoo_path(cli, "centerface", tmp_path / "cache"), tmp_path / "alone")
    doc, err = _run_json(cli, copy, _photo_dir(tmp_path / "photos", "astronaut"))
    assert doc["task"] == "detect" and doc["metadata"] == "embedded"
    assert doc["preprocessing"]["size"] == [480, 640] and doc["preprocessing"]["std"] == [1.0], "raw 0..255 pixels"
    result = doc["last_result"]
    assert result["count"] == 1, result
    x1, y1, x2, y2 = result["detections"][0]["box"]  # the astronaut's face: x 180..270, y 50..180
    assert 150 < (x1 + x2) / 2 < 290 and 40 < (y1 + y2) / 2 < 200
    assert not any(text in err for text in NO_METADATA), err


def test_silero_zoo_file_alone_runs_vad_with_no_flags(cli, tmp_path):
    _need("silero-vad")
    from edge_sdk.audio import write_wav

    copy = _alone(_zoo_path(cli, "silero-vad", tmp_path / "cache"), tmp_path / "alone")
    t = np.arange(16000) / 16000
    wav = write_wav(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    doc, err = _run_json(cli, copy, wav)
    assert doc["task"] == "vad" and doc["metadata"] == "embedded"
    assert doc["preprocessing"] is None or doc["preprocessing"]["kind"] == "audio"
    assert doc["metrics"]["results"] >= 30, "one result per 32 ms window of the 1 s clip"
    assert not any(text in err for text in NO_METADATA), err


@pytest.mark.slow
def test_efficientnet_zoo_file_alone_says_egyptian_cat(cli, tmp_path):
    """A PyTorch entry's `zoo path` file is an fp32 ONNX converted once (with its record); `--format pt2` is
    still the torch.export program."""
    _need("efficientnet-lite0")
    path = _zoo_path(cli, "efficientnet-lite0", tmp_path / "cache")
    assert path.suffix == ".onnx"
    copy = _alone(path, tmp_path / "alone")
    meta = read_embedded(copy)
    assert meta.task == "classify" and meta.labels == "imagenet-1k"
    assert meta.preprocess_spec() == zoo.get("efficientnet-lite0").preprocess()
    doc, err = _run_json(cli, copy, _photo_dir(tmp_path / "photos", "chelsea"))
    top = doc["last_result"]["top"][0]
    assert (top["class"], top["label"]) == (285, "Egyptian cat")
    assert doc["metadata"] == "embedded" and not any(text in err for text in NO_METADATA), err
    assert _zoo_path(cli, "efficientnet-lite0", tmp_path / "cache") == path, "converted once, then reused"
    assert _zoo_path(cli, "efficientnet-lite0", tmp_path / "cache", "--format", "pt2").suffix == ".pt2"


# ---- the cache ----------------------------------------------------------------------------------------------------
def test_zoo_files_are_reproducible_and_their_cache_follows_the_record(tmp_path):
    """Same package -> byte-identical files (no timestamp in the record); a cached file with the record is
    reused untouched; one cached without it (as an edge_sdk before embedded metadata wrote it) is rewritten
    under the same name."""
    entry = _need("centerface")
    from converters.zoo.centerface import ONNX_FILE, patch_centerface

    a = entry.materialize(tmp_path / "a")
    b = entry.materialize(tmp_path / "b")
    assert a.name == b.name == "centerface-1x3x480x640.onnx"
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    mtime = a.stat().st_mtime_ns
    assert entry.materialize(tmp_path / "a") == a and a.stat().st_mtime_ns == mtime, "cached: not rewritten"

    old = tmp_path / "old" / a.name
    patch_centerface(entry.package_file(0, ONNX_FILE), old, (1, 3, 480, 640))  # no record: the old cache
    assert read_embedded(old) is None
    assert entry.materialize(tmp_path / "old") == old
    assert read_embedded(old).task == "detect" and old.read_bytes() == a.read_bytes()
    assert sorted(p.name for p in old.parent.iterdir()) == [a.name], "no temp file left over"

    silero = _need("silero-vad")
    v1, v2 = silero.materialize(tmp_path / "a"), silero.materialize(tmp_path / "b")
    assert v1.name == "silero-vad-16k.onnx" and v1.read_bytes() == v2.read_bytes()
    assert v1 != silero.package_file(0, "data/silero_vad_openvino_16k.onnx"), "the package's file is left as it is"


def test_a_device_without_the_onnx_package_gets_the_packaged_silero_file(tmp_path, monkeypatch):
    """ONNX Runtime alone (a device): `run zoo:silero-vad` must not need `onnx` to embed metadata."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    path = zoo.get("silero-vad").materialize(cache_dir=tmp_path)
    assert path.is_file() and tmp_path not in path.parents, "the packaged file, not a copy"
    assert not list(tmp_path.glob("*.onnx"))
