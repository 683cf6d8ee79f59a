"""Keras 3 models and TF SavedModels -> TFLite / ONNX / OpenVINO (Keras goes through a SavedModel)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from converters.cleanup import run_tool
from converters.routes import RouteContext
from converters.routes.onnx_decompose import standard_onnx
from converters.sources import SourceModel
from edge_sdk.errors import ConversionError, EdgeSDKError, UnsupportedOperatorError, first_line

log = logging.getLogger("edge_sdk.convert")


def saved_model_dir(source: SourceModel, ctx: RouteContext) -> Path:
    """The SavedModel of ``source``: the source itself, or a Keras export made once per conversion."""
    if source.kind == "savedmodel":
        assert source.path is not None
        return source.path
    if "savedmodel" not in ctx.intermediates:
        out = ctx.workdir / "saved_model"
        try:
            source.obj.export(str(out), verbose=False)
        except Exception as e:
            raise ConversionError(f"exporting the Keras model to a SavedModel failed: {first_line(e)}") from None
        ctx.intermediates["savedmodel"] = out
    return ctx.intermediates["savedmodel"]


def to_tflite(source: SourceModel, out: Path, ctx: RouteContext, *, tool: str = "tf.lite.TFLiteConverter",
              select_tf_ops: bool | None = None) -> Path:  # fmt: skip
    """``select_tf_ops`` (default: ``ctx.tf_select_ops``): ops without a TFLite builtin stay TensorFlow ops (Flex),
    with a warning recorded in ``ctx.used_tool`` as ``tool`` + the Flex ops (:mod:`.tflite_flex`)."""
    import tensorflow as tf

    select = ctx.tf_select_ops if select_tf_ops is None else select_tf_ops
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir(source, ctx)))
    if ctx.tflite_sparse:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if select:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    try:
        out.write_bytes(converter.convert())
    except Exception as e:
        raise_unsupported_or(e, "TFLite", select_tf_ops=select)
    if select:
        from converters.routes.tflite_flex import note_flex_ops

        note_flex_ops(out, ctx, tool)
    return out


def to_onnx(source: SourceModel, out: Path, ctx: RouteContext) -> Path:
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model_dir(source, ctx))]
    cmd += ["--output", str(out), "--opset", str(ctx.opset)]
    proc = run_tool(cmd)
    if ctx.verbose:
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0 or not out.exists():
        errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln or "Error" in ln]
        raise ConversionError(f"tf2onnx failed: {errors[-1].strip() if errors else 'see --verbose'}")
    try:
        standard_onnx(out, "tf2onnx (Keras/SavedModel -> ONNX)")
    except UnsupportedOperatorError as e:  # e.g. Keras 3's XLA-compiled depthwise conv stays a function call
        return _onnx_through_tflite(source, out, ctx, e)
    return out


def _onnx_through_tflite(source: SourceModel, out: Path, ctx: RouteContext, why: Exception) -> Path:
    """Keras/SavedModel -> TFLite (TFLiteConverter inlines every function) -> ONNX (tf2onnx --tflite)."""
    from dataclasses import replace

    from converters.routes import tflite_routes

    log.info("tf2onnx left function calls in the graph (%s); converting through TFLite instead", why)
    tflite = to_tflite(source, ctx.workdir / "onnx_via.tflite", ctx, select_tf_ops=False)
    try:
        tflite_routes.to_onnx(replace(source, kind="tflite", path=tflite), out, ctx)
    except EdgeSDKError as e:
        raise UnsupportedOperatorError(f"{why}; converting through TFLite failed too: {e}") from None
    ctx.used_tool["onnx"] = "TFLiteConverter + tf2onnx --tflite (tf2onnx on the SavedModel left function calls)"
    return out


def to_openvino(source: SourceModel, out: Path, ctx: RouteContext) -> Path:
    import openvino as ov

    try:
        model = ov.convert_model(str(saved_model_dir(source, ctx)))
    except Exception as e:
        raise_unsupported_or(e, "OpenVINO")
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def raise_unsupported_or(exc: BaseException, target: str, *, select_tf_ops: bool = False) -> None:
    """Turn a converter's 'op not supported' text into UnsupportedOperatorError naming the op."""
    import re

    text = str(exc)
    flex = re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)
    if flex:  # TFLite's MLIR converter: name the ops and where they sit in the model, not the MLIR dump
        named = []
        for op in dict.fromkeys(flex):
            where = re.search(r'fused\["' + op + r':", "([^"@]+)', text)
            named.append(f"{op}{f' (node {where.group(1)!r})' if where else ''}")
        ops = f"op{'s' if len(named) > 1 else ''} {', '.join(named)}"
        if select_tf_ops:
            raise UnsupportedOperatorError(
                f"{target} has no builtin op for TF {ops}, and Select TF ops (--tf-select-ops) have no kernel for "
                "it either: replace it in the source model (e.g. an approximation built from supported ops), or "
                "convert to ONNX / OpenVINO, which support it"
            ) from None
        raise UnsupportedOperatorError(
            f"{target} has no builtin op for TF {ops}: replace it in the source model (e.g. an approximation "
            "built from supported ops), convert to ONNX / OpenVINO, which support it, or pass --tf-select-ops "
            "(convert(..., tf_select_ops=True)) to keep it as a TensorFlow op, which the device then runs only "
            "with the Flex delegate"
        ) from None
    m = re.search(r"(?:op|operation|operations?)[^\n]*?['`\"]?([A-Za-z0-9_.]+)['`\"]? (?:is|are) not supported", text)
    if m or "not supported" in text:
        op = m.group(1) if m else "?"
        raise UnsupportedOperatorError(f"{target} does not support op {op}: {first_line(exc)}") from None
    raise ConversionError(f"conversion to {target} failed: {first_line(exc)}") from None
