"""TFLite -> TFLite (to quantize it) / ONNX (tf2onnx) / OpenVINO."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from converters.cleanup import run_tool
from converters.routes import RouteContext
from converters.routes.onnx_decompose import standard_onnx
from converters.routes.tflite_signature import SIGNATURE_KEY, with_signature
from converters.sources import SourceModel
from edge_sdk.errors import ConversionError, first_line

log = logging.getLogger("edge_sdk.convert")


def to_tflite(source: SourceModel, out: Path, ctx: RouteContext) -> Path:
    """The source itself, with a SignatureDef added when it has none (the quantizer addresses it through one)."""
    assert source.path is not None
    if with_signature(source.path, out):
        log.info("%s has no SignatureDef: added '%s' from its subgraph's tensors", source.path.name, SIGNATURE_KEY)
    return out


def to_onnx(source: SourceModel, out: Path, ctx: RouteContext) -> Path:
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--tflite", str(source.path), "--output", str(out)]
    proc = run_tool(cmd + ["--opset", str(ctx.opset)])
    if ctx.verbose:
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0 or not out.exists():
        errors = [ln for ln in proc.stderr.splitlines() if "rror" in ln]
        raise ConversionError(f"tf2onnx --tflite failed: {errors[-1].strip() if errors else 'see --verbose'}")
    standard_onnx(out, "tf2onnx --tflite (TFLite -> ONNX)")
    return out


def to_openvino(source: SourceModel, out: Path, ctx: RouteContext) -> Path:
    import openvino as ov

    try:
        model = ov.convert_model(str(source.path))
    except Exception as e:
        raise ConversionError(f"openvino.convert_model failed on the TFLite model: {first_line(e)}") from None
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out
