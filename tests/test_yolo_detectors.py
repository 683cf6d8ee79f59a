"""Detectors users have: YOLO v5 / v8 / v11 / end-to-end output layouts, letterbox boxes back in the image's pixels,
class filtering by name or id, COCO's 80 names by default and --labels FILE over them.

Real architectures (ultralytics' yolov8n.yaml, yolo11n.yaml and the NMS-free yolo26n.yaml, random weights, nothing
downloaded) are exported to ONNX once per session and run end to end; exact boxes come from hand-built ONNX files whose
output is a known tensor in each layout (a YOLOv5 head with objectness cannot be built by ultralytics 8.4, whose
yolov5u is anchor-free and v8-shaped)."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import run_cli

import edge_sdk as es
from edge_sdk.errors import OutputMismatchError, TaskError
from edge_sdk.labels import coco80_labels, load_labels
from edge_sdk.postprocess.detect import YoloDetector, class_ids, make_detector
from edge_sdk.postprocess.registry import get_postprocessor
from edge_sdk.preprocess import PreprocessSpec
from edge_sdk.tensor_spec import TensorSpec

REPO = Path(__file__).resolve().parents[1]
SIZE = 320
LETTERBOX = PreprocessSpec(size=(SIZE, SIZE), resize="letterbox", mean=0.0, std=255.0, pad_value=114)
#: known boxes per image (height, width): person, car, in the image's pixels (x1, y1, x2, y2)
BOXES = {(480, 640): ([100.0, 50.0, 300.0, 400.0], [400.0, 200.0, 600.0, 300.0]),
         (640, 480): ([50.0, 100.0, 400.0, 300.0], [300.0, 450.0, 460.0, 600.0])}  # fmt: skip


def stub(*outputs: tuple[str, list]) -> SimpleNamespace:
    return SimpleNamespace(outputs=[TensorSpec(n, tuple(s), np.float32) for n, s in outputs], path=None)


# ---- layouts from the shape ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, kwargs, version, n_labels",
    [
        ([1, 84, 2100], {}, "v8", 80),  # ultralytics' default export (v8, v11, yolov5u)
        ([1, 2100, 84], {}, "v8t", 80),  # the same, transposed (some TFLite / TensorRT exports)
        ([1, 6300, 85], {}, "v5", 80),  # YOLOv5 with objectness
        ([1, 300, 6], {}, "end2end", None),  # NMS-free: yolov10 / yolo26 / export(nms=True)
        ([1, 6300, 6], {}, "v5", None),  # too many rows for a selection: a one-class v5 head
        ([1, 300, 6], {"layout": "v5"}, "v5", None),
        ([1, 2100, 6], {"layout": "v8"}, "v8t", None),  # two classes, transposed
        ([1, 2100, 7], {"labels": ["a", "b", "c"]}, "v8t", 3),  # 4 + 3 labels: no objectness
        ([1, 2100, 8], {"labels": ["a", "b", "c"]}, "v5", 3),
        ([1, 84, None], {}, "v8", 80),  # dynamic number of anchors
    ],
)
def test_yolo_layout_from_the_output_shape(shape, kwargs, version, n_labels):
    det = make_detector(stub(("output0", shape)), preprocess=LETTERBOX, **kwargs)
    assert isinstance(det, YoloDetector) and det.version == version
    assert (len(det.labels) if det.labels is not None else None) == n_labels


@pytest.mark.parametrize(
    "shape, kwargs, error, message",
    [
        ([1, 10], {}, OutputMismatchError, r"output 'output0' has shape \[1,10\], which is not a YOLO box tensor"),
        ([1, 300, 4], {"layout": "end2end"}, OutputMismatchError, r"\[1,300,4\], which has not 6 values per box"),
        ([1, 2100, 4], {}, OutputMismatchError, r"\[1,2100,4\], which has too few values per box"),
        ([1, 84, 2100], {"layout": "v11"}, TaskError, "layout must be one of v5, v8, end2end, got 'v11'"),
    ],
)
def test_yolo_layout_mismatch_is_typed_and_names_the_shape(shape, kwargs, error, message):
    with pytest.raises(error, match=message):
        make_detector(stub(("output0", shape)), preprocess=LETTERBOX, **kwargs)


# ---- class names and filters ---------------------------------------------------------------------------------------
def test_coco80_labels_file():
    names = coco80_labels()
    assert len(names) == 80 and len(set(names)) == 80
    assert names[0] == "person" and names[2] == "car" and names[79] == "toothbrush" and names[62] == "tv"
    assert (REPO / "edge_sdk" / "data" / "coco80_labels.txt").read_text().splitlines() == names


def test_coco_names_by_default_logged_and_labels_override(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="edge_sdk.pipeline"):
        det = make_detector(stub(("output0", [1, 84, 2100])), preprocess=LETTERBOX)
    assert det.labels == coco80_labels()
    assert "80 classes and no class names stored: using COCO's 80 names" in caplog.text
    path = tmp_path / "mine.txt"
    path.write_text("".join(f"thing{i}\n" for i in range(80)))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge_sdk.pipeline"):
        det = make_detector(stub(("output0", [1, 84, 2100])), preprocess=LETTERBOX, labels=load_labels(path))
    assert det.labels[2] == "thing2" and "COCO" not in caplog.text
    assert make_detector(stub(("output0", [1, 7, 2100])), preprocess=LETTERBOX).labels is None  # 3 classes: no names


@pytest.mark.parametrize(
    "classes, ids",
    [("person,car", [0, 2]), ("0,2", [0, 2]), (2, [2]), ("Person", [0]), (["car", 0], [2, 0]), ("tv, 79", [62, 79])],
)
def test_class_filter_by_name_or_id(classes, ids):
    assert class_ids(classes, coco80_labels(), 80) == ids


@pytest.mark.parametrize(
    "classes, labels, message",
    [
        ("persn,car", coco80_labels(), r"'persn' \(close: person\); the model's classes: person, bicycle, car"),
        ("aeroplane", coco80_labels(), r"'aeroplane' \(close: airplane\)"),
        ("zzz", coco80_labels(), r"'zzz' \(no close match\)"),
        ("person", None, "'person' is a name, but the model has no class names; give them with --labels FILE"),
        ("80", coco80_labels(), r"id 80 is not a class of this model \(ids 0..79\)"),
        ("", coco80_labels(), "classes is empty"),
        (1.5, coco80_labels(), "classes must be names or ids"),
    ],
)
def test_class_filter_errors_are_typed(classes, labels, message):
    with pytest.raises(TaskError, match=message):
        class_ids(classes, labels, 80)


def test_class_filter_through_the_registry_and_on_centerface():
    model = stub(("output0", [1, 84, 2100]))
    with pytest.raises(TaskError, match=r"'persn' \(close: person\)"):
        get_postprocessor("detect", model, preprocess=LETTERBOX, classes="persn")
    face = stub(("heatmap", [1, 1, 8, 8]), ("scale", [1, 2, 8, 8]), ("offset", [1, 2, 8, 8]))
    assert make_detector(face, preprocess=PreprocessSpec(size=(32, 32)), classes="face").class_ids.tolist() == [0]
    with pytest.raises(TaskError, match=r"'person' \(no close match\); the model's classes: face"):
        make_detector(face, preprocess=PreprocessSpec(size=(32, 32)), classes="person")


# ---- exact boxes: a known output tensor in each layout, letterboxed non-square images --------------------------------
def _to_model(box: list[float], image_hw: tuple[int, int]) -> np.ndarray:
    """A source-pixel box in letterboxed model-input pixels (the inverse of what the detector must do)."""
    g = LETTERBOX.geometry(image_hw)
    b = np.asarray(box, np.float64)
    return np.array([b[0] * g.scale_x + g.offset_x, b[1] * g.scale_y + g.offset_y,
                     b[2] * g.scale_x + g.offset_x, b[3] * g.scale_y + g.offset_y])  # fmt: skip


def _known_output(layout: str, image_hw: tuple[int, int], nc: int = 80) -> np.ndarray:
    """The person (0.9), a weaker duplicate of it (suppressed by NMS), the car (0.8) and low-score noise,
    as ``layout`` (v5, v8, v8t, end2end) lays them out for a letterboxed ``image_hw`` image."""
    person, car = BOXES[image_hw]
    rows = [(person, 0, 0.9), ([v + 4 for v in person], 0, 0.7), (car, 2, 0.8)]
    if layout == "end2end":
        y = np.zeros((1, 300, 6), np.float32)  # the model already removed the duplicate
        for i, (box, c, s) in enumerate([rows[0], rows[2]]):
            y[0, i] = [*_to_model(box, image_hw), s, c]
        y[0, 2] = [10, 10, 50, 50, 0.01, 5]
        return y
    v5 = layout == "v5"
    n = 6300 if v5 else 2100  # the anchors of a 320x320 input: 3 per cell (v5), 1 per cell (v8)
    y = np.zeros((n, (5 if v5 else 4) + nc), np.float32)
    rng = np.random.default_rng(0)
    y[:, 0:2] = rng.uniform(20, 300, (n, 2))
    y[:, 2:4] = rng.uniform(10, 40, (n, 2))
    y[:, 5 if v5 else 4 :] = rng.uniform(0, 0.2, (n, nc))  # noise under the threshold
    if v5:
        y[:, 4] = 1.0
    for i, (box, c, s) in enumerate(rows):
        x1, y1, x2, y2 = _to_model(box, image_hw)
        y[i, :4] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        if v5:  # objectness x class probability = s
            y[i, 4], y[i, 5:] = 0.95, 0.0
            y[i, 5 + c] = s / 0.95
        else:
            y[i, 4:] = 0.0
            y[i, 4 + c] = s
    if layout == "v8":
        return np.ascontiguousarray(y.T[None])  # (1, 4 + C, N)
    return y[None]  # (1, N, 5 + C) or (1, N, 4 + C)


def _constant_onnx(path: Path, y: np.ndarray) -> Path:
    """An ONNX model taking (1, 3, 320, 320) images whose output0 is ``y`` whatever the picture."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),
         helper.make_node("Mul", ["m", "z"], ["mz"]), helper.make_node("Add", ["c", "mz"], ["output0"])],
        "known_boxes", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(y.shape))],
        [numpy_helper.from_array(y, "c"), numpy_helper.from_array(np.zeros(1, np.float32), "z")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


LAYOUTS = {"v5": "v5", "v8": "v8", "v8-transposed": "v8t", "end2end": "end2end"}


@pytest.mark.parametrize("image_hw", list(BOXES), ids=["landscape", "portrait"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_known_boxes_come_back_in_image_pixels_through_letterbox(tmp_path, layout, image_hw):
    path = _constant_onnx(tmp_path / f"{layout}.onnx", _known_output(LAYOUTS[layout], image_hw))
    image = np.zeros((*image_hw, 3), np.uint8)
    person, car = BOXES[image_hw]
    # an end-to-end output does not say how many classes there are: no COCO names unless given
    kw = {"preprocess": LETTERBOX, "task": "detect", "labels": coco80_labels() if layout == "end2end" else None}
    with es.load(path) as model:
        assert make_detector(model, preprocess=LETTERBOX).version == LAYOUTS[layout]
        r = model.predict(image, **kw)
        assert r.class_name == ["person", "car"] and r.image_hw == image_hw  # COCO's names by default (80 classes)
        np.testing.assert_allclose(r.xyxy, [person, car], atol=0.05)
        np.testing.assert_allclose(r.confidence, [0.9, 0.8], atol=1e-5)
        only_car = model.predict(image, **kw, classes="car")
        assert only_car.class_name == ["car"] and only_car.class_id.tolist() == [2]
        np.testing.assert_allclose(only_car.xyxy, [car], atol=0.05)
        assert model.predict(image, **kw, classes="0").class_name == ["person"]
        assert len(model.predict(image, **kw, max_det=1)) == 1
        if layout == "end2end":
            assert model.predict(image, task="detect", preprocess=LETTERBOX).class_name == ["0", "2"]


def test_cli_labels_file_and_class_filter(tmp_path):
    """`edge-sdk run --labels FILE --post-opt classes=...` on a v5 head: the file's names, only the chosen class."""
    path = _constant_onnx(tmp_path / "v5.onnx", _known_output("v5", (480, 640)))
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"thing{i}\n" for i in range(80)))
    args = ("run", str(path), "--task", "detect", "--size", f"{SIZE}x{SIZE}", "--resize", "letterbox", "--mean", "0",
            "--std", "255", "--no-probe", "--source", "synthetic:?fps=0&frames=2&size=640x480", "--json")  # fmt: skip
    r = run_cli(*args, "--labels", str(labels), "--post-opt", "classes=thing2")
    assert r.returncode == 0, r.stderr
    dets = json.loads(r.stdout)["last_result"]["detections"]
    assert [d["label"] for d in dets] == ["thing2"] and [d["class"] for d in dets] == [2]
    np.testing.assert_allclose(dets[0]["box"], BOXES[(480, 640)][1], atol=0.1)
    r = run_cli(*args, "--post-opt", "classes=person,car")  # no --labels: COCO's names, said on stderr
    assert r.returncode == 0, r.stderr
    assert [d["label"] for d in json.loads(r.stdout)["last_result"]["detections"]] == ["person", "car"]
    assert "using COCO's 80 names" in r.stderr
    r = run_cli(*args, "--post-opt", "classes=persn")
    assert r.returncode == 2 and "unknown class name(s) 'persn' (close: person)" in r.stderr


# ---- real architectures: ultralytics' yolov8n / yolo11n / yolo26n (end-to-end) at 320x320, random weights ----------
EXPORT = """
import os, sys, tempfile
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))
os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, sys.argv[1])
from benchmarks.corpus._common import install_torchvision_shim
install_torchvision_shim()
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
from ultralytics.nn.modules.head import Detect
from ultralytics.nn.tasks import DetectionModel
for yaml in sys.argv[3:]:
    model = DetectionModel(yaml, verbose=False).eval().float()
    end2end = yaml.startswith("yolo26")  # an NMS-free one-to-one head: (1, max_det, 6), as export(end2end) does
    model.model[-1].end2end = end2end
    model = model.fuse()
    for m in model.modules():
        if isinstance(m, Detect):
            m.dynamic, m.export, m.format = False, True, "onnx"
    x = torch.zeros(1, 3, 320, 320)
    torch.onnx.export(model, (x,), os.path.join(sys.argv[2], yaml.replace(".yaml", ".onnx")), input_names=["images"],
                      output_names=["output0"], opset_version=17, dynamo=False)
"""


@pytest.fixture(scope="session")
def ultralytics_onnx(tmp_path_factory):
    """yolov8n, yolo11n and yolo26n built from ultralytics' yaml files and exported to ONNX once, in a child process
    (ultralytics and its torchvision shim stay out of the test process)."""
    pytest.importorskip("torch")
    libs = Path(os.environ.get("EDGE_SDK_CORPUS_LIBS") or REPO / ".corpus-libs")
    if not (libs / "ultralytics").is_dir():
        pytest.skip(f"ultralytics is not installed in {libs} (the corpus libraries)")
    out = tmp_path_factory.mktemp("ultralytics")
    import subprocess

    r = subprocess.run([sys.executable, "-c", EXPORT, str(REPO), str(out), "yolov8n.yaml", "yolo11n.yaml",
                        "yolo26n.yaml"], capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir(),
                       env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov8n", "yolo11n"])
def test_ultralytics_export_runs_end_to_end(ultralytics_onnx, name, caplog):
    image = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    with es.load(ultralytics_onnx / f"{name}.onnx") as model:
        assert model.outputs[0].shape == (1, 84, 2100)
        with caplog.at_level(logging.WARNING, logger="edge_sdk.pipeline"):
            det = make_detector(model, preprocess=LETTERBOX)
        assert det.version == "v8" and det.labels == coco80_labels() and "using COCO's 80 names" in caplog.text
        # random weights score low: threshold 0 keeps every anchor, so max_det decides how many come back
        r = model.predict(image, task="detect", preprocess=LETTERBOX, threshold=0.0, max_det=7)
        assert len(r) == 7 and r.image_hw == (480, 640)
        assert set(r.class_name) <= set(coco80_labels())
        assert (r.xyxy[:, 0::2] >= 0).all() and (r.xyxy[:, 0::2] <= 640).all()
        assert (r.xyxy[:, 1::2] >= 0).all() and (r.xyxy[:, 1::2] <= 480).all()
        assert (np.diff(r.confidence) <= 0).all()
        some = model.predict(image, task="detect", preprocess=LETTERBOX, threshold=0.0, classes="person,car,5")
        assert 0 < len(some) <= 100 and set(some.class_name) <= {"person", "car", "bus"}


@pytest.mark.slow
def test_ultralytics_end2end_export(ultralytics_onnx):
    """yolo26n's NMS-free head: (1, 300, 6) x1, y1, x2, y2, score, class; no NMS here, max_det and classes kept."""
    image = np.random.default_rng(2).integers(0, 256, (640, 480, 3), dtype=np.uint8)
    with es.load(ultralytics_onnx / "yolo26n.onnx") as model:
        assert model.outputs[0].shape == (1, 300, 6)
        assert make_detector(model, preprocess=LETTERBOX).version == "end2end"
        kw = {"task": "detect", "preprocess": LETTERBOX, "threshold": 0.0, "labels": coco80_labels()}
        r = model.predict(image, **kw, max_det=5)
        assert len(r) == 5 and r.image_hw == (640, 480) and set(r.class_name) <= set(coco80_labels())
        assert (r.xyxy[:, 0::2] <= 480).all() and (r.xyxy[:, 1::2] <= 640).all() and (r.xyxy >= 0).all()
        full = model.predict(image, **kw, max_det=300)
        assert len(full) == 300  # every row of the model's own selection
        wanted = sorted(set(full.class_id.tolist()))[:2]
        some = model.predict(image, **kw, max_det=300, classes=wanted)
        assert len(some) == int(np.isin(full.class_id, wanted).sum()) and set(some.class_id.tolist()) <= set(wanted)


@pytest.mark.slow
def test_cli_runs_a_real_yolo_export(ultralytics_onnx):
    r = run_cli("run", str(ultralytics_onnx / "yolo11n.onnx"), "--task", "detect", "--size", "320x320", "--resize",
                "letterbox", "--mean", "0", "--std", "255", "--no-probe", "--source",
                "synthetic:?fps=0&frames=3&size=640x480", "--post-opt", "threshold=0", "--post-opt", "max_det=4",
                "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout)["last_result"]
    assert last["count"] == 4 and all(d["label"] in coco80_labels() for d in last["detections"])
