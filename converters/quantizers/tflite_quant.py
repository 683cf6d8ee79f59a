"""TFLite precision. From a SavedModel (Keras, SavedModel, and ONNX / PyTorch via onnx2tf) with
TFLiteConverter: fp16, dynamic-range int8, full int8 with a representative dataset, int8 or float
I/O, optional sparse weights. From a float .tflite only (TFLite sources, or PyTorch through the
litert-torch fallback) with ai-edge-quantizer: fp16 weights, dynamic int8, static int8 (float I/O).

Static int8 takes ``exclude`` (ops, named by their output tensor, kept float: TFLite's QuantizationDebugger
``denylisted_nodes`` on the TFLiteConverter route, a ``NO_QUANTIZE`` recipe entry with ai-edge-quantizer); the
``fallback_*`` / ``capture`` functions let :mod:`converters.quantizers.fallback` compare an int8 model's
tensors with the float model's. XNNPACK's int8 is signed and widens before accumulating, so the ISA's scheme
does not change TFLite's quantization."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.layout import adapt_feeds
from edge_sdk.errors import ConversionError, first_line


def quantize(fp32: Path, out: Path, precision: str, calibration: Any, ctx: Any, **options: Any) -> Path:
    saved = ctx.intermediates.get("savedmodel")
    if precision == "int8-dynamic" and options.get("exclude"):  # the fallback: ops kept float by recipe
        return _with_ai_edge_quantizer(fp32, out, precision, calibration, options["exclude"])
    if saved is not None:
        return _with_tflite_converter(
            Path(saved), fp32, out, precision, calibration, {**options, "sparse": getattr(ctx, "tflite_sparse", False)}
        )
    if options.get("int8_io"):
        raise ConversionError(
            "int8 inputs/outputs need TFLiteConverter (Keras, SavedModel, ONNX, or PyTorch with onnx2tf "
            "installed: make onnx2tf); a .tflite source gets int8 kernels with float I/O"
        )
    return _with_ai_edge_quantizer(fp32, out, precision, calibration, options.get("exclude"))


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

        def representative() -> Any:  # dicts by signature name (a list comes in TF's order); token ids stay int
            for s in samples:
                yield {name: x if x.dtype.kind in "iub" else x.astype("float32") for name, x in s.items()}

        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if options.get("int8_io"):
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    exclude = list(options.get("exclude") or []) if precision == "int8" else []
    try:
        out.write_bytes(_convert_keeping_float(conv, exclude) if exclude else conv.convert())
    except Exception as e:
        raise ConversionError(f"TFLiteConverter {precision} failed: {first_line(e)}") from None
    return out


def _convert_keeping_float(conv: Any, exclude: list[str]) -> bytes:
    """Full int8 except the ops writing the tensors ``exclude``, which stay float (float kernels allowed)."""
    import tensorflow as tf

    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=exclude, fully_quantize=True)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=conv.representative_dataset, debug_options=options
    )
    return debugger.get_nondebug_quantized_model()


def _with_ai_edge_quantizer(fp32: Path, out: Path, precision: str, calibration: Any, exclude: Any = None) -> Path:
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
    else:
        rcp = _dynamic_recipe(recipe) if precision == "int8-dynamic" else recipe.static_wi8_ai8()
        if exclude:  # the ops writing these tensors stay float
            import re

            rm = recipe_manager.RecipeManager()
            rm.load_quantization_recipe(rcp)
            for name in exclude:  # an op's scope is its output tensor names, each followed by ";"
                rm.add_quantization_config(
                    regex=f"^{re.escape(name)};",
                    operation_name=TFLOperationName.ALL_SUPPORTED,
                    algorithm_key=AlgorithmName.NO_QUANTIZE,
                )
            rcp = rm.get_quantization_recipe()
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


def _dynamic_recipe(recipe: Any) -> Any:
    """int8-dynamic as TFLiteConverter does it: weights under 1024 values (depthwise kernels, small heads) stay
    float. ai-edge-quantizer's plain dynamic recipe quantizes them too; on MobileNetV2-0.35 that took the
    fallback's result to top-1 28.6% where TFLiteConverter's plain int8-dynamic had 87.5%."""
    legacy = getattr(recipe, "dynamic_legacy_wi8_afp32", None)
    return legacy() if legacy is not None else recipe.dynamic_wi8_afp32()


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


# -- int8 fallback: what the int8 model computes differently, and how to keep an op float ------------------------


def float_reference(fp32: Path, ctx: Any) -> Path:
    """The float .tflite the int8 one was converted beside (same SavedModel or file: same tensor names)."""
    return fp32


def fallback_layers(reference: Path, quantized: Path) -> tuple[list[Any], dict[str, str]]:
    """Ops of the int8 model that read an integer activation, each named by its output tensor (the name TFLite's
    denylist and ai-edge-quantizer's recipe take), with the tensors it reads and writes as named in ``reference``."""
    from converters.quantizers.fallback import Layer

    known = set(_graph(reference)[1])
    ops, tensors, produced = _graph(quantized)
    layers, aliases = [], {}
    readers: dict[str, list[dict[str, Any]]] = {}
    for op in ops:
        for t in op["inputs"]:
            readers.setdefault(t, []).append(op)
    for op in ops:
        if op["op"] in ("QUANTIZE", "DEQUANTIZE") or not op["outputs"]:
            continue
        acts = [t for t in op["inputs"] if t in produced or tensors[t]["is_input"]]
        if not any(tensors[t]["dtype"].kind in "iu" for t in acts):
            continue
        reads = []
        for t in acts:
            src = produced.get(t)
            name = src["inputs"][0] if src is not None and src["op"] == "QUANTIZE" else t
            if name in known:
                reads.append(name)
                aliases[name] = t
        out = op["outputs"][0]
        deq = next((r for r in readers.get(out, []) if r["op"] == "DEQUANTIZE"), None)
        written = deq["outputs"][0] if out not in known and deq is not None else out
        if written in known:
            aliases[written] = out
            layers.append(Layer(out, op["op"], tuple(reads), written))
    return layers, aliases


def weight_layers(reference: Path, quantized: Path) -> tuple[list[Any], dict[str, str]]:
    """Ops of the int8-dynamic model with an int8 constant weight (read directly by a hybrid kernel or through a
    DEQUANTIZE) and a float output, named by their output tensor as in ``reference``."""
    import numpy as np

    from converters.quantizers.fallback import Layer

    known = set(_graph(reference)[1])
    ops, tensors, produced = _graph(quantized)

    def int8_constant(t: str) -> bool:
        src = produced.get(t)
        if src is not None and src["op"] == "DEQUANTIZE":
            t, src = src["inputs"][0], produced.get(src["inputs"][0])
        return src is None and not tensors[t]["is_input"] and tensors[t]["dtype"] == np.int8

    layers = []
    for op in ops:
        out = op["outputs"][0] if op["outputs"] else None
        if op["op"] == "DEQUANTIZE" or out not in known or tensors[out]["dtype"].kind != "f":
            continue
        if any(int8_constant(t) for t in op["inputs"]):
            reads = tuple(t for t in op["inputs"] if t in known and (t in produced or tensors[t]["is_input"]))
            layers.append(Layer(out, op["op"], reads, out))
    return layers, {}


def keep_float(reference: Path, names: list[str]) -> list[str]:
    """The ops (by output tensor) to keep float for each named op, with the activations it reads and writes: a
    float op's output is quantized again for an int8 reader, so the op, the producers of its inputs, the other
    readers of those, and the readers of its output stay float together."""
    ops = _graph(reference)[0]
    produced = {t: op for op in ops for t in op["outputs"]}
    keep: list[str] = []
    for name in names:
        sources = [name] + [t for t in (produced[name]["inputs"] if name in produced else []) if t in produced]
        for tensor in sources:
            keep.append(tensor)
            keep.extend(op["outputs"][0] for op in ops if tensor in op["inputs"] and op["outputs"])
    return list(dict.fromkeys(keep))


def capture(path: Path, keys: list[str], samples: list[list[Any]], input_names: list[str]) -> Any:
    """Per sample, ``{tensor name: float value}`` (integer tensors dequantized) of the .tflite ``path``."""
    import numpy as np

    import edge_sdk

    with edge_sdk.load(path) as m:
        specs = m.inputs
    interpreter = _interpreter(path)
    interpreter.allocate_tensors()
    details = {d["name"]: d for d in interpreter.get_tensor_details()}
    inputs = interpreter.get_input_details()
    for sample in samples:
        for d, x in zip(inputs, adapt_feeds(sample, specs, input_names)):
            scale, zero = d["quantization"]
            if np.dtype(d["dtype"]).kind in "iu" and np.asarray(x).dtype.kind == "f" and scale:  # int8 input
                info = np.iinfo(d["dtype"])
                x = np.clip(np.round(np.asarray(x) / scale + zero), info.min, info.max).astype(d["dtype"])
            interpreter.set_tensor(d["index"], x)
        interpreter.invoke()
        values = {}
        for k in keys:
            d = details.get(k)
            if d is None:
                continue
            try:
                x = interpreter.get_tensor(d["index"])
            except ValueError:  # a tensor LiteRT did not keep
                continue
            scale, zero = d["quantization"]
            if x.dtype.kind in "iu":
                if not scale:
                    continue
                x = (x.astype(np.float64) - zero) * scale
            values[k] = np.array(x)
        yield values


def _interpreter(path: Path) -> Any:
    """An interpreter without XNNPACK (which hides intermediate tensors) that keeps every tensor."""
    from edge_sdk.backends.litert_backend import import_interpreter_module

    mod, _ = import_interpreter_module()
    return mod.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )


def _graph(path: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(ops as {op, inputs, outputs} by tensor name, tensors by name, the op producing each tensor)."""
    import numpy as np

    interpreter = _interpreter(path)
    interpreter.allocate_tensors()
    by_index = {d["index"]: d for d in interpreter.get_tensor_details()}
    inputs = {d["index"] for d in interpreter.get_input_details()}
    tensors = {d["name"]: {"dtype": np.dtype(d["dtype"]), "is_input": i in inputs} for i, d in by_index.items()}
    ops = []
    for op in interpreter._get_ops_details():  # the public API has no op list
        if op["op_name"] == "DELEGATE":
            continue
        name = [by_index[i]["name"] for i in op["inputs"] if i >= 0 and i in by_index]
        outs = [by_index[i]["name"] for i in op["outputs"] if i in by_index]
        ops.append({"op": op["op_name"], "inputs": name, "outputs": outs})
    produced = {t: op for op in ops for t in op["outputs"]}
    return ops, tensors, produced
