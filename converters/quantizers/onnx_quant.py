"""ONNX Runtime quantization: fp16 conversion, dynamic int8, static QDQ int8 with per-channel weights."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from converters.layout import adapt_feeds
from edge_sdk.errors import ConversionError, first_line
from edge_sdk.summary.onnx_summary import ort_symbolic_shapes


def quantize(fp32: Path, out: Path, precision: str, calibration: Any, ctx: Any, **options: Any) -> Path:
    import onnx

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
        onnx.save(model, str(out))
        return out
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = _at_least_opset(fp32, 13, ctx)  # per-channel QDQ needs DequantizeLinear's axis (opset 13)
    prepared = ctx.workdir / f"{fp32.stem}.prep.onnx"
    try:  # our symbolic step, not ORT's: its own drops sym_shape_infer_temp.onnx into the cwd when incomplete
        inferred, complete = ort_symbolic_shapes(onnx.load(str(fp32)))
        if not complete:
            raise ValueError("incomplete symbolic shape inference")
        quant_pre_process(inferred, str(prepared), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimisation; quantize the original if it fails
        prepared = fp32
    if precision == "int8-dynamic":
        quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, per_channel=True)
        return out

    import edge_sdk

    with edge_sdk.load(prepared) as m:
        names = [s.name for s in m.inputs]
        specs = m.inputs
    feeds = [dict(zip(names, adapt_feeds(sample, specs, calibration.input_names))) for sample in calibration.samples]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(feeds)

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[options.get("calibration_method", "minmax")]  # fmt: skip
    try:
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            extra_options={"CalibMovingAverage": False},
        )
    except Exception as e:
        raise ConversionError(f"onnxruntime static quantization failed: {first_line(e)}") from None
    return out


def _at_least_opset(path: Path, opset: int, ctx: Any) -> Path:
    """``path`` itself, or a copy upgraded to ``opset`` when its default-domain opset is older."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(path))
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return path
    try:
        upgraded = version_converter.convert_version(model, opset)
    except Exception as e:
        raise ConversionError(
            f"upgrading {path.name} from opset {current} to {opset} failed: {first_line(e)}"
        ) from None
    out = ctx.workdir / f"{path.stem}.opset{opset}.onnx"
    onnx.save(upgraded, str(out))
    return out
