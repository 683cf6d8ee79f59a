"""``converters.prune``: detect the model's framework once, then dispatch through one table of pruners.

Frameworks with no native pruner for a method (Keras / SavedModel / TFLite / .pt2 channel pruning) are
exported to ONNX through the conversion routes first and pruned there; the result is then an ONNX model.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converters.prune.spec import PruneResult, PruneSpec, agreement_floor, parse_prune
from edge_sdk.errors import PruneError

log = logging.getLogger("edge_sdk")


@dataclass(frozen=True)
class Pruner:
    framework: str
    method: str
    function: str  # "module:function(model, spec, example_inputs) -> PruneResult"

    def load(self) -> Any:
        module, _, fn = self.function.partition(":")
        return getattr(importlib.import_module(module), fn)


_P = "converters.prune"
PRUNERS: dict[tuple[str, str], Pruner] = {
    (p.framework, p.method): p
    for p in [
        Pruner("torch", "magnitude", f"{_P}.torch_prune:magnitude"),
        Pruner("torch", "channel", f"{_P}.torch_prune:channel"),
        Pruner("keras", "magnitude", f"{_P}.keras_prune:magnitude"),
        Pruner("onnx", "magnitude", f"{_P}.onnx_prune:magnitude"),
        Pruner("onnx", "channel", f"{_P}.onnx_channel:channel"),
    ]
}


def prune(
    model: Any,
    *,
    method: str = "magnitude",
    amount: float = 0.5,
    example_inputs: Sequence[Any] | None = None,
    allow_pickle: bool = False,
    **options: Any,
) -> PruneResult:
    """Prune ``model`` (a ``torch.nn.Module``, a ``keras.Model``, an ``onnx.ModelProto``, or a path to a
    ``.keras``/``.h5``/``.onnx``/``.pt2`` file, or ``zoo:NAME``) and return the pruned model with a per-layer
    report. Options are :class:`PruneSpec` fields (``scope``, ``skip``, ``include``, ``layer_amounts``, ...).
    Nothing is validated here; ``converters.convert(..., prune=...)`` validates against the original.
    ``allow_pickle``: load a ``.pt2`` unchecked (see :func:`converters.sources.open_source`)."""
    from converters.sources import open_source

    spec = PruneSpec(method=method, amount=amount, **options)
    if isinstance(model, str) and model.startswith("zoo:"):
        from converters import zoo

        zm = zoo.load(model[4:])
        model, example_inputs = zm.model, example_inputs or zm.example_inputs
    framework = _framework(model)
    if framework == "torch":
        return _dispatch("torch", spec)(model, spec, example_inputs)
    if framework in ("keras", "onnx") and (framework, spec.method) in PRUNERS:
        return _dispatch(framework, spec)(model, spec, example_inputs)
    source = open_source(model, example_inputs=example_inputs, allow_pickle=allow_pickle)
    if source.kind == "pt2":
        return _dispatch("torch", spec)(source.obj.module(), spec, source.example_inputs)
    from converters.atomic import temp_workdir

    with temp_workdir("edge-sdk-prune-") as tmp:
        onnx_path = _to_onnx(source, Path(tmp))
        return _dispatch("onnx", spec)(onnx_path, spec, None)


def _framework(model: Any) -> str:
    mod = type(model).__module__
    if mod.startswith("torch") or any(c.__module__.startswith("torch.nn") for c in type(model).__mro__):
        return "torch"
    if mod.startswith("keras") or any(c.__module__.startswith("keras") for c in type(model).__mro__):
        return "keras"
    if mod.startswith("onnx"):
        return "onnx"
    if isinstance(model, (str, Path)):
        suffix = Path(model).suffix.lower()
        return {".keras": "keras", ".h5": "keras", ".hdf5": "keras", ".onnx": "onnx"}.get(suffix, "file")
    raise PruneError(
        f"cannot prune a {type(model).__name__}; pass a torch.nn.Module, keras.Model, onnx.ModelProto, "
        "or a path to a .keras, .h5, .onnx or .pt2 file"
    )


def _dispatch(framework: str, spec: PruneSpec) -> Any:
    pruner = PRUNERS.get((framework, spec.method))
    if pruner is None:
        raise PruneError(f"no {spec.method} pruner for {framework} models")
    return pruner.load()


def _to_onnx(source: Any, workdir: Path) -> Path:
    """Export ``source`` to ONNX through the conversion routes (for methods with no native pruner)."""
    from converters.routes import RouteContext, find_route

    ctx = RouteContext(workdir=workdir)
    path = workdir / "to_prune.onnx"
    return find_route(source.kind, "onnx").load()(source, path, ctx)


# ---- used by converters.convert(..., prune=...) -------------------------------------------------
def prune_source(
    source: Any,
    prune_spec: Any,
    ctx: Any,
    held: Any = None,
    save_to: Path | None = None,
    preprocess: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Prune a loaded SourceModel (and fine-tune it if asked); return the pruned SourceModel and what was done.

    ``held``: the validation inputs with the original's outputs; top-1 agreement on them is recorded
    before and after fine-tuning. ``save_to``: write the pruned model in its own format (``.pt2``,
    ``.keras`` or ``.onnx``) to this path (suffix replaced), atomically. ``preprocess``: how images become
    inputs for fine-tuning (default: the source's own).
    """
    from converters.sources import open_source

    spec = parse_prune(prune_spec)
    start = time.monotonic()
    if source.kind == "torch" or (source.kind == "pt2" and spec.method == "magnitude"):
        module = source.obj.module() if source.kind == "pt2" else source.obj
        result = _dispatch("torch", spec)(module, spec, source.example_inputs)
    elif source.kind == "keras" and spec.method == "magnitude":
        result = _dispatch("keras", spec)(source.obj, spec, None)
    elif source.kind == "onnx":
        result = _dispatch("onnx", spec)(source.path, spec, None)
    else:
        onnx_path = _to_onnx(source, ctx.workdir)
        log.info("%s %s pruning goes through ONNX (%s)", source.kind, spec.method, onnx_path.name)
        result = _dispatch("onnx", spec)(onnx_path, spec, None)
        result.notes.append(f"{source.kind} source exported to ONNX for {spec.method} pruning; the result is ONNX")
    if spec.classes is None:
        spec.classes = _classes(held)
    info: dict[str, Any] = {"seconds": 0.0, "agreement_floor": agreement_floor(spec.classes, spec.min_agreement)}
    if held is not None and result.framework == "torch":
        info["agreement_before_finetune"] = _agreement(result.model, held)
    if spec.finetune is not None:
        if result.framework != "torch":
            raise PruneError(
                f"fine-tuning needs a PyTorch model; this {source.kind} model was pruned as {result.framework}. "
                "Prune the PyTorch original, or drop --finetune"
            )
        from converters.prune.finetune import finetune

        teacher = source.obj.module() if source.kind == "pt2" else source.obj
        result.finetune = finetune(result.model, teacher, spec, preprocess or source.preprocess, source.labels)
        if held is not None:
            info["agreement_after_finetune"] = _agreement(result.model, held)
    pruned = _reopen(result, source, ctx, open_source)
    if save_to is not None:
        info["saved"] = str(_save(result, pruned, save_to))
    info["seconds"] = round(time.monotonic() - start, 1)
    return pruned, {**result.to_dict(), **info}


def _classes(held: Any) -> int | None:
    """Classes of the original's single score output (N, C), from the held-out reference; None otherwise."""
    ref = held.reference[0] if held is not None and held.reference else None
    return int(ref.shape[-1]) if ref is not None and ref.ndim == 2 and len(held.reference) == 1 else None


def _agreement(module: Any, held: Any) -> float | None:
    from converters.prune.finetune import top1_agreement

    ref = held.reference[0] if held.reference else None
    if ref is None or ref.ndim != 2 or ref.shape[-1] < 10 or len(held.samples[0]) != 1:
        return None
    x = np.concatenate([s[0] for s in held.samples])
    return round(top1_agreement(module, x, ref), 4)


def _reopen(result: PruneResult, source: Any, ctx: Any, open_source: Any) -> Any:
    """The pruned model as a SourceModel carrying the original's names, preprocessing, labels and task."""
    if result.framework == "torch":
        pruned = open_source(result.model, example_inputs=source.example_inputs)
        pruned.inputs = [replace(p, name=s.name) for p, s in zip(pruned.inputs, source.inputs)]
        if len(pruned.output_names) == len(source.output_names):
            pruned.output_names = list(source.output_names)
    else:
        suffix = ".keras" if result.framework == "keras" else ".onnx"
        path = ctx.workdir / f"pruned{suffix}"
        _write(result, path)
        pruned = open_source(path)
    pruned.preprocess, pruned.labels, pruned.task = source.preprocess, source.labels, source.task
    pruned.description = f"{source.description or source.kind} ({result.spec.tag})"
    return pruned


def _write(result: PruneResult, path: Path) -> Path:
    if result.framework == "keras":
        result.model.save(str(path))
    else:
        import onnx

        onnx.save(result.model, str(path))
    return path


def _save(result: PruneResult, pruned: Any, save_to: Path) -> Path:
    from converters.atomic import open_atomic

    if result.framework == "torch":
        import io

        import torch

        args = tuple(torch.from_numpy(a.copy()) for a in pruned.example_inputs)
        buffer = io.BytesIO()
        torch.export.save(torch.export.export(result.model.eval(), args), buffer)
        path = save_to.with_suffix(".pt2")
        with open_atomic(path) as tmp:
            tmp.write_bytes(buffer.getvalue())
        return path
    path = save_to.with_suffix(".keras" if result.framework == "keras" else ".onnx")
    with open_atomic(path) as tmp:
        _write(result, tmp.with_suffix(path.suffix))
        tmp.with_suffix(path.suffix).replace(tmp)
    return path
