"""Typed results (issue 15, item 1): ``model.predict`` on real zoo models with their stored preprocessing,
``Detections`` <-> ``supervision.Detections``, ``for frame, result in pipeline``, and predict's input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from realtime_helpers import onnx_colour_classifier

import edge_sdk as es
from converters import zoo
from edge_sdk.errors import InputMismatchError, PreprocessError, TaskError
from edge_sdk.pipeline import Pipeline
from edge_sdk.preprocess import PreprocessSpec
from edge_sdk.results import Classifications, Detections, VoiceActivity

SPEC = PreprocessSpec(size=(32, 32), mean=0.0, std=255.0)
#: the astronaut's face in skimage's astronaut.png (512x512): x 180..270, y 50..180
FACE_X, FACE_Y = (150, 290), (40, 200)


def _need(name: str) -> None:
    entry = zoo.get(name)
    if not entry.is_installed():
        pytest.skip(f"pip package {entry.missing_package()} is not installed")


def _photo(name: str) -> np.ndarray:
    from converters.datasets import named_image

    return named_image(name)


def _png(path: Path, rgb: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


@pytest.fixture(scope="module")
def centerface():
    _need("centerface")
    with es.load("zoo:centerface") as model:  # a zoo name, as the CLI takes; the file carries task and preprocessing
        yield model


def test_load_names_the_known_zoo_models_for_an_unknown_one():
    with pytest.raises(es.errors.ZooError, match=r"no zoo model named 'centreface'; known: .*centerface"):
        es.load("zoo:centreface")


@pytest.fixture(scope="module")
def efficientnet():
    _need("efficientnet-lite0")
    from converters.zoo.base import default_cache_dir
    from edge_sdk.zoo_models import resolve_model

    with es.load(resolve_model("zoo:efficientnet-lite0", default_cache_dir()).path) as model:
        yield model


@pytest.fixture(scope="module")
def colour(tmp_path_factory: pytest.TempPathFactory):
    """A tiny classifier whose file carries nothing (no task, no preprocessing)."""
    with es.load(onnx_colour_classifier(tmp_path_factory.mktemp("typed") / "colour.onnx")) as model:
        yield model


# ---- predict on real models ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_efficientnet_predict_names_the_egyptian_cat(efficientnet, tmp_path):
    assert efficientnet.metadata is not None and efficientnet.metadata.task == "classify"
    photo = _photo("chelsea")
    r = efficientnet.predict(photo)  # task, preprocessing and labels from the model's own record
    assert isinstance(r, Classifications) and isinstance(r, es.Classifications)
    assert (r.top1.class_id, r.top1.class_name) == (285, "Egyptian cat")
    assert r.class_id.dtype == np.int64 and r.score.dtype == np.float32 and len(r) == 5
    assert list(r.score) == sorted(r.score, reverse=True) and 0 < r.top1.score <= 1
    assert [c.class_id for c in r] == list(r.class_id)
    assert r.to_dict()["top"][0] == {"class": 285, "label": "Egyptian cat", "score": round(r.top1.score, 4)}

    path = _png(tmp_path / "chelsea.png", photo)
    by_path, by_str = efficientnet.predict([path, str(path)], top_k=2)  # a list -> a list; decoded BGR -> RGB
    for res in (by_path, by_str):
        assert len(res) == 2 and res.top1.class_id == 285
        np.testing.assert_allclose(res.score, r.score[:2], atol=1e-5)


def test_centerface_predict_finds_the_astronauts_face_where_the_pipeline_does(centerface, tmp_path):
    photo = _photo("astronaut")
    d = centerface.predict(photo)
    assert isinstance(d, Detections) and len(d) == 1
    assert d.xyxy.shape == (1, 4) and d.xyxy.dtype == np.float32 and d.confidence.dtype == np.float32
    assert list(d.class_id) == [0] and d.class_name == ["face"] and d.tracker_id is None
    assert d.image_hw == photo.shape[:2] and d.landmarks.shape == (1, 10)
    x1, y1, x2, y2 = d.xyxy[0]  # in the photo's own pixels (the model sees it stretched to 640x480)
    assert FACE_X[0] < (x1 + x2) / 2 < FACE_X[1] and FACE_Y[0] < (y1 + y2) / 2 < FACE_Y[1], d.xyxy
    assert 0 <= x1 < x2 <= photo.shape[1] and 0 <= y1 < y2 <= photo.shape[0]

    # the pipeline's existing result on the same image: the same numbers, and to_dict() is its JSON
    events: list[dict] = []
    Pipeline(_png(tmp_path / "photos" / "astronaut.png", photo).parent, centerface, task="detect",
             on_result=events.append, metrics_every=0).run()  # fmt: skip
    (event,) = [e for e in events if e["type"] == "result"]
    assert d.to_dict() == {k: event[k] for k in ("count", "detections")}
    np.testing.assert_allclose(event["detections"][0]["box"], d.xyxy[0], atol=0.06)

    (det,) = list(d)
    assert det.class_name == "face" and det.tracker_id is None and det.confidence == pytest.approx(d.confidence[0])


def test_detections_to_supervision_keeps_the_boxes(centerface):
    sv = pytest.importorskip("supervision")
    d = centerface.predict(_photo("astronaut"))
    s = d.to_supervision()
    assert isinstance(s, sv.Detections) and len(s) == 1
    np.testing.assert_array_equal(s.xyxy, d.xyxy)
    np.testing.assert_array_equal(s.confidence, d.confidence)
    np.testing.assert_array_equal(s.class_id, d.class_id)
    assert s.tracker_id is None and list(s.data["class_name"]) == ["face"]
    assert list(s["class_name"]) == ["face"]  # supervision's own accessor

    s.tracker_id = np.array([7])  # as a tracker (ByteTrack) would set it
    back = Detections.from_supervision(s, d.image_hw)
    np.testing.assert_array_equal(back.xyxy, d.xyxy)
    assert back.class_name == ["face"] and list(back.tracker_id) == [7] and next(iter(back)).tracker_id == 7
    assert back.to_dict()["detections"][0]["track_id"] == 7
    assert {k: v for k, v in back.to_dict()["detections"][0].items() if k != "track_id"} == \
        d.to_dict()["detections"][0]  # fmt: skip


def test_detections_arrays_subsets_and_empty():
    d = Detections([[0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]], [0.9, 0.4, 0.7], [0, 2, 1], ["a", "c", "b"],
                   tracker_id=[3, 4, 5], image_hw=(40, 50))  # fmt: skip
    strong = d[d.confidence > 0.5]
    assert len(strong) == 2 and strong.class_name == ["a", "b"] and list(strong.tracker_id) == [3, 5]
    assert d[1].class_name == ["c"] and d[1].xyxy.shape == (1, 4) and len(d[:0]) == 0
    assert [x.class_id for x in d] == [0, 2, 1]
    assert d.to_dict()["count"] == 3 and d.to_dict()["detections"][1]["track_id"] == 4
    e = Detections.empty((40, 50))
    assert len(e) == 0 and e.xyxy.shape == (0, 4) and e.to_dict() == {"count": 0, "detections": []}
    with pytest.raises(ValueError, match="confidence has 1 entries for 2 boxes"):
        Detections([[0, 0, 1, 1], [0, 0, 2, 2]], [0.5], [0, 0], ["a", "a"])
    sv = pytest.importorskip("supervision")
    assert isinstance(e.to_supervision(), sv.Detections) and len(e.to_supervision()) == 0


def test_voice_activity_serialises_like_the_vad_result():
    from edge_sdk.postprocess.vad import VadResult
    from edge_sdk.results import typed

    raw = VadResult([0.2, 0.9], True, 1.024, [{"event": "SPEECH_START", "t_s": 1.0}])
    v = typed(raw)
    assert isinstance(v, VoiceActivity) and v.speech and v.probability == pytest.approx(0.9)
    assert v.to_dict() == raw.to_event()


# ---- pipelines: for frame, result in pipeline ---------------------------------------------------------------------
def test_iterating_a_pipeline_over_three_images_yields_three_pairs(centerface, tmp_path):
    photos = tmp_path / "three"
    for i, name in enumerate(("astronaut", "chelsea", "coffee")):
        _png(photos / f"{i}_{name}.png", _photo(name))
    dicts: list[dict] = []
    pairs_cb: list[tuple] = []
    p = Pipeline(photos, centerface, task="detect", on_result=dicts.append,
                 on_frame_result=lambda f, r: pairs_cb.append((f, r)), metrics_every=0)  # fmt: skip
    pairs = list(p)
    assert len(pairs) == 3 and p.stop_reason == "source ended" and p.metrics()["results"] == 3
    assert [f.index for f, _ in pairs] == [0, 1, 2]
    assert [f.meta["file"] for f, _ in pairs] == ["0_astronaut.png", "1_chelsea.png", "2_coffee.png"]
    assert all(isinstance(r, Detections) for _, r in pairs)
    frame, faces = pairs[0]
    assert frame.data.shape == (512, 512, 3) and frame.data.dtype == np.uint8  # the frame carries its image
    assert len(faces) == 1 and faces.image_hw == (512, 512)
    assert len(pairs[2][1]) == 0, "no face in the coffee cup"
    # the (frame, result) callback gets the same pairs; the dict callback still gets the JSON (unchanged)
    assert [(f.index, r.to_dict()) for f, r in pairs_cb] == [(f.index, r.to_dict()) for f, r in pairs]
    results = [e for e in dicts if e["type"] == "result"]
    assert [e["frame"] for e in results] == [0, 1, 2]
    assert [{k: e[k] for k in ("count", "detections")} for e in results] == [r.to_dict() for _, r in pairs]


def test_iterating_a_synthetic_source_and_leaving_early(colour):
    p = Pipeline("synthetic:?fps=0&frames=3&size=64x64", colour, task="classify", preprocess=SPEC, top_k=2,
                 metrics_every=0)  # fmt: skip
    pairs = [(f.index, r) for f, r in p]
    assert [i for i, _ in pairs] == [0, 1, 2]
    assert all(isinstance(r, Classifications) and len(r) == 2 for _, r in pairs)

    p = Pipeline("synthetic:?fps=0&frames=500&size=64x64", colour, task="classify", preprocess=SPEC,
                 metrics_every=0)  # fmt: skip
    for n, (_frame, _result) in enumerate(p):
        if n == 1:
            break
    assert p.stop_reason == "iteration ended" and p.metrics()["results"] < 500
    assert not any(t.is_alive() for t in p._threads), "breaking out stops every stage"


def test_run_with_a_frame_result_callback(colour):
    got: list[tuple] = []
    p = Pipeline("synthetic:?fps=0&frames=4&size=48x48", colour, task="classify", preprocess=SPEC,
                 on_frame_result=lambda f, r: got.append((f.data.shape, r.top1.class_id)), metrics_every=0)  # fmt: skip
    assert p.run()["results"] == 4
    assert [shape for shape, _ in got] == [(48, 48, 3)] * 4 and all(0 <= c < 10 for _, c in got)


# ---- predict: what it takes, and its errors -----------------------------------------------------------------------
def test_predict_with_a_task_given_and_its_options(colour):
    red = np.zeros((40, 60, 3), np.uint8)
    red[..., 0] = 255
    r = colour.predict(red, task="classify", preprocess=SPEC, top_k=3)
    assert r.top1.class_id == 0 and len(r) == 3 and r.class_name[0] == "0"  # no labels: the index as text
    assert colour.predict(red, task="classify", preprocess=SPEC, labels=[f"c{i}" for i in range(10)]).top1 \
        .class_name == "c0"  # fmt: skip
    assert colour.predict([], task="classify", preprocess=SPEC) == []


def test_predict_without_a_task_names_task_keyword(colour):
    with pytest.raises(TaskError, match=r"colour\.onnx carries no task .*pass one: model\.predict\(image, task="):
        colour.predict(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(TaskError, match=r"unknown task 'pose' \(task=\); known tasks: classify, detect"):
        colour.predict(np.zeros((32, 32, 3), np.uint8), task="pose")


@pytest.mark.parametrize(
    "image, error, message",
    [
        (np.zeros((32, 32), np.uint8), InputMismatchError, r"image has shape \(32, 32\); expected \(H, W, 3\) RGB$"),
        (np.zeros((1, 32, 32, 3), np.uint8), InputMismatchError, r"\(a batch: pass a list of images\)"),
        (np.zeros((32, 32, 4), np.uint8), InputMismatchError, r"shape \(32, 32, 4\); expected \(H, W, 3\)"),
        (np.zeros((32, 32, 3), np.float32), InputMismatchError, r"image has dtype float32; expected uint8"),
        (42, InputMismatchError, r"image is a int; pass an \(H, W, 3\) uint8 RGB numpy array, a path"),
        ("/no/such/photo.png", PreprocessError, r"cannot read image '/no/such/photo.png': no such file"),
    ],
)  # fmt: skip
def test_predict_input_errors_name_what_is_wrong(colour, image, error, message):
    with pytest.raises(error, match=message):
        colour.predict(image, task="classify", preprocess=SPEC)


def test_predict_unreadable_files_and_the_item_of_a_list(colour, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(PreprocessError, match=r"cannot read image '.*notes\.png': not a decodable image"):
        colour.predict(text, task="classify", preprocess=SPEC)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(PreprocessError, match=r"empty\.jpg': empty file"):
        colour.predict(tmp_path / "empty.jpg", task="classify", preprocess=SPEC)
    with pytest.raises(PreprocessError, match=r"cannot read image '.*': Is a directory"):
        colour.predict(tmp_path, task="classify", preprocess=SPEC)
    ok = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(InputMismatchError, match=r"image 1 of the list has shape \(2, 2\)"):
        colour.predict([ok, np.zeros((2, 2), np.uint8)], task="classify", preprocess=SPEC)


def test_predict_on_an_audio_model_points_to_the_pipeline():
    _need("silero-vad")
    from edge_sdk.zoo_models import resolve_model

    with es.load(resolve_model("zoo:silero-vad").path) as vad, pytest.raises(TaskError, match="takes images"):
        vad.predict(np.zeros((32, 32, 3), np.uint8))


def test_import_edge_sdk_does_not_import_supervision():
    import subprocess
    import sys

    code = "import edge_sdk, sys; print('supervision' in sys.modules, 'edge_sdk.results' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
