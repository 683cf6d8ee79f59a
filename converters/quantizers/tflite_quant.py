"""TFLite precision. From a SavedModel (Keras, SavedModel, and ONNX / PyTorch via onnx2tf) with
TFLiteConverter: fp16, dynamic-range int8, full int8 with a representative dataset, int8 or float
I/O, optional sparse weights. From a float .tflite only (TFLite sources, or PyTorch through the
litert-torch fallback) with ai-edge-quantizer: fp16 weights, dynamic int8, static int8 (float I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.layout import adapt_feeds
from edge_sdk.errors import ConversionError, first_line


def quantize(fp32: Path, out: Path, precision: str, calibration: Any, ctx: Any, **options: Any) -> Path:
    saved = ctx.intermediates.get("savedmodel")
    if saved is not None:
        return _with_tflite_converter(
            Path(saved), fp32, out, precision, calibration, {**options, "sparse": getattr(ctx, "tflite_sparse", False)}
        )
    if options.get("int8_io"):
        raise ConversionError(
            "int8 inputs/outputs need TFLiteConverter (Keras, SavedModel, ONNX, or PyTorch with onnx2tf "
            "installed: make onnx2tf); a .tflite source gets int8 kernels with float I/O"
        )
    return _with_ai_edge_quantizer(fp32, out, precision, calibration)


def _samples_for(fp32: Path, calibration: Any) -> list[list[Any]]:
    import edge_sdk

    with edge_sdk.load(fp32) as m:
        specs = m.inputs
    return [adapt_feeds(s, specs, calibration.input_names) for s in calibration.samples]


def _with_tflite_converter(saved: Path, fp32: Path, out: Path, precision: str, calibration: Any, options: Any) -> Path:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if options.get("sparse"):
        conv.optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if precision == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        _, samples = _signature_samples(fp32, calibration)

        def representative() -> Any:  # dicts by signature name: a list is fed in an order of TF's choosing
            for s in samples:
                yield {name: x.astype("float32") for name, x in s.items()}

        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if options.get("int8_io"):
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    try:
        out.write_bytes(conv.convert())
    except Exception as e:
        raise ConversionError(f"TFLiteConverter {precision} failed: {first_line(e)}") from None
    return out


def _with_ai_edge_quantizer(fp32: Path, out: Path, precision: str, calibration: Any) -> Path:
    from ai_edge_quantizer import quantizer, recipe, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    if precision == "fp16":
        rm = recipe_manager.RecipeManager()
        rm.add_weight_only_config(
            regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=16,
            algorithm_key=AlgorithmName.FLOAT_CASTING,
        )  # fmt: skip
        rcp = rm.get_quantization_recipe()
    elif precision == "int8-dynamic":
        rcp = recipe.dynamic_wi8_afp32()
    else:
        rcp = recipe.static_wi8_ai8()
    try:
        qt = quantizer.Quantizer(str(fp32), rcp)
        calib_result = None
        if qt.need_calibration:
            sig, samples = _signature_samples(fp32, calibration)
            calib_result = qt.calibrate({sig: samples}, num_threads=2)
        result = qt.quantize(calib_result, enable_progress_report=False)
        result.export_model(str(out), overwrite=True)
    except Exception as e:
        raise ConversionError(f"ai-edge-quantizer {precision} failed: {first_line(e)}") from None
    return out


def _signature_samples(fp32: Path, calibration: Any) -> tuple[str, list[dict[str, Any]]]:
    """Calibration samples as {signature input name: array}, matched through tensor indices."""
    from edge_sdk.backends.litert_backend import import_interpreter_module

    mod, _ = import_interpreter_module()
    interpreter = mod.Interpreter(model_path=str(fp32))
    sigs = interpreter.get_signature_list()
    key = next(iter(sigs)) if sigs else "serving_default"
    order = [d["index"] for d in interpreter.get_input_details()]  # edge_sdk's Model.inputs order
    if sigs:
        by_index = {d["index"]: name for name, d in interpreter.get_signature_runner(key).get_input_details().items()}
    else:
        by_index = {d["index"]: d["name"] for d in interpreter.get_input_details()}
    return key, [{by_index[i]: x for i, x in zip(order, s)} for s in _samples_for(fp32, calibration)]
