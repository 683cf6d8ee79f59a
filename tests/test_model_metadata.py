"""The model carries its own metadata: task, preprocessing, labels, layout, source hash and conversion summary
live inside each artifact (ONNX metadata_props, TFLite metadata, OpenVINO rt_info), so two conversions into one
folder, or a file copied alone, each run with their own; the folder manifest is keyed per file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edge_sdk
from edge_sdk.errors import ModelMetadataError
from edge_sdk.metadata import manifest_metadata, model_metadata, read_embedded
from edge_sdk.preprocess import PreprocessSpec

FORMATS = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}
#: a solid frame: R > G > B, so the top class says which channel order the model was fed
RGB = (200, 100, 30)
#: conversion a: RGB, x / 255; conversion b: BGR, (x - 127.5) / 127.5; each with its own labels
SPECS = {
    "a": PreprocessSpec(size=(16, 16), mean=0.0, std=255.0, layout="NHWC"),
    "b": PreprocessSpec(size=(16, 16), mean=127.5, std=127.5, channels="BGR", layout="NHWC"),
}
LABELS = {"a": ["red", "green", "blue"], "b": ["bee", "gee", "arr"]}
#: the right answer for each: a sees R first (class 0 "red"), b sees it last (class 2 "arr")
ANSWER = {"a": "red", "b": "arr"}
FLAGS = ("--size", "--mean", "--std", "--resize", "--channels", "--labels")


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict[str, Path]:
    """One Keras model (per-channel mean of the image) converted twice into ONE folder, to all three formats,
    with different preprocessing, labels and names."""
    import keras

    from converters import convert

    root = tmp_path_factory.mktemp("metadata")
    inp = keras.Input((16, 16, 3), name="image")
    keras.Model(inp, keras.layers.GlobalAveragePooling2D()(inp)).save(root / "avg.keras")
    out = root / "out"
    for name in ("a", "b"):
        convert(root / "avg.keras", to=list(FORMATS), output_dir=out, preprocess=SPECS[name], labels=LABELS[name],
                task="classify", name=name, validate_samples=4)  # fmt: skip
    return {"root": root, "out": out, "source": root / "avg.keras"}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    import cv2

    folder = tmp_path_factory.mktemp("solid")
    img = np.zeros((20, 30, 3), np.uint8)
    img[...] = RGB
    cv2.imwrite(str(folder / "solid.png"), img[..., ::-1])
    return folder


def _copy_alone(model: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for p in [model, model.with_suffix(".bin")] if model.suffix == ".xml" else [model]:
        shutil.copy(p, dest / p.name)
    return dest / model.name


def _run_json(cli, model: Path, image_dir: Path, *extra: str) -> tuple[dict, str]:
    r = cli("run", str(model), "--source", str(image_dir), "--no-probe", "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


# ---- two conversions into one folder ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_file_of_a_shared_folder_runs_with_its_own_preprocessing(shared, image_dir, fmt):
    """The issue's silent wrong answer: the second conversion into the folder must not lend the first its
    preprocessing or labels. Each file's embedded record wins, and the pipeline answers each correctly."""
    for name in ("a", "b"):
        path = shared["out"] / f"{name}_fp32{FORMATS[fmt]}"
        with edge_sdk.load(path) as model:
            meta = model.metadata
            assert meta is not None and meta.origin == "embedded" and meta.where == str(path)
            assert meta.task == "classify" and meta.labels == LABELS[name] and meta.input_layout == "NHWC"
            assert meta.preprocess_spec() == SPECS[name]
            assert meta.source["sha256"] == read_sha(shared["source"])
            assert meta.conversion["target"] == fmt and meta.conversion["precision"] == "fp32"
            assert meta.conversion["passed"] is True
            pipe = edge_sdk.Pipeline(str(image_dir), model, task=meta.task)
            pipe.run()
            assert pipe.spec == SPECS[name]
            top = pipe.last_event["top"][0]
            assert top["label"] == ANSWER[name], f"{path.name} ran with another model's preprocessing or labels"
            x = SPECS[name].apply(np.full((20, 30, 3), RGB, np.uint8)).reshape(-1, 3).mean(0)
            assert top["score"] == pytest.approx(float(np.exp(x).max() / np.exp(x).sum()), abs=1e-3)


def read_sha(path: Path) -> str:
    from converters.sources import file_sha256

    return file_sha256(path)


def test_manifest_is_keyed_per_file_and_hashes_the_final_file(shared):
    """Both conversions stay listed, each file with its own record (the one inside it) and the sha256 of the
    file as written, metadata included."""
    from converters.manifest import file_record

    out = shared["out"]
    data = json.loads((out / "manifest.json").read_text())
    models = {f"{n}_fp32{s}" for n in ("a", "b") for s in FORMATS.values()}
    assert models | {f"{n}_fp32.bin" for n in "ab"} == set(data["files"])
    for file in models:
        rec = data["files"][file]
        assert {k: rec[k] for k in ("size", "sha256")} == file_record(out / file), f"{file}: not the final file"
        embedded = read_embedded(out / file)
        assert rec["metadata"]["labels"] == embedded.labels
        assert rec["metadata"]["preprocessing"] == embedded.preprocessing
        from_manifest = manifest_metadata(out / file)
        assert from_manifest.origin == "manifest" and from_manifest.preprocessing == embedded.preprocessing
    assert [a["path"] for a in data["artifacts"]] == [f"b_fp32{s}" for s in FORMATS.values()], "top level: last run"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_copied_alone_runs_with_its_task_and_preprocessing(shared, image_dir, tmp_path, cli, fmt):
    """No manifest beside it, no --task: `run` uses what the file carries; each copy gets its right answer."""
    for name in ("a", "b"):
        copy = _copy_alone(shared["out"] / f"{name}_fp32{FORMATS[fmt]}", tmp_path / name)
        assert not (copy.parent / "manifest.json").exists()
        doc, err = _run_json(cli, copy, image_dir)
        assert doc["task"] == "classify" and doc["metadata"] == "embedded"
        assert doc["preprocessing"] == SPECS[name].to_dict()
        assert doc["last_result"]["top"][0]["label"] == ANSWER[name]
        assert "carries no preprocessing" not in err


def test_standard_tools_read_the_embedded_record(shared):
    """Not a private format: ONNX Runtime's custom metadata map and OpenVINO's rt_info return it."""
    import onnxruntime as ort
    import openvino as ov

    out = shared["out"]
    props = ort.InferenceSession(str(out / "a_fp32.onnx")).get_modelmeta().custom_metadata_map
    assert json.loads(props["edge_sdk.labels"]) == LABELS["a"] and json.loads(props["edge_sdk.task"]) == "classify"
    model = ov.Core().read_model(str(out / "b_fp32.xml"))
    assert json.loads(model.get_rt_info(["edge_sdk", "preprocessing"]).astype(str))["channels"] == "BGR"


# ---- info ---------------------------------------------------------------------------------------------------------
def test_info_shows_the_metadata(shared, tmp_path, cli):
    copy = _copy_alone(shared["out"] / "b_fp32.xml", tmp_path)
    r = cli("info", str(copy), "--no-probe", "--json")
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)["metadata"]
    assert meta["origin"] == "embedded" and meta["task"] == "classify" and meta["labels"] == LABELS["b"]
    assert meta["preprocessing"]["channels"] == "BGR" and meta["input_layout"] == "NHWC"
    assert meta["source"]["sha256"] == read_sha(shared["source"]) and meta["conversion"]["target"] == "openvino"
    text = cli("info", str(copy), "--no-probe").stdout
    assert "metadata      embedded (inside the file)" in text
    assert "3 classes: bee, gee, arr" in text and "16x16 stretch, BGR, mean [127.5] std [127.5], NHWC" in text


# ---- overrides and the model without metadata ------------------------------------------------------------------
def test_run_overrides_what_the_model_carries(shared, image_dir, tmp_path, cli):
    copy = _copy_alone(shared["out"] / "a_fp32.onnx", tmp_path)
    labels = tmp_path / "names.txt"
    labels.write_text("rouge\nvert\nbleu\n")
    doc, _ = _run_json(cli, copy, image_dir, "--channels", "bgr", "--labels", str(labels))
    assert doc["preprocessing"]["channels"] == "BGR" and doc["preprocessing"]["std"] == [255.0], "rest kept"
    assert doc["last_result"]["top"][0]["label"] == "bleu", "B first, named by the labels file"
    more = ("--mean", "1,2,3", "--std", "2", "--resize", "letterbox", "--size", "16x16")
    doc, _ = _run_json(cli, copy, image_dir, *more)
    pre = doc["preprocessing"]
    assert (pre["mean"], pre["std"], pre["resize"], pre["size"]) == ([1.0, 2.0, 3.0], [2.0], "letterbox", [16, 16])
    r = cli("run", str(copy), "--source", str(image_dir), "--no-probe", "--std", "0")
    assert r.returncode == 2 and "std [0.0] contains 0" in r.stderr
    r = cli("run", str(copy), "--source", str(image_dir), "--no-probe", "--size", "big")
    assert r.returncode == 2 and "size 'big' is not HxW" in r.stderr


@pytest.fixture
def bare_onnx(tmp_path) -> Path:
    """An image model with no metadata and no manifest: ReduceMean over H, W of a (1, 3, 16, 16) input."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["scores"], axes=[2, 3], keepdims=0)], "bare",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "bare.onnx")
    return tmp_path / "bare.onnx"


def test_a_model_without_metadata_is_a_warning_naming_the_flags(bare_onnx, image_dir, cli):
    assert model_metadata(bare_onnx) is None
    r = cli("run", str(bare_onnx), "--source", str(image_dir), "--no-probe")
    assert r.returncode == 2 and "--task is required: bare.onnx carries no task" in r.stderr
    doc, err = _run_json(cli, bare_onnx, image_dir, "--task", "classify")
    assert "bare.onnx carries no preprocessing" in err and "guessed NCHW, RGB, 16x16" in err
    assert all(flag in err for flag in FLAGS), err
    assert doc["metadata"] is None and doc["preprocessing"]["std"] == [255.0]
    _, err = _run_json(cli, bare_onnx, image_dir, "--task", "classify", "--mean", "127", "--std", "128")
    assert "carries no preprocessing" not in err, "mean and std given: nothing left guessed"
    text = cli("info", str(bare_onnx), "--no-probe").stdout
    assert "metadata      none" in text and "--mean" in text


def test_convert_cli_stores_task_and_labels(bare_onnx, image_dir, tmp_path, cli):
    """`convert --task --labels --size --mean --std`: the artifact then runs with no flags at all."""
    names = tmp_path / "names.txt"
    names.write_text("r\ng\nb\n")
    out = tmp_path / "out"
    r = cli("convert", str(bare_onnx), "--to", "onnx", "-o", str(out), "--task", "classify", "--labels", str(names),
            "--size", "16x16", "--mean", "0", "--std", "255", "--validate-samples", "4")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc, err = _run_json(cli, out / "bare_fp32.onnx", image_dir)
    assert doc["task"] == "classify" and doc["last_result"]["top"][0]["label"] == "r"
    assert "carries no preprocessing" not in err
    r = cli("convert", str(bare_onnx), "--to", "onnx", "-o", str(tmp_path / "x"), "--labels", str(tmp_path / "no.txt"))
    assert r.returncode == 2 and "labels file" in r.stderr and "does not exist" in r.stderr


def test_a_malformed_record_is_a_typed_error(bare_onnx, tmp_path, cli):
    import onnx

    model = onnx.load(bare_onnx)
    entry = model.metadata_props.add()
    entry.key, entry.value = "edge_sdk.labels", "[not json"
    onnx.save(model, tmp_path / "bad.onnx")
    with edge_sdk.load(tmp_path / "bad.onnx") as m, pytest.raises(ModelMetadataError, match="edge_sdk.labels"):
        _ = m.metadata
    entry.value = json.dumps({"a": 1})
    onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(ModelMetadataError, match="field 'labels' is a dict, expected str or list"):
        read_embedded(tmp_path / "bad.onnx")
    r = cli("info", str(tmp_path / "bad.onnx"), "--no-probe", "--json")
    assert r.returncode == 0 and "expected str or list" in json.loads(r.stdout)["metadata"]["error"]


def test_embedding_again_replaces_the_record(shared, tmp_path):
    """A file converted again (or re-embedded) carries one edge_sdk record, the newest; other entries stay."""
    from converters.embed_metadata import embed

    for fmt, suffix in FORMATS.items():
        copy = _copy_alone(shared["out"] / f"a_fp32{suffix}", tmp_path / fmt)
        written = embed(copy, {"task": "detect", "labels": "imagenet-1k", "preprocessing": SPECS["b"].to_dict()})
        meta = read_embedded(copy)
        assert (meta.task, meta.labels, written["input_layout"]) == ("detect", "imagenet-1k", "NHWC"), fmt
        assert meta.source is None, f"{fmt}: the old record's fields are gone"
        assert len(meta.label_names()) == 1000
        with edge_sdk.load(copy) as m:
            m.run(np.zeros((1, 16, 16, 3), np.float32))
