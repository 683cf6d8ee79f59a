"""OpenVINO precision: fp16 IR compression, NNCF int8 weight compression, NNCF post-training int8."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from converters.layout import adapt_feeds
from edge_sdk.errors import ConversionError, first_line


def quantize(fp32: Path, out: Path, precision: str, calibration: Any, ctx: Any, **options: Any) -> Path:
    """``options["exact_weights"]``: the weights are already on their int8 grid (GPTQ): keep them there.

    NNCF's default overflow fix quantizes the first layer's weights to 7 bits (a guard against int16
    saturation in u8 x s8 kernels of x86 CPUs without VNNI), which re-rounds GPTQ's stem; its bias
    correction compensates a rounding error GPTQ already compensated. So for exact weights both are off and
    activation ranges are global min/max, as ONNX Runtime and TFLite calibrate. EfficientNet-Lite0, 1000
    held-out crops: NNCF defaults 95.1%, full bias correction + min/max 96.5%, overflow fix off 97.9%, bias
    correction off too 98.1%. CPUs without VNNI may saturate in the first layer with such an IR."""
    import openvino as ov

    model = ov.Core().read_model(str(fp32))
    if precision == "fp16":
        ov.save_model(model, str(out), compress_to_fp16=True)
        return out
    import nncf

    logging.getLogger("nncf").setLevel(logging.DEBUG if ctx.verbose else logging.ERROR)
    nncf.set_log_level(logging.DEBUG if ctx.verbose else logging.ERROR)
    try:
        if precision == "int8-dynamic":
            compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
            ov.save_model(compressed, str(out), compress_to_fp16=False)
            return out
        from edge_sdk.backends.openvino_backend import _spec

        specs = [_spec(p, i) for i, p in enumerate(model.inputs)]
        samples = [adapt_feeds(s, specs, calibration.input_names) for s in calibration.samples]
        dataset = nncf.Dataset(samples, lambda sample: tuple(sample) if len(sample) > 1 else sample[0])
        quantized = nncf.quantize(
            model,
            dataset,
            preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=len(samples),
            **_nncf_options(options.get("exact_weights", False)),
        )
    except Exception as e:
        raise ConversionError(f"NNCF {precision} quantization failed: {first_line(e)}") from None
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return out


def _nncf_options(exact_weights: bool) -> dict[str, Any]:
    if not exact_weights:
        return {"fast_bias_correction": True}
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return {
        "advanced_parameters": AdvancedQuantizationParameters(
            overflow_fix=OverflowFix.DISABLE,
            disable_bias_correction=True,
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
        )
    }
