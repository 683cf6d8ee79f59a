"""What the pipeline needs to know about a model besides its tensors: preprocessing, labels, task.

A converted model carries them inside the file, else in a ``manifest.json`` next to it that lists it (both
written by ``edge-sdk convert``, read by ``edge_sdk.metadata``); otherwise the input tensor's shape gives the
size and layout, pixels are scaled to 0..1, and a warning names the flags that say otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge_sdk.errors import PreprocessError
from edge_sdk.metadata import OVERRIDE_FLAGS, metadata_of, read_manifest  # noqa: F401 - read_manifest re-exported
from edge_sdk.preprocess import AnySpec, PreprocessSpec

log = logging.getLogger("edge_sdk.pipeline")


def model_preprocess(model: Any) -> AnySpec:
    """The model's stored preprocessing (embedded, else a manifest listing it), else one guessed from its input."""
    meta = metadata_of(model)
    spec = meta.preprocess_spec() if meta is not None else None
    if spec is not None:
        if isinstance(spec, PreprocessSpec):
            spec = _match_tensor(spec, model)
        return spec
    return guess_preprocess(model)


def model_task(model: Any) -> str:
    """The task the model carries (its metadata, or a manifest listing it), else ``classify`` (also for an object
    of the user's that has neither metadata nor a path)."""
    try:
        meta = metadata_of(model)
    except AttributeError:
        meta = None
    return getattr(meta, "task", None) or "classify"


def model_labels(model: Any) -> list[str] | None:
    """The model's stored class names (a named set like "imagenet-1k", or its own list), or None."""
    meta = metadata_of(model)
    return meta.label_names() if meta is not None else None


def guess_preprocess(model: Any, *, warn: bool = True) -> PreprocessSpec:
    """A spec from the input tensor alone: NCHW if dim 1 is 3 else NHWC, RGB, x / 255 (float) or raw (int);
    ``warn``: log that it is a guess, naming the flags that override it."""
    spec = model.inputs[0]
    shape = list(spec.shape)
    if len(shape) != 4:
        raise PreprocessError(
            f"model input '{spec.name}' has shape {spec.shape_str()}, not an image batch (N, 3, H, W) or (N, H, W, 3); "
            "give the pipeline a preprocess= spec or use the task that fits this model"
        )
    nchw = shape[1] == 3
    h, w = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
    if h is None or w is None:
        raise PreprocessError(
            f"model input '{spec.name}' has dynamic height/width {spec.shape_str()}; give the pipeline "
            "preprocess=PreprocessSpec(size=(h, w), ...) or fix the shape with `edge-sdk reshape`"
        )
    dtype = np.dtype(spec.dtype).name
    raw = dtype in ("uint8", "int8")
    if warn:
        log.warning("%s carries no preprocessing (no edge_sdk metadata inside, no manifest listing it): guessed "
                    "%s, %s, %dx%d, %s; if the model expects otherwise, set it with %s (edge-sdk run) or "
                    "preprocess=PreprocessSpec(...)", model.path.name, "NCHW" if nchw else "NHWC", "RGB", h, w,
                    "raw pixels" if raw else "pixels scaled to 0..1 (x / 255)", OVERRIDE_FLAGS)  # fmt: skip
    if raw:
        return PreprocessSpec(size=(h, w), layout="NCHW" if nchw else "NHWC", dtype=dtype, mean=0.0, std=1.0)
    return PreprocessSpec(size=(h, w), layout="NCHW" if nchw else "NHWC", mean=0.0, std=255.0,
                          dtype=dtype if dtype in ("float32", "float16") else "float32")  # fmt: skip


def _match_tensor(spec: PreprocessSpec, model: Any) -> PreprocessSpec:
    """The stored spec with layout and size taken from the loaded tensor (a TFLite copy is NHWC)."""
    shape = list(model.inputs[0].shape)
    if len(shape) != 4:
        return spec
    d = spec.to_dict()
    if shape[1] == 3 and shape[3] != 3:
        d["layout"] = "NCHW"
        hw = shape[2:4]
    elif shape[3] == 3:
        d["layout"] = "NHWC"
        hw = shape[1:3]
    else:
        return spec
    if all(isinstance(v, int) for v in hw):
        d["size"] = list(hw)
    return PreprocessSpec.from_dict(d)
