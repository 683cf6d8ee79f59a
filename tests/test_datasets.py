"""Real-photo calibration / held-out crops: deterministic, in bounds, and never shared between the splits."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from converters import datasets
from converters.zoo import base as zoo_base
from edge_sdk.errors import ZooError, ZooPackageMissingError

pytest.importorskip("skimage")
pytest.importorskip("sklearn")


def test_named_images_are_the_package_photos():
    import skimage.data

    np.testing.assert_array_equal(datasets.named_image("chelsea"), skimage.data.chelsea())
    np.testing.assert_array_equal(datasets.named_image("camera")[..., 1], skimage.data.camera())
    assert datasets.named_image("china").shape == (427, 640, 3)
    assert datasets.available_photos() == datasets.photo_names()
    img = datasets.named_image("coffee")
    img[:] = 0  # a fresh copy: the cached photo is untouched
    assert datasets.named_image("coffee").any()


def test_named_image_unknown_and_missing_package(monkeypatch):
    with pytest.raises(ZooError, match="no sample image named 'lena'; known: astronaut, chelsea"):
        datasets.named_image("lena")
    real = zoo_base.find_package_dir
    monkeypatch.setattr(datasets, "find_package_dir", lambda m: None if m == "sklearn" else real(m))
    datasets._load_photo.cache_clear()
    try:
        with pytest.raises(ZooPackageMissingError, match=r"pip install \"edge-sdk\[zoo\]\" scikit-learn"):
            datasets.named_image("flower")
        assert "flower" not in datasets.available_photos()
        assert {w[0] for w in datasets.crop_windows("calibration", 8)} == set(datasets.photo_names()[:6])
        monkeypatch.setattr(datasets, "find_package_dir", lambda m: None)
        with pytest.raises(ZooPackageMissingError, match="sample images needs the pip package 'scikit-image'"):
            datasets.calibration_images(2)
    finally:
        datasets._load_photo.cache_clear()


def test_crops_are_deterministic_and_prefix_stable():
    a = datasets.calibration_images(12, 64)
    assert a.shape == (12, 64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, datasets.calibration_images(12, 64))
    np.testing.assert_array_equal(a[:5], datasets.calibration_images(5, 64))
    assert not np.array_equal(a, datasets.calibration_images(12, 64, seed=1))
    b = datasets.held_out_images(4, (48, 80), photos=["chelsea"])
    assert b.shape == (4, 48, 80, 3)
    assert {w[0] for w in datasets.crop_windows("held_out", 4, photos=["chelsea"])} == {"chelsea"}


def test_windows_in_bounds_and_splits_disjoint():
    for seed in (0, 7):
        calib = datasets.crop_windows("calibration", 200, seed=seed)
        held = datasets.crop_windows("held_out", 200, seed=seed)
        for split, parity in ((calib, 0), (held, 1)):
            for name, top, left, h, w, _flip in split:
                H, W = datasets.named_image(name).shape[:2]
                assert top >= 0 and left >= 0 and top + h <= H and left + w <= W and min(h, w) >= 16
                assert left % 2 == parity
        assert not {w[:5] for w in calib} & {w[:5] for w in held}
    flips = [w[5] for w in calib]
    assert 0.3 < np.mean(flips) < 0.7


def test_no_held_out_crop_equals_a_calibration_crop():
    def digests(images: np.ndarray) -> set[str]:
        return {hashlib.sha256(im.tobytes()).hexdigest() for im in images}

    calib = datasets.calibration_images(128, 64)
    held = datasets.held_out_images(128, 64)
    assert len(digests(calib)) == 128 and len(digests(held)) == 128
    assert not digests(calib) & digests(held)
    # not even nearly equal: every held-out crop differs from every calibration crop
    c = calib.reshape(128, -1).astype(np.float32)
    for h in held.reshape(128, -1).astype(np.float32):
        assert np.abs(c - h).mean(axis=1).min() > 1.0


def test_write_image_folder(tmp_path):
    from PIL import Image

    images = datasets.calibration_images(3, (40, 60))
    paths = datasets.write_image_folder(tmp_path / "calib", images)
    assert [p.name for p in paths] == ["img_0000.png", "img_0001.png", "img_0002.png"]
    assert sorted(p.name for p in (tmp_path / "calib").iterdir()) == [p.name for p in paths]  # no temp files
    np.testing.assert_array_equal(np.asarray(Image.open(paths[1])), images[1])
    jpgs = datasets.write_image_folder(tmp_path / "j", images, fmt="jpg", prefix="x")
    back = np.asarray(Image.open(jpgs[0]))
    assert back.shape == (40, 60, 3) and np.abs(back.astype(int) - images[0]).mean() < 8
    with pytest.raises(ZooError, match="image format 'gif' is not png or jpg"):
        datasets.write_image_folder(tmp_path, images, fmt="gif")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: datasets.calibration_images(0), "positive integer, got 0"),
        (lambda: datasets.held_out_images(2, photos=["mars"]), "unknown photo(s) mars"),
        (lambda: datasets.calibration_images(2, size=0), "must be positive"),
        (lambda: datasets.crop_windows("test", 2), "unknown split 'test'"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ZooError) as e:
        call()
    assert message in str(e.value)
