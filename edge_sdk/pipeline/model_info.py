"""What the pipeline needs to know about a model besides its tensors: preprocessing, labels, task.

A converted model carries them in the ``manifest.json`` next to it (written by ``edge-sdk convert``);
otherwise the input tensor's shape gives the size and layout, and pixels are scaled to 0..1.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.cache import FULL_HASH_BYTES, sha256_file
from edge_sdk.errors import PreprocessError
from edge_sdk.preprocess import AnySpec, PreprocessSpec, spec_from_dict

log = logging.getLogger("edge_sdk.pipeline")


def read_manifest(model_path: Path) -> dict[str, Any]:
    """The manifest next to a converted model, or {} when there is none, it is unreadable, or it does not
    describe this very file: a manifest is applied only if it records the file's sha256 (and its companion's,
    the .bin of an .xml) and the file on disk has it; a file replaced since, or copied over, is not its."""
    model_path = Path(model_path)
    path = model_path.parent / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    if not _describes(data, model_path):
        log.warning("%s does not record %s as it is now (replaced or copied over since): not applied", path,
                    model_path.name)  # fmt: skip
        return {}
    return data


def _describes(manifest: dict[str, Any], model_path: Path) -> bool:
    """Whether ``manifest`` records ``model_path`` (and its companions) with the content on disk."""
    name = model_path.name
    group = {name, model_path.with_suffix(".bin").name} if model_path.suffix == ".xml" else {name}
    if group & set(manifest.get("pending") or []):
        return False
    files = manifest.get("files")
    if isinstance(files, dict) and name in files:  # size + sha256 of every file, companions included
        records = {n: files[n] for n in group if n in files}
    else:  # a manifest from before file records: the artifact's own sha256
        records = {a["path"]: {"sha256": a.get("sha256")} for a in manifest.get("artifacts") or []
                   if isinstance(a, dict) and a.get("path") == name}  # fmt: skip
    if name not in records:
        return False
    for n, rec in records.items():
        p = model_path.parent / n
        if not isinstance(rec, dict) or not p.is_file():
            return False
        if "size" in rec and rec["size"] != p.stat().st_size:
            return False
        if n != name and p.stat().st_size > FULL_HASH_BYTES:
            continue  # a big .bin: its size is checked, its .xml (the graph) fully; not GBs read per start
        if rec.get("sha256") != sha256_file(p):
            return False
    return True


def model_preprocess(model: Any) -> AnySpec:
    """The model's stored preprocessing (manifest), else one guessed from its input tensor."""
    stored = read_manifest(model.path).get("preprocessing")
    if isinstance(stored, dict):
        spec = spec_from_dict(stored)
        if isinstance(spec, PreprocessSpec):
            spec = _match_tensor(spec, model)
        return spec
    return guess_preprocess(model)


def model_labels(model: Any) -> list[str] | None:
    """Class names the manifest names ("imagenet-1k"), or None."""
    if read_manifest(model.path).get("labels") == "imagenet-1k":
        from edge_sdk.labels import imagenet_labels

        return imagenet_labels()
    return None


def guess_preprocess(model: Any) -> PreprocessSpec:
    """A spec from the input tensor alone: NCHW if dim 1 is 3 else NHWC, RGB, x / 255 (float) or raw (int)."""
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
    if dtype in ("uint8", "int8"):
        return PreprocessSpec(size=(h, w), layout="NCHW" if nchw else "NHWC", dtype=dtype, mean=0.0, std=1.0)
    log.warning("no manifest next to %s: pixels scaled to 0..1; pass preprocess= if the model expects otherwise",
                model.path.name)  # fmt: skip
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
