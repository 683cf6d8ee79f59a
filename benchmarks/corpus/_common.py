"""Shared pieces of the conversion corpus: the Case a builder returns, realistic inputs, BatchNorm statistics.

Inputs are real data of each kind: photo crops from :mod:`converters.datasets` (calibration split for
calibration and BatchNorm statistics, held-out split for validation), speech spoken by espeak-ng (different
sentences for calibration and validation), and token ids inside the model's vocabulary with attention masks
of varied lengths.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_IMAGES = 16  # photo crops used to set BatchNorm running statistics
BN_SEED = 7  # their crops are calibration-split windows with another seed: never held-out crops

CALIB_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Turn the volume down and open the front door.",
    "Yesterday it rained for hours in the valley.",
    "Call my sister and tell her I am running late.",
)
HELD_OUT_SENTENCES = (
    "Please switch the kitchen lights off before midnight.",
    "Seven bright ships sailed north across the cold water.",
)


@dataclass
class Case:
    """One architecture ready for ``converters.convert``: the model and the data to calibrate and validate with."""

    model: Any  # torch.nn.Module, a model file path (.keras, .pt2), or "zoo:NAME"
    example_inputs: tuple[Any, ...] | None
    calibration: Any  # arrays (single input), an .npz path (one array per input name), a WAV folder, "photos:N"
    held_out: Any  # same forms; None: the source's own default (zoo models)
    kind: str  # what the outputs are: "classifier", "detector", "segmenter", "encoder", "audio"
    notes: str = ""
    input_desc: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


#: a builder makes a Case in ``workdir`` with ``n_calib`` calibration and ``n_held`` validation samples
Builder = Callable[[Path, int, int], Case]


#: torchvision, timm and ultralytics live here, outside .venv (``make`` installs them with --no-deps): the
#: registry's torchvision is a CUDA build whose presence in .venv breaks other imports (transformers, timm)
CORPUS_LIBS = Path(os.environ.get("EDGE_SDK_CORPUS_LIBS") or Path(__file__).resolve().parents[2] / ".corpus-libs")


def install_torchvision_shim() -> None:
    """Make torchvision, timm and ultralytics importable: put :data:`CORPUS_LIBS` first on ``sys.path``, and
    let ``import torchvision`` work when its C++ ops cannot load.

    The torchvision wheel on this machine is the CUDA build (``0.28.0+cu130``): its ``_C.so`` needs
    ``libc10_cuda.so`` and cannot load beside CPU torch, and ``torchvision/_meta_registrations.py`` then
    fails at import registering fake kernels for ops that do not exist. Declaring the op schemas (without
    kernels) lets the import finish; the corpus models never call these ops (no NMS/RoIAlign in the
    converted graphs), and a call would fail loudly with 'no kernel', never silently.
    """
    if CORPUS_LIBS.is_dir() and str(CORPUS_LIBS) not in sys.path:
        sys.path.insert(0, str(CORPUS_LIBS))
    import importlib.util

    import torch

    if _SHIM_LIBS or "torchvision" in sys.modules:
        return
    add_corpus_libs()
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return  # not installed: the builders that need it fail with ModuleNotFoundError
    so = Path(next(iter(spec.submodule_search_locations))) / "_C.so"
    try:
        torch.ops.load_library(str(so))
        return  # a torchvision built for this torch: nothing to do
    except (OSError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")
    roi = "float spatial_scale, SymInt pooled_height, SymInt pooled_width"
    dims = "SymInt batch_size, SymInt channels, SymInt height, SymInt width"
    conv = ("SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, "
            "SymInt groups, SymInt offset_groups, bool use_mask")  # fmt: skip
    for schema in (
        "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
        "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
        f"roi_align(Tensor input, Tensor rois, {roi}, int sampling_ratio, bool aligned) -> Tensor",
        f"_roi_align_backward(Tensor grad, Tensor rois, {roi}, {dims}, int sampling_ratio, bool aligned) -> Tensor",
        f"roi_pool(Tensor input, Tensor rois, {roi}) -> (Tensor, Tensor)",
        f"_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, {roi}, {dims}) -> Tensor",
        f"ps_roi_align(Tensor input, Tensor rois, {roi}, int sampling_ratio) -> (Tensor, Tensor)",
        f"_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, {roi}, int sampling_ratio, "
        f"{dims}) -> Tensor",
        f"ps_roi_pool(Tensor input, Tensor rois, {roi}) -> (Tensor, Tensor)",
        f"_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, {roi}, {dims}) -> Tensor",
        f"deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, {conv}) -> Tensor",
        f"_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor mask, "
        f"Tensor bias, {conv}) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    ):
        lib.define(schema)
    _SHIM_LIBS.append(lib)  # the definitions live as long as the Library object


_SHIM_LIBS: list[Any] = []

#: torchvision, timm and ultralytics live here (``make corpus-libs``), not in .venv: the registry's torchvision is
#: a CUDA build whose presence in .venv breaks ``transformers`` model imports for every other process
CORPUS_LIBS = Path(__file__).resolve().parents[2] / ".corpus-libs"


def add_corpus_libs() -> None:
    """Put the corpus-only libraries on ``sys.path`` (once), after .venv's own packages."""
    if CORPUS_LIBS.is_dir() and str(CORPUS_LIBS) not in sys.path:
        sys.path.append(str(CORPUS_LIBS))


# ---- images ----------------------------------------------------------------------------------
def photos(split: str, n: int, size: int | tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` uint8 (n, h, w, 3) RGB photo crops of ``split`` ("calibration" or "held_out")."""
    from converters import datasets

    fn = datasets.calibration_images if split == "calibration" else datasets.held_out_images
    return fn(n, size, seed=seed)


def normalise(
    images: np.ndarray,
    *,
    mean: tuple[float, ...] | float = IMAGENET_MEAN,
    std: tuple[float, ...] | float = IMAGENET_STD,
    scale: float = 1 / 255.0,
    layout: str = "NCHW",
    bgr: bool = False,
) -> np.ndarray:
    """float32 ``(images * scale - mean) / std`` in ``layout``; ``bgr`` flips the channel order first."""
    x = images[..., ::-1] if bgr else images
    x = (x.astype(np.float32) * scale - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if layout == "NCHW" else x, dtype=np.float32)


def image_sets(
    n_calib: int, n_held: int, size: int | tuple[int, int], **norm: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(BatchNorm-statistics batch, calibration batch, held-out batch), each normalised the same way."""
    bn = normalise(photos("calibration", BN_IMAGES, size, seed=BN_SEED), **norm)
    calib = normalise(photos("calibration", n_calib, size), **norm)
    return bn, calib, normalise(photos("held_out", n_held, size), **norm)


# ---- BatchNorm statistics ----------------------------------------------------------------------
def set_torch_bn_stats(model: Any, batches: list[tuple[Any, ...]]) -> Any:
    """Reset every BatchNorm's running statistics and set them from ``batches`` (cumulative average:
    ``momentum=None``), then put the model in eval mode. Other layers are untouched."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    if bns:
        model.train()
        with torch.no_grad():
            for args in batches:
                model(*[torch.as_tensor(a) for a in args])
    return model.eval()


def set_keras_bn_stats(model: Any, batch: np.ndarray) -> None:
    """Set every Keras BatchNormalization's moving statistics to those of ``batch`` (momentum 0, one
    training-mode pass)."""
    import keras

    bns = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [b.momentum for b in bns]
    for b in bns:
        b.momentum = 0.0
    model(batch, training=True)
    for b, m in zip(bns, saved):
        b.momentum = m


def randomise_zero_layers(model: Any, std: float = 0.02) -> list[str]:
    """Give every Linear / Conv layer whose weights are all zero normal(0, ``std``) weights; their names.

    Some architectures start a layer at zero (torchvision's ViT classifier head, zero-init residual branches),
    which a trained model never has: with random weights elsewhere the model's output would then be a
    constant, and every conversion would agree with it trivially (cosine 1.0 of two zero vectors)."""
    import torch

    changed = []
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)) and w is not None and not w.any():
            with torch.no_grad():
                torch.nn.init.normal_(w, std=std)
            changed.append(name)
    return changed


def torch_image_case(
    model: Any, n_calib: int, n_held: int, size: int | tuple[int, int], kind: str, notes: str = "", **norm: Any
) -> Case:
    """A torchvision/timm-style image model (NCHW float input) with BN statistics from real photos (and no layer
    left at a zero initialisation: :func:`randomise_zero_layers`)."""
    import torch

    zeroed = randomise_zero_layers(model)
    if zeroed:
        notes = f"{notes}; zero-initialised {', '.join(zeroed)} given random weights".lstrip("; ")
    bn, calib, held = image_sets(n_calib, n_held, size, **norm)
    set_torch_bn_stats(model, [(bn[i : i + 8],) for i in range(0, len(bn), 8)])
    if kind == "classifier":
        notes = f"{notes}; {fit_photo_heads(model, size, **norm)}".lstrip("; ")
    hw = (size, size) if isinstance(size, int) else size
    return Case(model, (torch.from_numpy(held[:1]),), calib, held, kind, notes, f"image 1x3x{hw[0]}x{hw[1]}")


def fit_photo_heads(model: Any, size: int | tuple[int, int], **norm: Any) -> str:
    """Fit a torch classifier's logits layer(s) as a linear probe on photo crops (:mod:`.heads`); a note."""
    from .heads import HEAD_CROPS, HEAD_SEED, fit_torch_heads, photo_labels

    crops = normalise(photos("calibration", HEAD_CROPS, size, seed=HEAD_SEED), **norm)
    fitted = fit_torch_heads(model, crops, photo_labels(HEAD_CROPS))
    return f"head {', '.join(fitted)} fitted on photos" if fitted else ""


# ---- speech ------------------------------------------------------------------------------------
@functools.cache
def _spoken(sentence: str) -> np.ndarray:
    from edge_sdk.audio.default_media import speak

    x = speak(sentence)
    return (x * (0.5 / max(1e-6, float(np.abs(x).max())))).astype(np.float32)


def speech_windows(split: str, n: int, seconds: float, seed: int = 0) -> np.ndarray:
    """``n`` (n, samples) float32 16 kHz windows of espeak-ng speech in low noise; the calibration and
    held-out splits speak different sentences."""
    sentences = CALIB_SENTENCES if split == "calibration" else HELD_OUT_SENTENCES
    rng = np.random.default_rng([seed, 0 if split == "calibration" else 1])
    width = int(round(seconds * 16000))
    out = np.empty((n, width), np.float32)
    for i in range(n):
        clip = _spoken(sentences[i % len(sentences)])
        padded = np.concatenate([np.zeros(width // 4, np.float32), clip, np.zeros(width // 4, np.float32)])
        start = int(rng.integers(0, max(1, len(padded) - width)))
        w = padded[start : start + width]
        out[i, : len(w)] = w
        out[i, len(w) :] = 0
        out[i] += rng.standard_normal(width).astype(np.float32) * 0.003
    return out


def log_mels(windows: np.ndarray, **spec: Any) -> np.ndarray:
    """(n, frames, n_mels) log-mel features of each window (``edge_sdk.audio.logmel``)."""
    from edge_sdk.audio.logmel import LogMelSpec

    fn = LogMelSpec(**spec)
    return np.stack([fn(w) for w in windows]).astype(np.float32)


# ---- token ids ---------------------------------------------------------------------------------
def token_batch(
    n: int, seq_len: int, vocab_size: int, seed: int, special: tuple[int, int, int] = (101, 102, 0)
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask), int64 (n, seq_len): ids inside the vocabulary (first 1000 rows, often reserved, skipped),
    a [CLS]-like first and [SEP]-like last token, real lengths from 8 to seq_len, padding after them."""
    cls, sep, pad = special
    rng = np.random.default_rng(seed)
    ids = np.full((n, seq_len), pad, np.int64)
    mask = np.zeros((n, seq_len), np.int64)
    for i in range(n):
        length = int(rng.integers(8, seq_len + 1))
        ids[i, :length] = rng.integers(min(1000, vocab_size // 2), vocab_size, length)
        ids[i, 0], ids[i, length - 1] = cls, sep
        mask[i, :length] = 1
    return ids, mask


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write the per-input arrays ``convert`` reads for a multi-input model (names: ``input_0``, ...)."""
    np.savez(path, **arrays)
    return path
