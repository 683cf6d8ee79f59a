"""Stage 1, open: refuse what a target cannot express, load the source, and refuse options that cannot apply,
all before any export work."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from converters.plan.options import ConversionOptions
from converters.routes import TARGET_SUFFIX, RouteContext, find_route
from converters.sources import SourceModel, open_source
from edge_sdk.errors import ConversionError

log = logging.getLogger("edge_sdk")

#: source kinds whose TFLite goes through TFLiteConverter (ONNX and PyTorch via onnx2tf's SavedModel)
TF_KINDS = ("keras", "savedmodel", "onnx", "torch", "pt2")


def check_targets(model: Any, targets: Sequence[str]) -> None:
    """Unknown targets, and ops a target cannot express, before any runtime or converter touches the source."""
    from converters.sources import source_kind

    unknown = [t for t in targets if t not in TARGET_SUFFIX]
    if unknown:
        raise ConversionError(f"unknown target(s) {unknown}; targets are {', '.join(TARGET_SUFFIX)}")
    if isinstance(model, (str, Path)) and not str(model).startswith("zoo:"):
        kind = source_kind(model)
        for t in targets:
            find_route(kind, t).precheck(Path(model))


def open_model(model: Any, opts: ConversionOptions, ctx: RouteContext) -> SourceModel:
    """The source as a :class:`SourceModel`, with ``--input-shape`` applied where the format allows it."""
    so = opts.source
    if isinstance(model, str) and model.startswith("zoo:"):
        from converters.zoo_source import open_zoo_source

        return open_zoo_source(model[4:], ctx)
    source = open_source(model, example_inputs=so.example_inputs, input_shapes=ctx.input_shapes,
                         allow_lambda=so.allow_lambda, allow_pickle=so.allow_pickle)  # fmt: skip
    if source.kind == "onnx" and ctx.input_shapes:
        from converters.routes.onnx_routes import fix_onnx_shapes

        fixed = fix_onnx_shapes(Path(model), ctx.workdir / f"{Path(model).stem}.onnx", ctx.input_shapes)
        reopened = open_source(fixed)
        reopened.sha256 = source.sha256
        return reopened
    if ctx.input_shapes and so.static:  # the artifacts get these shapes: calibrate and validate with them
        source.inputs = [replace(s, shape=tuple(ctx.input_shapes.get(s.name, s.shape))) for s in source.inputs]
    elif ctx.input_shapes and source.kind not in ("onnx",):
        log.warning("--input-shape applies to ONNX sources; %s sources keep their traced/stored shapes", source.kind)
    return source


def check_options(
    source: SourceModel, targets: Sequence[str], precisions: Sequence[str], opts: ConversionOptions
) -> Any:
    """Refuse precision options that cannot apply to this source; returns the QATSpec (or None)."""
    q = opts.quant
    if q.target_isa is not None:  # an unknown ISA is refused even when no int8 artifact would use it
        from converters.quantizers.isa import scheme_for

        scheme_for(q.target_isa)
    qat_spec = _qat_spec(q.qat, source, precisions)
    _check_rounding(q.weight_rounding, source, precisions, qat_spec)
    if q.tflite_sparse and "tflite" in targets and source.kind not in TF_KINDS:
        raise ConversionError(
            f"--tflite-sparse needs TFLiteConverter; a {source.kind} source is re-quantized by ai-edge-quantizer, "
            "which has no sparse encoding: convert from the original model (Keras, SavedModel, ONNX, PyTorch)"
        )
    if q.tf_select_ops and "tflite" in targets:
        _check_select_ops(source, precisions)
    for t in targets:
        find_route(source.kind, t)
    return qat_spec


def _check_select_ops(source: SourceModel, precisions: Sequence[str]) -> None:
    """--tf-select-ops: TFLiteConverter's op set, at fp32 (the TFLite quantizers convert with builtins only)."""
    if source.kind not in TF_KINDS:
        raise ConversionError(f"--tf-select-ops applies where TFLiteConverter makes the TFLite file (Keras, "
                              f"SavedModel, ONNX, PyTorch); a {source.kind} source keeps its own ops")  # fmt: skip
    if set(precisions) - {"fp32"}:
        raise ConversionError("--tf-select-ops makes fp32 TFLite only: the TFLite quantizers convert with builtin "
                              "ops, so fp16 / int8 of a model that needs TensorFlow (Flex) ops is not supported; "
                              "convert with --precision fp32")  # fmt: skip


#: precision suffixes a converted file carries; converting it again must not stack them (``x_fp32_fp32``)
_PRECISION_SUFFIX = re.compile(r"_(fp32|fp16|int8-dynamic|int8)$")


def default_name(model: Any, source: SourceModel) -> str:
    """The artifacts' base name: the zoo name or the file's stem without a precision suffix of ours."""
    if isinstance(model, str) and model.startswith("zoo:"):
        return model[4:]
    if isinstance(model, (str, Path)):
        stem = Path(model).stem
        return _PRECISION_SUFFIX.sub("", stem) or stem
    return source.description.lower() or "model"


def _qat_spec(qat: Any, source: SourceModel, precisions: Sequence[str]) -> Any:
    """The QATSpec to use, or None; refuses QAT where it cannot apply (before any work)."""
    if qat is None:
        return None
    from converters.quantizers.qat import QATSpec

    spec = qat if isinstance(qat, QATSpec) else QATSpec(**qat)
    if "int8" not in precisions:
        raise ConversionError("QAT fine-tunes for static int8: add --precision int8")
    if source.kind not in ("torch", "pt2"):
        raise ConversionError(f"QAT fine-tunes a PyTorch model (module or .pt2); this source is {source.kind}")
    return spec


def _check_rounding(rounding: str, source: SourceModel, precisions: Sequence[str], qat_spec: Any) -> None:
    """Refuse a weight rounding that cannot apply, before any work."""
    from converters.quantizers.gptq import ROUNDINGS

    if rounding not in ROUNDINGS:
        raise ConversionError(f"weight rounding '{rounding}' is unknown; use one of {', '.join(ROUNDINGS)}")
    if rounding == "nearest":
        return
    if "int8" not in precisions:
        raise ConversionError(f"{rounding} weight rounding is for static int8: add --precision int8")
    if source.kind not in ("torch", "pt2"):
        raise ConversionError(f"{rounding} weight rounding needs a PyTorch model (module or .pt2); this source is "
                              f"{source.kind}")  # fmt: skip
    if qat_spec is not None:
        raise ConversionError(f"{rounding} weight rounding and QAT both set the int8 weights: use one of them")
