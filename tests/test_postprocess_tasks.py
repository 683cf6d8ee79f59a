"""Post-processors by task: classify top-k, YOLO and CenterFace decoding mapped back to the frame."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edge_sdk.errors import OutputMismatchError, TaskError
from edge_sdk.postprocess.boxes import nms as nms_numpy
from edge_sdk.postprocess.classify import Classifier
from edge_sdk.postprocess.detect import CenterFaceDetector, YoloDetector, make_detector, nms
from edge_sdk.postprocess.registry import get_postprocessor
from edge_sdk.preprocess import PreprocessSpec
from edge_sdk.tensor_spec import TensorSpec


def stub(*outputs: tuple[str, list]) -> SimpleNamespace:
    return SimpleNamespace(outputs=[TensorSpec(n, tuple(s), np.float32) for n, s in outputs], path=None)


def frame(h: int, w: int) -> SimpleNamespace:
    return SimpleNamespace(data=np.zeros((h, w, 3), np.uint8))


def test_classify_topk_softmax_and_imagenet_labels():
    post = Classifier(stub(("logits", [1, 1000])), top_k=3)
    logits = np.zeros((1, 1000), np.float32)
    logits[0, 285], logits[0, 967] = 9.0, 8.0
    r = post({"logits": logits})
    assert r.classes[:2] == [285, 967] and r.labels[0] == "Egyptian cat" and r.labels[1] == "espresso"
    assert 0.5 < r.scores[0] < 1 and r.scores == sorted(r.scores, reverse=True)
    assert r.to_event()["top"][0] == {"class": 285, "label": "Egyptian cat", "score": round(r.scores[0], 4)}
    img = r.annotate(np.zeros((100, 200, 3), np.uint8))
    assert img.shape == (100, 200, 3) and img.any()


def test_classify_keeps_probabilities_and_1001_has_background():
    post = Classifier(stub(("p", [1, 1001])), top_k=1)
    p = np.full((1, 1001), 0.0, np.float32)
    p[0, 286] = 1.0
    r = post({"p": p})
    assert r.labels == ["Egyptian cat"] and r.scores == [1.0]


@pytest.mark.parametrize(
    "outputs, kwargs, message",
    [
        ([("a", [1, 10]), ("b", [1, 4])], {}, "needs one score output, but the model has 2: 'a' \\[1,10\\]"),
        ([("y", [1, 84, 8400])], {}, "output 'y' has shape \\[1,84,8400\\], expected class scores"),
        ([("y", [1, 1])], {}, "output 'y' has shape \\[1,1\\]"),
        ([("y", [1, 10])], {"output": "z"}, "model has no output 'z'"),
    ],
)
def test_classify_rejects_outputs_that_do_not_fit(outputs, kwargs, message):
    with pytest.raises(OutputMismatchError, match=message):
        Classifier(stub(*outputs), **kwargs)


def test_unknown_task():
    with pytest.raises(TaskError, match="unknown task 'pose'"):
        get_postprocessor("pose", stub(("y", [1, 10])))


def test_yolo_v5_boxes_map_back_through_letterbox():
    spec = PreprocessSpec(size=(320, 320), resize="letterbox")
    det = make_detector(stub(("out", [1, 3, 7])), preprocess=spec, labels=["cat", "dog"])
    assert isinstance(det, YoloDetector) and det.version == "v5"
    y = np.array([[[160, 160, 80, 40, 0.9, 0.1, 0.9],  # dog, centre of the model input
                   [162, 161, 80, 40, 0.8, 0.1, 0.9],  # duplicate: suppressed
                   [50, 50, 10, 10, 0.1, 0.9, 0.1]]],  # below threshold
                 np.float32)  # fmt: skip
    r = det({"out": y}, frame(480, 640))  # 640x480 -> scale 0.5, 40 px padding top/bottom
    assert len(r) == 1 and r.labels == ["dog"]
    np.testing.assert_allclose(r.boxes[0], [240, 200, 400, 280], atol=0.5)
    assert r.to_event()["detections"][0]["label"] == "dog"


def test_yolo_v8_layout_and_normalised_coordinates():
    spec = PreprocessSpec(size=(100, 100))
    det = make_detector(stub(("out", [1, 6, 50])), preprocess=spec)
    assert det.version == "v8"
    y = np.zeros((1, 6, 50), np.float32)
    y[0, :, 3] = [0.5, 0.5, 0.2, 0.2, 0.1, 0.95]
    r = det({"out": y}, frame(200, 400))
    assert r.classes.tolist() == [1]
    np.testing.assert_allclose(r.boxes[0], [160, 80, 240, 120], atol=0.5)


def test_centerface_boxes_in_frame_pixels_and_blur():
    spec = PreprocessSpec(size=(64, 64))
    model = stub(("heatmap", [1, 1, 16, 16]), ("scale", [1, 2, 16, 16]), ("offset", [1, 2, 16, 16]),
                 ("landmarks", [1, 10, 16, 16]))  # fmt: skip
    det = make_detector(model, preprocess=spec, blur=True)
    assert isinstance(det, CenterFaceDetector)
    hm = np.zeros((1, 1, 16, 16), np.float32)
    hm[0, 0, 8, 8] = 0.9
    sc = np.full((1, 2, 16, 16), np.log(4.0), np.float32)  # 16x16 px in the input
    outs = {"heatmap": hm, "scale": sc, "offset": np.zeros((1, 2, 16, 16), np.float32),
            "landmarks": np.zeros((1, 10, 16, 16), np.float32)}  # fmt: skip
    r = det(outs, frame(128, 256))  # the frame is 2x tall, 4x wide
    np.testing.assert_allclose(r.boxes[0], [104, 52, 168, 84], atol=0.5)
    img = np.random.default_rng(0).integers(0, 256, (128, 256, 3), dtype=np.uint8)
    out = r.annotate(img)
    assert out[60:80, 110:160].std() < img[60:80, 110:160].std()  # the face is blurred
    assert (out[:25] == img[:25]).all()  # above the box and its label: untouched


@pytest.mark.parametrize(
    "outputs, kwargs, message",
    [
        ([("logits", [1, 10])], {}, "output 'logits' has shape \\[1,10\\], which is not a YOLO box tensor"),
        ([("a", [1, 1, 8, 8]), ("b", [1, 3, 8, 8]), ("c", [1, 2, 8, 8])], {}, "fit no detector: CenterFace needs"),
        ([("a", [1, 1, 8, 8]), ("b", [1, 3, 8, 8]), ("c", [1, 2, 8, 8])], {"decoder": "centerface"}, "expected 4-D"),
        ([("y", [1, 10])], {"decoder": "ssd"}, "decoder must be centerface or yolo"),
    ],
)
def test_detect_rejects_outputs_that_do_not_fit(outputs, kwargs, message):
    with pytest.raises(OutputMismatchError, match=message):
        make_detector(stub(*outputs), preprocess=PreprocessSpec(size=(32, 32)), **kwargs)


def test_opencv_and_numpy_nms_agree():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 200, (60, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(10, 60, (60, 2)).astype(np.float32)], axis=1)
    scores = rng.uniform(0, 1, 60).astype(np.float32)
    assert sorted(nms(boxes, scores, 0.4).tolist()) == sorted(nms_numpy(boxes, scores, 0.4).tolist())
