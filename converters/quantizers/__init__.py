"""Quantizers, one per target, each with the strongest tool of its ecosystem.

``quantize(target, fp32_path, out, precision, calibration, ctx)`` writes the
reduced-precision artifact. Every quantizer is deterministic: the same model,
calibration samples and options give the same scales.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_sdk.errors import ConversionError

if TYPE_CHECKING:
    from converters.calibration import CalibrationSet
    from converters.routes import RouteContext

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")
NEEDS_CALIBRATION = {"int8"}

_MODULES = {
    "onnx": "converters.quantizers.onnx_quant",
    "openvino": "converters.quantizers.openvino_quant",
    "tflite": "converters.quantizers.tflite_quant",
}
#: which library does the work, for the manifest
TOOLS = {
    "onnx": {"fp16": "onnxruntime.transformers.float16", "int8-dynamic": "onnxruntime.quantization",
             "int8": "onnxruntime.quantization (QDQ, per-channel)"},
    "openvino": {"fp16": "openvino.save_model(compress_to_fp16)", "int8-dynamic": "nncf.compress_weights",
                 "int8": "nncf.quantize"},
    "tflite": {"fp16": "TFLiteConverter / ai-edge-quantizer", "int8-dynamic": "TFLiteConverter / ai-edge-quantizer",
               "int8": "TFLiteConverter / ai-edge-quantizer"},
}  # fmt: skip


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConversionError(f"unknown precision '{precision}'; choose from {', '.join(PRECISIONS)}")
    return precision


def quantize(
    target: str,
    fp32_path: Path,
    out: Path,
    precision: str,
    calibration: CalibrationSet | None,
    ctx: RouteContext,
    **options: Any,
) -> Path:
    if precision in NEEDS_CALIBRATION and calibration is None:
        raise ConversionError(
            f"{precision} needs calibration data: pass --calib PATH (images, .npy/.npz, WAV folder) "
            "or --calib synthetic to accept random data explicitly"
        )
    module = importlib.import_module(_MODULES[target])
    return module.quantize(fp32_path, out, precision, calibration, ctx, **options)
