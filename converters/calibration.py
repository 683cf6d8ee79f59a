"""Calibration data that cannot silently be wrong.

Accepted: a folder of images, a ``.npy``/``.npz`` of model-ready tensors, a folder
of WAV files, ``synthetic`` (explicit only; the result is marked synthetic), or
in-memory arrays from Python. Images go through a :class:`PreprocessSpec` that is
stored with the converted model, so inference uses the same one.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_sdk.errors import CalibrationError
from edge_sdk.tensor_spec import TensorSpec

log = logging.getLogger("edge_sdk")
RECOMMENDED_SAMPLES = 100
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: what the data being loaded is for, as errors name it: the int8 scales' data or the validation data
ROLES = {"calibration": "calibration", "held-out": "held-out (validation)"}
_ROLE: contextvars.ContextVar[str] = contextvars.ContextVar("calibration_role", default="calibration")


def _role() -> str:
    return ROLES[_ROLE.get()]


@dataclass
class CalibrationSet:
    """Samples in the source model's input order, plus where they came from."""

    samples: list[list[np.ndarray]]
    kind: str
    origin: str
    synthetic: bool = False
    notes: list[str] = field(default_factory=list)
    input_names: list[str] = field(default_factory=list)  # the source's, in sample order
    groups: list[int] = field(default_factory=list)  # per sample, which recording it came from (audio)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for sample in self.samples:
            for x in sample:
                h.update(np.ascontiguousarray(x).tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "origin": self.origin,
            "count": len(self.samples),
            "synthetic": self.synthetic,
            "sha256": self.sha256,
            "notes": self.notes,
        }


def _fit(x: np.ndarray, spec: TensorSpec, what: str) -> np.ndarray:
    want = spec.shape
    if x.ndim == len(want) - 1:
        x = x[None]
    if x.ndim != len(want) or any(d is not None and d != g for d, g in zip(want, x.shape)):
        raise CalibrationError(
            f"{_role()} {what} has shape {list(x.shape)} but input '{spec.name}' expects {spec.shape_str()}; "
            "check the preprocessing size and layout (or --input-shape)"
        )
    return x.astype(spec.dtype) if spec.dtype.kind == "f" else x


def load_calibration(
    calib: Any,
    inputs: Sequence[TensorSpec],
    *,
    preprocess: Any = None,
    limit: int = 300,
    seed: int = 0,
    role: str = "calibration",
) -> CalibrationSet:
    """Turn what the user passed as ``calibration`` into a :class:`CalibrationSet` for ``inputs``. ``role``:
    ``calibration`` (int8 scales are fitted to it: fewer than 100 samples are warned about) or ``held-out``
    (validation data, loaded the same way); errors name which."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}, got {role!r}")
    token = _ROLE.set(role)
    try:
        cs = calib if isinstance(calib, CalibrationSet) else _load(calib, inputs, preprocess, limit, seed)
    finally:
        _ROLE.reset(token)
    return cs if cs.input_names else replace(cs, input_names=[s.name for s in inputs])


def _load(calib: Any, inputs: Sequence[TensorSpec], preprocess: Any, limit: int, seed: int) -> CalibrationSet:
    if isinstance(calib, str) and calib == "synthetic":
        return _synthetic(inputs, limit, seed)
    if isinstance(calib, str) and (calib == "photos" or calib.startswith("photos:")):
        return _checked(_from_sample_photos(calib, inputs, preprocess, limit))
    if isinstance(calib, (list, tuple)) and calib and isinstance(calib[0], np.ndarray):
        samples = [[_fit(np.asarray(x), inputs[0], "array")] for x in calib[:limit]]
        return _checked(CalibrationSet(samples, "arrays", "python"))
    if isinstance(calib, np.ndarray):
        return _checked(CalibrationSet([[_fit(x, inputs[0], "array")] for x in calib[:limit]], "arrays", "python"))
    path = Path(calib)
    if not path.exists():
        raise CalibrationError(f"{_role()} data not found: {path}")
    if path.is_file() and path.suffix in (".npy", ".npz"):
        return _checked(_from_numpy(path, inputs, limit))
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        wavs = sorted(p for p in path.iterdir() if p.suffix.lower() == ".wav")
        if images:
            return _checked(_from_images(images[:limit], path, inputs, preprocess))
        if wavs:
            return _checked(_from_wavs(wavs, path, inputs, limit, preprocess))
        raise CalibrationError(f"{_role()} folder {path} has no images ({', '.join(IMAGE_SUFFIXES)}) or .wav files")
    raise CalibrationError(f"{_role()} data {path} is not a folder, .npy or .npz file, or 'synthetic'")


def _checked(cs: CalibrationSet) -> CalibrationSet:
    if not cs.samples:
        raise CalibrationError(f"{_role()} data {cs.origin} holds no samples")
    if len(cs.samples) < RECOMMENDED_SAMPLES and _ROLE.get() == "calibration":
        note = (
            f"only {len(cs.samples)} calibration samples; {RECOMMENDED_SAMPLES}+ are recommended for stable int8 scales"
        )
        cs.notes.append(note)
        log.warning(note)
    return cs


def _synthetic(inputs: Sequence[TensorSpec], n: int, seed: int) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    n = min(n, 32)
    samples = [[rng.standard_normal(s.concrete_shape()).astype(s.dtype) for s in inputs] for _ in range(n)]
    cs = CalibrationSet(samples, "synthetic", "synthetic", synthetic=True)
    cs.notes.append("synthetic random calibration: int8 scales do not reflect real data")
    log.warning(cs.notes[-1])
    return cs


def _from_sample_photos(calib: str, inputs: Sequence[TensorSpec], preprocess: Any, limit: int) -> CalibrationSet:
    """``photos[:N]``: crops and flips of the real sample photos shipped by scikit-image / scikit-learn,
    from the calibration split (never used for validation)."""
    from converters import datasets

    try:
        n = int(calib.partition(":")[2] or RECOMMENDED_SAMPLES * 3)
    except ValueError:
        raise CalibrationError(f"--calib {calib!r}: expected photos or photos:N (N samples)") from None
    if preprocess is None:
        raise CalibrationError("--calib photos needs a preprocessing spec (--size/--mean/--std, or a zoo: model)")
    if not datasets.available_photos():
        raise CalibrationError('--calib photos needs scikit-image or scikit-learn: pip install "edge-sdk[zoo]"')
    images = datasets.calibration_images(min(n, limit), preprocess.size)
    samples = [[_fit(preprocess.apply(im), inputs[0], "photo crop")] for im in images]
    return CalibrationSet(samples, "photos", f"sample photo crops ({', '.join(datasets.available_photos())})")


def _from_numpy(path: Path, inputs: Sequence[TensorSpec], limit: int) -> CalibrationSet:
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise CalibrationError(f"{path.name} does not load as numpy data without pickle: {e}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        missing = [s.name for s in inputs if s.name not in data.files]
        if missing and len(inputs) == 1 and len(data.files) == 1:
            arrays = {inputs[0].name: data[data.files[0]]}
        elif missing:
            raise CalibrationError(f"{path.name} lacks arrays for input(s) {missing}; it has {data.files}")
        else:
            arrays = {s.name: data[s.name] for s in inputs}
    else:
        if len(inputs) != 1:
            raise CalibrationError(f"model has {len(inputs)} inputs; pass a .npz with one array per input name")
        arrays = {inputs[0].name: data}
    counts = {name: len(a) if np.ndim(a) else 0 for name, a in arrays.items()}
    if len(set(counts.values())) > 1:  # samples are paired by index: unequal lengths would drop some silently
        raise CalibrationError(f"{path.name}: its arrays hold different numbers of samples {counts}; sample i of "
                               "every input must go together, so give each array the same length (axis 0)")  # fmt: skip
    for name, a in arrays.items():
        if a.dtype.kind in "fc" and a.size and not np.isfinite(a).all():
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            raise CalibrationError(f"{path.name}: array '{name}' holds {bad} NaN or infinite value(s); "
                                   "int8 scales cannot be fitted to them: clean or drop those samples")  # fmt: skip
    n = min(counts.values())
    samples = [[_fit(arrays[s.name][i], s, f"array {path.name}[{i}]") for s in inputs] for i in range(min(n, limit))]
    _warn_raw_pixels(arrays, inputs, path.name)
    return CalibrationSet(samples, "numpy", str(path))


def _warn_raw_pixels(arrays: dict[str, np.ndarray], inputs: Sequence[TensorSpec], name: str) -> None:
    """uint8 data for a float input is most often raw pixels for a model that expects them normalised: the int8
    scales then fit 0..255 while the model sees -1..1 in use. Said once (it may also be right: a model that takes
    raw pixels and normalises inside)."""
    if _ROLE.get() != "calibration":
        return
    for spec in inputs:
        a = arrays.get(spec.name)
        if a is not None and a.dtype == np.uint8 and spec.dtype.kind == "f":
            log.warning("%s: array '%s' is uint8 (0..255) but input '%s' is %s: if the model expects normalised "
                        "values, calibrate with them normalised the same way (or give an image folder with "
                        "--mean/--std); the int8 scales fit the data given",
                        name, spec.name, spec.name, spec.dtype)  # fmt: skip


def decode_image(path: Path) -> np.ndarray:
    """uint8 HWC RGB pixels of an image file; CalibrationError if it does not decode."""
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CalibrationError(f"{_role()} image {path} does not decode (corrupt or not an image)")
        return bgr[:, :, ::-1].copy()
    try:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except ImportError:
        raise CalibrationError('decoding images needs OpenCV: pip install "edge-sdk[camera]"') from None
    except Exception as e:
        raise CalibrationError(f"{_role()} image {path} does not decode: {e}") from None


def _from_images(files: list[Path], folder: Path, inputs: Sequence[TensorSpec], preprocess: Any) -> CalibrationSet:
    if len(inputs) != 1:
        raise CalibrationError(f"{_role()} images need a single-input model; this one has {len(inputs)} inputs")
    if preprocess is None:
        raise CalibrationError(
            f"{_role()} images need a preprocessing spec (size, normalisation, channel order, layout): pass "
            "--size with --mean/--std (and --resize, --channel-order, --layout), or convert a zoo: model (it has one)"
        )
    samples = [[_fit(preprocess.apply(decode_image(f)), inputs[0], f"image {f.name}")] for f in files]
    return CalibrationSet(samples, "images", str(folder))


def _from_wavs(
    files: list[Path], folder: Path, inputs: Sequence[TensorSpec], limit: int, preprocess: Any = None
) -> CalibrationSet:
    """Windows of every WAV, resampled and framed by the model's AudioSpec when it has one.

    ``groups`` records which file each window came from, so a stateful model's state can be
    carried across one file's windows (see :mod:`converters.stateful`).
    """
    from edge_sdk.audio.resample import resample
    from edge_sdk.audio.wav import read_wav
    from edge_sdk.errors import AudioFileError
    from edge_sdk.preprocess import AudioSpec

    spec = inputs[0]
    if isinstance(preprocess, AudioSpec):
        audio_spec = preprocess
    elif spec.shape[-1] is None:
        raise CalibrationError(f"input '{spec.name}' has a dynamic last dim; pass --input-shape to fix the window")
    else:
        audio_spec = AudioSpec(window=int(spec.shape[-1]))
    samples: list[list[np.ndarray]] = []
    groups: list[int] = []
    for k, f in enumerate(files):
        try:
            audio, rate = read_wav(f)
        except AudioFileError as e:
            raise CalibrationError(f"{_role()} audio {f} does not decode: {e}") from None
        if isinstance(preprocess, AudioSpec) and rate != audio_spec.sample_rate:
            audio = resample(audio, rate, audio_spec.sample_rate)
        for frame in audio_spec.frames(audio):
            shape = spec.concrete_shape()
            x = frame.reshape(shape) if frame.size == int(np.prod(shape)) else frame
            samples.append([_fit(x, spec, f"audio window of {f.name}")])
            groups.append(k)
            if len(samples) >= limit:
                break
        if len(samples) >= limit:
            break
    extra = [np.zeros(s.concrete_shape(), s.dtype) for s in inputs[1:]]
    return CalibrationSet([s + extra for s in samples], "wav", str(folder), groups=groups)
