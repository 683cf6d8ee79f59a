"""PreprocessSpec / AudioSpec: JSON round trip, resize modes, layouts, dtypes, errors, numpy vs OpenCV."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge_sdk import preprocess
from edge_sdk.errors import PreprocessError
from edge_sdk.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AudioSpec,
    PreprocessSpec,
    _resize_numpy,
    resize,
    spec_from_dict,
)

RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 256, (90, 160, 3), dtype=np.uint8)  # wide: 16:9

SPECS = [
    PreprocessSpec(size=(224, 224), mean=127.0, std=128.0),
    PreprocessSpec(size=(224, 224), resize="center_crop", crop_fraction=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    PreprocessSpec(size=(480, 640), resize="letterbox", pad_value=114, channels="BGR", layout="NHWC"),
    PreprocessSpec(size=(96, 96), dtype="int8", quant=(0.5, -3)),
    PreprocessSpec(size=(32, 48), dtype="float16", mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0)),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.resize}-{s.layout}-{s.dtype}")
def test_json_round_trip(spec):
    d = json.loads(json.dumps(spec.to_dict()))
    again = PreprocessSpec.from_dict(d)
    assert again == spec
    assert spec_from_dict(d) == spec
    np.testing.assert_array_equal(again.apply(IMG), spec.apply(IMG))


def test_scale_offset_is_mean_std():
    a = PreprocessSpec.from_dict({"size": [8, 8], "scale": 1 / 128, "offset": -127 / 128})
    b = PreprocessSpec(size=(8, 8), mean=127.0, std=128.0)
    np.testing.assert_allclose(a.apply(IMG), b.apply(IMG), atol=1e-6)
    x = b.apply(np.full((4, 4, 3), 255, np.uint8))
    np.testing.assert_allclose(x, (255 - 127) / 128)


def test_stretch_shape_and_values():
    spec = PreprocessSpec(size=(45, 80), mean=0.0, std=255.0)
    x = spec.apply(IMG)
    assert x.shape == (1, 3, 45, 80) and x.dtype == np.float32
    np.testing.assert_allclose(x[0].transpose(1, 2, 0), resize(IMG, (45, 80)) / 255.0, atol=1e-6)


def test_letterbox_pads_and_maps_back():
    spec = PreprocessSpec(size=(160, 160), resize="letterbox", pad_value=114, layout="NHWC", dtype="uint8")
    x = spec.apply(IMG)[0]
    g = spec.geometry(IMG.shape[:2])
    assert (g.scale_y, g.scale_x, g.offset_x) == (1.0, 1.0, 0.0) and g.offset_y == 35.0
    assert (x[:35] == 114).all() and (x[125:] == 114).all()
    np.testing.assert_array_equal(x[35:125], IMG)
    box = np.array([10.0, 45.0, 50.0, 85.0])  # in model pixels
    np.testing.assert_allclose(g.to_source(box), [10, 10, 50, 50])


def test_center_crop_resizes_shorter_side_then_crops():
    spec = PreprocessSpec(size=(64, 64), resize="center_crop", crop_fraction=0.5, layout="NHWC", dtype="uint8")
    x = spec.apply(IMG)[0]
    big = resize(IMG, (128, 228))  # shorter side 90 -> 64 / 0.5 = 128; 160 * 128 / 90 = 227.6
    np.testing.assert_array_equal(x, big[32:96, 82:146])
    g = spec.geometry(IMG.shape[:2])
    assert (g.offset_y, g.offset_x) == (-32.0, -82.0)


def test_layout_channels_dtype():
    base = PreprocessSpec(size=(20, 30))
    nchw = base.apply(IMG)
    nhwc = PreprocessSpec(size=(20, 30), layout="NHWC").apply(IMG)
    np.testing.assert_array_equal(nchw.transpose(0, 2, 3, 1), nhwc)
    bgr = PreprocessSpec(size=(20, 30), channels="BGR").apply(IMG)
    np.testing.assert_array_equal(bgr, nchw[:, ::-1])
    raw = PreprocessSpec(size=(20, 30), dtype="uint8").apply(IMG)
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, nchw.astype(np.uint8))
    shifted = PreprocessSpec(size=(20, 30), dtype="int8", mean=128.0).apply(IMG)  # the TFLite "x - 128"
    np.testing.assert_array_equal(shifted.astype(int), raw.astype(int) - 128)
    q = PreprocessSpec(size=(20, 30), dtype="uint8", mean=127.0, std=128.0, quant=(1 / 128, 127)).apply(IMG)
    np.testing.assert_array_equal(q, raw)
    assert PreprocessSpec(size=(20, 30), dtype="float16").apply(IMG).dtype == np.float16
    assert base.input_shape == (1, 3, 20, 30)


def test_grey_rgba_and_batch():
    spec = PreprocessSpec(size=(16, 16), layout="NHWC", dtype="uint8")
    grey = spec.apply(IMG[..., 0])
    assert (grey[..., 0] == grey[..., 1]).all() and grey.shape == (1, 16, 16, 3)
    rgba = np.concatenate([IMG, np.zeros_like(IMG[..., :1])], axis=2)
    np.testing.assert_array_equal(spec.apply(rgba), spec.apply(IMG))
    batch = spec.apply_batch([IMG, IMG[:50, :70], IMG[..., 0]])
    assert batch.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(batch[0], spec.apply(IMG)[0])


@pytest.mark.parametrize(
    "size", [(224, 224), (13, 7), (400, 700), (90, 161), (1, 1)], ids=lambda s: "x".join(map(str, s))
)
@pytest.mark.parametrize("channels", [3, 0], ids=["rgb", "grey"])
def test_numpy_resize_matches_opencv(size, channels):
    cv2 = pytest.importorskip("cv2")
    img = IMG if channels else IMG[..., 0]
    ref = cv2.resize(img, size[::-1], interpolation=cv2.INTER_LINEAR)
    ours = _resize_numpy(img, size)
    assert ours.shape == ref.shape and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - ref).max() <= 1  # OpenCV's uint8 path is fixed-point
    f = img.astype(np.float32)
    np.testing.assert_allclose(_resize_numpy(f, size), cv2.resize(f, size[::-1]), atol=1e-3)
    np.testing.assert_array_equal(resize(img, size, use_cv2=False), ours)


def test_works_without_opencv(hide_module, monkeypatch):
    code = (
        "import sys, numpy as np; from edge_sdk.preprocess import PreprocessSpec; "
        "img = np.arange(90 * 160 * 3, dtype=np.uint32).reshape(90, 160, 3).astype(np.uint8); "
        "x = PreprocessSpec(size=(50, 70), resize='center_crop').apply(img); "
        "print(x.shape, float(x.sum()), sys.modules.get('cv2'))"
    )
    env = {**os.environ, **hide_module("cv2")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    img = np.arange(90 * 160 * 3, dtype=np.uint32).reshape(90, 160, 3).astype(np.uint8)
    monkeypatch.setattr(preprocess, "_CV2", False)  # the same numpy path, in this process
    expected = PreprocessSpec(size=(50, 70), resize="center_crop").apply(img)
    assert out.split() == ["(1,", "3,", "50,", "70)", str(float(expected.sum())), "None"]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"resize": "stretch"}, "'size' [height, width] is required"),
        ({"size": [224]}, "size must be [height, width]"),
        ({"size": [224, 0]}, "size must be [height, width]"),
        ({"size": [8, 8], "resize": "squash"}, "resize 'squash' is not one of stretch, letterbox, center_crop"),
        ({"size": [8, 8], "layout": "CHW"}, "layout 'CHW' is not one of NCHW, NHWC"),
        ({"size": [8, 8], "channels": "RGBA"}, "channels 'RGBA' is not one of RGB, BGR"),
        ({"size": [8, 8], "dtype": "float64"}, "dtype 'float64' is not one of"),
        ({"size": [8, 8], "mean": [1, 2]}, "mean must be a number or a list of 3 numbers"),
        ({"size": [8, 8], "std": 0}, "contains 0"),
        ({"size": [8, 8], "crop_fraction": 1.5}, "crop_fraction must be in (0, 1]"),
        ({"size": [8, 8], "pad_value": 300}, "pad_value must be an integer 0..255"),
        ({"size": [8, 8], "quant": {"scale": 0.1, "zero_point": 0}}, "quant applies to uint8/int8 inputs"),
        ({"size": [8, 8], "dtype": "int8", "quant": {"scale": -1, "zero_point": 0}}, "quant must be (scale > 0"),
        ({"size": [8, 8], "mean": 1, "scale": 2}, "either mean/std or scale/offset"),
        ({"size": [8, 8], "colour": "RGB"}, "unknown field(s) colour; known fields: size"),
        ({"kind": "video", "size": [8, 8]}, "kind is 'video'"),
    ],
)
def test_bad_spec_says_what_is_wrong(data, message):
    with pytest.raises(PreprocessError) as e:
        PreprocessSpec.from_dict(data)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "image, message",
    [
        (IMG.astype(np.float32), "expected a uint8 image (0..255), got float32"),
        (IMG[None], "expected an image shaped (H, W), (H, W, 3) or (H, W, 4), got (1, 90, 160, 3)"),
        (IMG[..., :2], "got (90, 160, 2)"),
        ([[1, 2]], "expected a numpy image array, got list"),
    ],
)
def test_bad_image_says_what_is_wrong(image, message):
    with pytest.raises(PreprocessError) as e:
        PreprocessSpec(size=(8, 8)).apply(image)
    assert message in str(e.value)


def test_audio_frames_carry_context():
    spec = AudioSpec(sample_rate=16000, window=512, context=64)
    clip = np.arange(1200, dtype=np.float32) / 2000
    frames = list(spec.frames(clip))
    assert len(frames) == 3 and all(f.shape == (1, 576) and f.dtype == np.float32 for f in frames)
    np.testing.assert_array_equal(frames[0][0, :64], 0)
    np.testing.assert_array_equal(frames[0][0, 64:], clip[:512])
    np.testing.assert_array_equal(frames[1][0, :64], clip[448:512])  # the previous window's tail
    np.testing.assert_array_equal(frames[2][0, 64 + 176 :], 0)  # 1200 = 2 * 512 + 176: zero-padded
    pcm = (clip * 32768).astype(np.int16)
    np.testing.assert_allclose(next(spec.frames(pcm)), frames[0], atol=1 / 32768)
    assert spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sample_rate": 0}, "sample_rate must be an integer >= 1"),
        ({"context": -1}, "context must be an integer >= 0"),
        ({"dtype": "int16"}, "dtype must be float32 or float16"),
    ],
)
def test_bad_audio_spec(kwargs, message):
    with pytest.raises(PreprocessError, match=message.replace("(", r"\(")):
        AudioSpec(**kwargs)
    with pytest.raises(PreprocessError, match="unknown field"):
        AudioSpec.from_dict({"kind": "audio", "rate": 8000})
