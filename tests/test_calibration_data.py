"""The user's own calibration arrays: what cannot be right is refused with why, what is probably wrong is said."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from converters.calibration import load_calibration
from edge_sdk.errors import CalibrationError
from edge_sdk.tensor_spec import TensorSpec

IMAGE = TensorSpec("image", (None, 3, 8, 8), np.dtype(np.float32))
EXTRA = TensorSpec("extra", (None, 5), np.dtype(np.float32))


def test_arrays_of_unequal_length_are_refused_not_cut(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, image=np.zeros((40, 3, 8, 8), np.float32), extra=np.zeros((30, 5), np.float32))
    with pytest.raises(CalibrationError, match=r"two.npz: its arrays hold different numbers of samples "
                                               r"\{'image': 40, 'extra': 30\}"):  # fmt: skip
        load_calibration(path, [IMAGE, EXTRA])


def test_nan_in_the_data_is_named(tmp_path):
    x = np.random.default_rng(0).standard_normal((10, 3, 8, 8)).astype(np.float32)
    x[3, 0, 0, :2] = np.nan
    np.save(tmp_path / "calib.npy", x)
    with pytest.raises(CalibrationError, match=r"calib.npy: array 'image' holds 2 NaN or infinite value\(s\)"):
        load_calibration(tmp_path / "calib.npy", [IMAGE])


def test_raw_pixels_for_a_float_input_are_warned_about_in_calibration_only(tmp_path, caplog):
    np.save(tmp_path / "pixels.npy", np.full((4, 3, 8, 8), 200, np.uint8))
    with caplog.at_level(logging.WARNING, logger="edge_sdk"):
        cs = load_calibration(tmp_path / "pixels.npy", [IMAGE])
    assert cs.samples[0][0].dtype == np.float32
    said = [r.getMessage() for r in caplog.records if "uint8 (0..255)" in r.getMessage()]
    assert said == ["pixels.npy: array 'image' is uint8 (0..255) but input 'image' is float32: if the model expects "
                    "normalised values, calibrate with them normalised the same way (or give an image folder with "
                    "--mean/--std); the int8 scales fit the data given"]  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge_sdk"):
        load_calibration(tmp_path / "pixels.npy", [IMAGE], role="held-out")
    assert not [r for r in caplog.records if "uint8" in r.getMessage()]
