"""Source models: recognise what the user gave us, refuse what is unsafe, and run the original.

Kinds: ``torch`` (an ``nn.Module`` with example inputs, Python API only), ``pt2``
(a ``torch.export`` ExportedProgram file), ``keras`` (``.keras`` / ``.h5``),
``savedmodel`` (a TF SavedModel folder), ``onnx``, ``tflite``. A ``.pt``/``.pth``
pickle is refused: unpickling runs arbitrary code. A ``.pt2`` is checked before
``torch.export.load`` reads it (:mod:`converters.pt2_guard`): any pickle that is not
plain tensor data, or code in its program, is refused unless ``allow_pickle=True``.
A Keras file with a ``Lambda`` layer is refused unless ``allow_lambda=True``: its
Python bytecode would run; everything else Keras's safe mode refuses stays refused
(:mod:`converters.keras_guard`).
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from converters.keras_guard import keras_config, lambda_layers, load_keras_model, unsafe_objects
from edge_sdk.cache import sha256_file
from edge_sdk.errors import EdgeSDKError, SourceModelError, first_line
from edge_sdk.tensor_spec import TensorSpec, guess_layout

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass
class SourceModel:
    """A loaded source model: what it takes, how to run it, and where it came from."""

    kind: str
    inputs: list[TensorSpec]
    run: Callable[[list[np.ndarray]], list[np.ndarray]]
    output_names: list[str]
    sha256: str
    path: Path | None = None
    obj: Any = None  # torch module / ExportedProgram / keras model
    example_inputs: list[np.ndarray] = field(default_factory=list)
    description: str = ""
    preprocess: Any = None  # edge_sdk.preprocess.PreprocessSpec when known (zoo models)
    labels: list[str] | None = None
    task: str | None = None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(path)).encode())
                h.update(p.read_bytes())
        return h.hexdigest()
    return sha256_file(path)


def source_kind(model: Any) -> str:
    """Which kind of source ``model`` is, or a SourceModelError saying what is accepted."""
    if not isinstance(model, (str, Path)):
        if type(model).__module__.startswith("torch") or _is_torch_module(model):
            return "torch"
        raise SourceModelError(
            f"cannot convert a {type(model).__name__}; pass a torch.nn.Module, or a path to a "
            ".pt2, .keras, .h5, SavedModel folder, .onnx or .tflite file"
        )
    p = Path(model)
    if not p.exists():
        raise SourceModelError(f"source model not found: {p}")
    if p.is_dir():
        if (p / "saved_model.pb").is_file():
            return "savedmodel"
        raise SourceModelError(f"{p} is a folder without saved_model.pb; pass a SavedModel folder or a model file")
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise SourceModelError(
            f"{p.name} is a pickled PyTorch file; loading it would run arbitrary code, so it is refused. "
            "Export it with torch.export.save(torch.export.export(model, example_args), 'model.pt2') "
            "and convert the .pt2, or pass the nn.Module to converters.convert() from Python"
        )
    if suffix == ".pt2":
        return "pt2"
    if suffix in (".keras", ".h5", ".hdf5"):
        return "keras"
    from edge_sdk.errors import UnsupportedFormatError
    from edge_sdk.formats import detect_format

    try:
        fmt = detect_format(p)
    except UnsupportedFormatError:
        raise SourceModelError(
            f"unknown source format: {p.name}; sources are a torch.nn.Module (Python), .pt2, .keras, .h5, "
            "a SavedModel folder, .onnx, .tflite, or zoo:NAME"
        ) from None
    if fmt == "openvino":
        raise SourceModelError(f"{p.name} is OpenVINO IR, a conversion target; convert from the original model")
    return fmt


def _is_torch_module(obj: Any) -> bool:
    return any(c.__module__.startswith("torch.nn") for c in type(obj).__mro__)


def open_source(
    model: Any,
    *,
    example_inputs: Sequence[Any] | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    allow_lambda: bool = False,
    allow_pickle: bool = False,
) -> SourceModel:
    """Load ``model`` as a :class:`SourceModel`; every failure is a SourceModelError naming the file.

    ``allow_lambda``: load a Keras file's Lambda layers (their Python code runs). ``allow_pickle``: load a
    ``.pt2`` the way torch does, unchecked (its pickles and program code run). Only for trusted files."""
    kind = source_kind(model)
    loader = {
        "torch": _open_torch,
        "pt2": _open_pt2,
        "keras": _open_keras,
        "savedmodel": _open_savedmodel,
        "onnx": _open_runtime_file,
        "tflite": _open_runtime_file,
    }[kind]
    try:
        return loader(model, example_inputs=example_inputs, input_shapes=input_shapes, allow_lambda=allow_lambda,
                      allow_pickle=allow_pickle)  # fmt: skip
    except EdgeSDKError:
        raise
    except Exception as e:  # a framework's own loader error: one line, naming the file
        what = model if isinstance(model, (str, Path)) else type(model).__name__  # a module's repr is pages long
        raise SourceModelError(f"source model {what} does not load as {kind}: {first_line(e)}") from None


def _torch_specs(tensors: Sequence[Any]) -> tuple[list[TensorSpec], list[np.ndarray]]:
    arrays = [t.detach().cpu().numpy() for t in tensors]
    names = ["input"] if len(arrays) == 1 else [f"input_{i}" for i in range(len(arrays))]
    specs = [TensorSpec(n, tuple(a.shape), a.dtype, guess_layout(tuple(a.shape))) for n, a in zip(names, arrays)]
    return specs, arrays


def _torch_runner(module: Any) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    import torch

    def run(feeds: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(x)) for x in feeds])
        return [o.detach().cpu().numpy() for o in _tensor_leaves(out)]

    return run


def _tensor_leaves(out: Any) -> list[Any]:
    """The output tensors in order, however the module nests them (tuples, dicts, transformers' ModelOutput),
    which is also the order torch.onnx.export flattens them in."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict) or hasattr(out, "to_tuple"):  # ModelOutput is an OrderedDict of the set fields
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensor_leaves(o)]
    return []


def _open_torch(model: Any, *, example_inputs: Sequence[Any] | None, **_: Any) -> SourceModel:
    import torch

    if not example_inputs:
        raise SourceModelError(
            "a torch.nn.Module source needs example_inputs=(tensor, ...) to trace it, e.g. (torch.randn(1,3,224,224),)"
        )
    tensors = [t if isinstance(t, torch.Tensor) else torch.as_tensor(t) for t in example_inputs]
    model.eval()
    specs, arrays = _torch_specs(tensors)
    run = _torch_runner(model)
    outs = run(arrays)
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return SourceModel(
        kind="torch",
        inputs=specs,
        run=run,
        output_names=[f"output_{i}" if len(outs) > 1 else "output" for i in range(len(outs))],
        sha256=h.hexdigest(),
        obj=model,
        example_inputs=arrays,
        description=type(model).__name__,
    )


def _open_pt2(path: str | Path, *, allow_pickle: bool = False, **_: Any) -> SourceModel:
    from converters.pt2_guard import load_exported_program

    p = Path(path)
    ep = load_exported_program(p, allow_pickle=allow_pickle)
    args = ep.example_inputs[0] if getattr(ep, "example_inputs", None) else None
    if not args:
        raise SourceModelError(f"{p.name} carries no example inputs; re-save it with torch.export.export(model, args)")
    module = ep.module()
    specs, arrays = _torch_specs(args)
    run = _torch_runner(module)
    outs = run(arrays)
    return SourceModel(
        kind="pt2",
        inputs=specs,
        run=run,
        output_names=[f"output_{i}" if len(outs) > 1 else "output" for i in range(len(outs))],
        sha256=file_sha256(p),
        path=p,
        obj=ep,
        example_inputs=arrays,
    )


def _open_keras(path: str | Path, *, allow_lambda: bool, **_: Any) -> SourceModel:
    p = Path(path)
    try:
        config = keras_config(p)
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise SourceModelError(f"{p.name} is not a readable Keras model file: {first_line(e)}") from None
    unsafe = unsafe_objects(config)
    if unsafe:
        raise SourceModelError(
            f"{p.name} holds objects that would run code on load, refused (--unsafe-allow-lambda allows built-in "
            f"Lambda layers only): {'; '.join(unsafe)}"
        )
    lambdas = lambda_layers(config)
    if lambdas and not allow_lambda:
        raise SourceModelError(
            f"{p.name} contains Lambda layer(s) {lambdas}: their Python code would run on load, so the file is "
            "refused. Rebuild the model without Lambda layers, or pass --unsafe-allow-lambda if you trust the file"
        )
    model = load_keras_model(p, config, allow_lambda=allow_lambda)
    specs = [
        TensorSpec(t.name, tuple(t.shape), np.dtype(str(t.dtype)), guess_layout(tuple(t.shape))) for t in model.inputs
    ]

    def run(feeds: list[np.ndarray]) -> list[np.ndarray]:
        out = model(feeds if len(feeds) > 1 else feeds[0], training=False)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [np.asarray(o) for o in outs]

    return SourceModel(
        kind="keras",
        inputs=specs,
        run=run,
        output_names=_keras_output_names(model),
        sha256=file_sha256(p),
        path=p,
        obj=model,
    )


def _keras_output_names(model: Any) -> list[str]:
    """The outputs' layer names (stable); tensor names like ``keras_tensor_11`` count loads in the process."""
    names = list(getattr(model, "output_names", None) or [])
    if len(names) == len(model.outputs) and len(set(names)) == len(names):
        return [str(n) for n in names]
    return [f"output_{i}" if len(model.outputs) > 1 else "output" for i in range(len(model.outputs))]


def _open_savedmodel(path: str | Path, **_: Any) -> SourceModel:
    import tensorflow as tf

    p = Path(path)
    loaded = tf.saved_model.load(str(p))
    if "serving_default" not in loaded.signatures:
        raise SourceModelError(f"SavedModel {p} has no 'serving_default' signature to convert")
    fn = loaded.signatures["serving_default"]
    arg_specs = fn.structured_input_signature[1]
    names = sorted(arg_specs)
    specs = [
        TensorSpec(
            n,
            tuple(d for d in arg_specs[n].shape),
            np.dtype(arg_specs[n].dtype.as_numpy_dtype),
            guess_layout(tuple(arg_specs[n].shape)),
        )
        for n in names
    ]
    out_names = sorted(fn.structured_outputs)

    def run(feeds: list[np.ndarray]) -> list[np.ndarray]:
        res = fn(**{n: tf.constant(x) for n, x in zip(names, feeds)})
        return [res[k].numpy() for k in out_names]

    return SourceModel(
        kind="savedmodel", inputs=specs, run=run, output_names=out_names, sha256=file_sha256(p), path=p, obj=loaded
    )


def _open_runtime_file(path: str | Path, *, input_shapes: dict[str, tuple[int, ...]] | None, **_: Any) -> SourceModel:
    import edge_sdk

    p = Path(path)
    model = edge_sdk.load(p)
    specs = model.inputs
    if input_shapes:
        unknown = sorted(set(input_shapes) - {s.name for s in specs})
        if unknown:
            raise SourceModelError(f"--input-shape names unknown input(s) {unknown}; inputs: {[s.name for s in specs]}")

    def run(feeds: list[np.ndarray]) -> list[np.ndarray]:
        return list(model.run(feeds).values())

    return SourceModel(
        kind=model.format,
        inputs=specs,
        run=run,
        output_names=[s.name for s in model.outputs],
        sha256=file_sha256(p),
        path=p,
        obj=model,
    )
