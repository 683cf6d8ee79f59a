"""Fix a model's dynamic input dimensions (NPUs, the Edge TPU, QNN HTP and most delegates need static shapes).

``reshape(path, shapes, output)`` writes a copy whose inputs have the given static shapes:

- ONNX: sets ``dim_value`` on the graph inputs and re-runs ONNX shape inference (needs ``onnx``).
- OpenVINO IR: ``Model.reshape`` then ``save_model`` (needs ``openvino``).
- TFLite: not possible on the file. A ``.tflite``'s shape signature is fixed when it is converted;
  the interpreter can only ``resize_tensor_input`` at load time (``edge_sdk`` does that for you
  when you feed a new shape). For a static file, re-convert from the source model with static
  input shapes (the converter's ``--static`` step calls this module for ONNX/OpenVINO).

``shapes`` maps input name -> shape; a single shape is allowed for a one-input model; ``None``
sets every dynamic dimension to 1. Outputs are written atomically (temp file, then rename).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

from edge_sdk.errors import BackendUnavailableError, EdgeSDKError, ModelLoadError, first_line
from edge_sdk.formats import ModelFile, inspect_file

log = logging.getLogger("edge_sdk")
Shapes = Union[Mapping[str, Sequence[int]], Sequence[int], None]


class ReshapeError(EdgeSDKError):
    """The requested static shapes do not fit the model, or the format cannot be reshaped as a file."""


def reshape(path: str | os.PathLike[str], shapes: Shapes = None, output: str | os.PathLike[str] | None = None) -> Path:
    """Write a copy of ``path`` with static input shapes to ``output`` (default: ``<stem>_static<ext>``)."""
    model_file = inspect_file(path)
    out = (
        Path(output) if output else model_file.path.with_name(f"{model_file.path.stem}_static{model_file.path.suffix}")
    )
    if out.suffix != model_file.path.suffix:
        raise ReshapeError(f"output {out.name} must keep the model's extension {model_file.path.suffix}")
    return _BY_FORMAT[model_file.format](model_file, shapes, out)


def _resolve(inputs: list[tuple[str, list[Any]]], shapes: Shapes) -> dict[str, tuple[int, ...]]:
    """Check ``shapes`` against the model's inputs (name, dims with None/str for dynamic) and fill the rest."""
    names = [n for n, _ in inputs]
    if shapes is not None and not isinstance(shapes, Mapping):
        if len(inputs) != 1:
            raise ReshapeError(f"the model has {len(inputs)} inputs ({', '.join(names)}); give {{name: shape}}")
        shapes = {names[0]: shapes}
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise ReshapeError(f"unknown input(s) {unknown}; the model's inputs are {names}")
    out = {}
    for name, dims in inputs:
        want = shapes.get(name)
        if want is None:
            out[name] = tuple(d if isinstance(d, int) and d > 0 else 1 for d in dims)
            if out[name] != tuple(dims):
                log.info("reshape: input %s dynamic dims set to 1: %s", name, list(out[name]))
            continue
        want = tuple(int(d) for d in want)
        if len(want) != len(dims) or any(w <= 0 for w in want):
            raise ReshapeError(f"input '{name}' has rank {len(dims)} ({_fmt(dims)}); got {list(want)}")
        clash = [i for i, (d, w) in enumerate(zip(dims, want)) if isinstance(d, int) and d > 0 and d != w]
        if clash:
            raise ReshapeError(
                f"input '{name}' is {_fmt(dims)}: dimension(s) {clash} are already static and differ from {list(want)}"
            )
        out[name] = want
    return out


def _fmt(dims: Sequence[Any]) -> str:
    return "[" + ",".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in dims) + "]"


def _atomic_target(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    return Path(tmp)


def _reshape_onnx(model_file: ModelFile, shapes: Shapes, out: Path) -> Path:
    try:
        import onnx
    except ImportError as e:
        raise BackendUnavailableError("onnx (reshape)", "convert", first_line(e)) from None
    model = onnx.load(str(model_file.path))
    inits = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in inits]
    dims = [
        (i.name, [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim])
        for i in graph_inputs
    ]
    fixed = _resolve(dims, shapes)
    for inp in graph_inputs:
        for d, value in zip(inp.type.tensor_type.shape.dim, fixed[inp.name]):
            d.Clear()
            d.dim_value = value
    for o in model.graph.output:  # let inference fill the outputs instead of keeping symbolic names
        for d in o.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
    del model.graph.value_info[:]
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as e:
        raise ReshapeError(f"ONNX shape inference failed with the new shapes {fixed}: {first_line(e)}") from None
    tmp = _atomic_target(out)
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _reshape_openvino(model_file: ModelFile, shapes: Shapes, out: Path) -> Path:
    try:
        import openvino as ov
    except ImportError as e:
        raise BackendUnavailableError("openvino", "openvino", first_line(e)) from None
    model = ov.Core().read_model(str(model_file.path))
    dims = []
    for port in model.inputs:
        ps = port.get_partial_shape()
        dims.append((port.get_any_name(), [d.get_length() if d.is_static else None for d in ps]))
    fixed = _resolve(dims, shapes)
    try:
        model.reshape({name: ov.PartialShape(list(shape)) for name, shape in fixed.items()})
    except Exception as e:
        raise ReshapeError(f"OpenVINO could not reshape {model_file.path.name} to {fixed}: {first_line(e)}") from None
    tmp = _atomic_target(out)
    tmp_bin = tmp.with_suffix(".bin")
    try:
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        os.replace(tmp_bin, out.with_suffix(".bin"))
        os.replace(tmp, out)
    except OSError as e:
        raise ModelLoadError(f"could not write {out}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
        tmp_bin.unlink(missing_ok=True)
    return out


def _reshape_tflite(model_file: ModelFile, shapes: Shapes, out: Path) -> Path:
    raise ReshapeError(
        f"{model_file.path.name}: a .tflite file's input shapes are fixed when it is converted and cannot be "
        "rewritten; re-convert from the source model with static input shapes, or keep this file and feed the "
        "shape you need (LiteRT resizes the input at load time, which edge_sdk does for you)"
    )


_BY_FORMAT: dict[str, Callable[[ModelFile, Shapes, Path], Path]] = {
    "onnx": _reshape_onnx,
    "openvino": _reshape_openvino,
    "tflite": _reshape_tflite,
}
