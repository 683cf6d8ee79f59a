"""Detectors users have: a pre-NMS cap and max_det, NMS in numpy without Python lists (same boxes as OpenCV)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from conftest import run_cli

from edge_sdk.errors import TaskError
from edge_sdk.postprocess.boxes import nms
from edge_sdk.postprocess.detect import make_detector
from edge_sdk.preprocess import PreprocessSpec
from edge_sdk.tensor_spec import TensorSpec


def _random_boxes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 300, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(10, 80, (n, 2)).astype(np.float32)], axis=1)
    return boxes, rng.uniform(0, 1, n).astype(np.float32)


@pytest.mark.parametrize("n, thr", [(1, 0.5), (60, 0.4), (400, 0.5), (400, 0.1)])
def test_numpy_nms_matches_opencv_greedy_nms(n, thr):
    import cv2

    boxes, scores = _random_boxes(n, seed=n)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    ref = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, thr), np.int64).reshape(-1)
    keep = nms(boxes, scores, thr)
    assert isinstance(keep, np.ndarray) and keep.dtype == np.int64
    assert keep.tolist() == ref.tolist()  # same boxes, same order (best first)


def test_nms_pre_topk_max_det_and_classes():
    boxes, scores = _random_boxes(2000, seed=3)
    best = set(np.argsort(-scores)[:100].tolist())
    keep = nms(boxes, scores, 0.5, pre_nms_topk=100)
    assert set(keep.tolist()) <= best and len(keep) > 10
    assert nms(boxes, scores, 0.5, max_det=7).tolist() == nms(boxes, scores, 0.5)[:7].tolist()
    same = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float32)
    assert nms(same, np.array([0.9, 0.8]), 0.5).tolist() == [0]
    assert nms(same, np.array([0.9, 0.8]), 0.5, classes=np.array([0, 1])).tolist() == [0, 1]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []


def _yolo_v8(n: int, classes: int = 3, seed: int = 0) -> tuple[Any, np.ndarray]:
    model = type("M", (), {"outputs": [TensorSpec("y", (1, 4 + classes, n), np.float32)], "path": None})()
    rng = np.random.default_rng(seed)
    y = np.zeros((1, 4 + classes, n), np.float32)
    y[0, 0:2] = rng.uniform(20, 300, (2, n))
    y[0, 2:4] = rng.uniform(10, 40, (2, n))
    y[0, 4:] = rng.uniform(0, 1, (classes, n))
    return model, y


def test_detector_max_det_and_pre_nms_topk():
    model, y = _yolo_v8(3000)
    spec = PreprocessSpec(size=(320, 320))
    full = make_detector(model, preprocess=spec, threshold=0.05, nms=0.5, max_det=10_000, pre_nms_topk=10_000)
    capped = make_detector(model, preprocess=spec, threshold=0.05, nms=0.5, max_det=25, pre_nms_topk=200)
    r_full, r_cap = full({"y": y}), capped({"y": y})
    assert len(r_full) > 25 and len(r_cap) == 25
    assert r_cap.scores.min() >= np.sort(y[0, 4:].max(axis=0))[-200] - 1e-6  # only the 200 best took part
    np.testing.assert_allclose(r_cap.scores, np.sort(r_cap.scores)[::-1])
    default = make_detector(model, preprocess=spec, threshold=0.05)
    assert default.max_det == 100 and default.pre_nms_topk == 1000 and len(default({"y": y})) <= 100


@pytest.mark.parametrize("key, value", [("max_det", 0), ("pre_nms_topk", -1), ("max_det", 2.5), ("max_det", True)])
def test_detector_caps_must_be_positive_counts(key, value):
    model, _ = _yolo_v8(100)
    with pytest.raises(TaskError, match=f"task 'detect': {key} must be a whole number >= 1, got {value!r}; "
                                        f"e.g. {key}=100 \\(CLI: --post-opt KEY=VALUE\\)"):  # fmt: skip
        make_detector(model, preprocess=PreprocessSpec(size=(320, 320)), **{key: value})


@pytest.mark.parametrize("key, value", [("threshold", 7), ("threshold", -3), ("nms", 1.5), ("threshold", "0.5")])
def test_detector_scores_must_be_fractions(key, value):
    """threshold=7 kept no detection and threshold=-3 kept max_det of them, silently."""
    model, _ = _yolo_v8(100)
    with pytest.raises(TaskError, match=f"task 'detect': {key} must be a number from 0 to 1, got {value!r}; e.g. "):
        make_detector(model, preprocess=PreprocessSpec(size=(320, 320)), **{key: value})


def test_cli_passes_detector_caps(tmp_path):
    """--post-opt max_det=... reaches the detector (a bad value is the typed error, exit 2)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    n = 50  # y = c + 0 * mean(x): the same boxes whatever the picture
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=0),
         helper.make_node("Mul", ["m", "z"], ["mz"]), helper.make_node("Add", ["c", "mz"], ["y"])],
        "boxes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, n])],
        [numpy_helper.from_array(_yolo_v8(n, 2, 1)[1], "c"), numpy_helper.from_array(np.zeros(1, np.float32), "z")],
    )  # fmt: skip
    path = tmp_path / "boxes.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    args = ("run", str(path), "--task", "detect", "--size", "32x32", "--mean", "0", "--std", "255", "--no-probe",
            "--source", "synthetic:?fps=0&frames=2&size=64x64", "--json")  # fmt: skip
    r = run_cli(*args, "--post-opt", "threshold=0.05", "--post-opt", "max_det=3")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["last_result"]["count"] == 3
    r = run_cli(*args, "--post-opt", "max_det=0")
    assert r.returncode == 2 and "max_det must be a whole number >= 1, got 0" in r.stderr
