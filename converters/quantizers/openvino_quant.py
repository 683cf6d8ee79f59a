"""OpenVINO precision: fp16 IR compression, NNCF int8 weight compression, NNCF post-training int8.

Static int8 takes ``scheme`` (:class:`converters.quantizers.isa.Int8Scheme`: NNCF's overflow fix for the target
ISA) and ``exclude`` (op names kept float: ``nncf.IgnoredScope(names=...)``); the ``fallback_*`` / ``capture``
functions let :mod:`converters.quantizers.fallback` compare an int8 IR's tensors with the float IR's."""

from __future__ import annotations

import logging
import re
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
            ov.save_model(_compress_weights(fp32, options.get("exclude") or []), str(out), compress_to_fp16=False)
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
            ignored_scope=nncf.IgnoredScope(names=list(dict.fromkeys([*(options.get("exclude") or []),
                                                                       *gate_ops(model), *recurrent_ops(model)])),
                                           validate=False),
            **_nncf_options(options.get("exact_weights", False), options.get("scheme")),
        )
    except Exception as e:
        raise ConversionError(f"NNCF {precision} quantization failed: {first_line(e)}") from None
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return out


#: the OpenVINO CPU plugin pass that rewrites a weight-compressed 1x1 Convolution into a MatMul; it fails on load
#: when the activation comes from some producers (VariadicSplit in yolo11n's attention, a dynamic-batch Reshape in
#: EfficientNetV2's squeeze-excitation): "[ConvertWeightCompressedConv1x1ToMatmul] END: node: opset1::Convolution
#: NAME (opset1::VariadicSplit ..."
_CONV1X1_PASS = re.compile(r"ConvertWeightCompressedConv1x1ToMatmul\].*?node: \w+::Convolution (\S+) \(\w+::(\w+)")
#: compress-and-compile attempts before giving up on the workaround
_COMPILE_ATTEMPTS = 6


def _compress_weights(fp32: Path, exclude: list[str]) -> Any:
    """NNCF int8 weight compression of the IR ``fp32`` (the ops named in ``exclude`` kept float: the fallback's),
    checked by compiling it for CPU.

    Depthwise convolutions (GroupConvolution) stay float: a few weights per channel whose int8 rounding dominates
    their output took MobileNet-class models below cosine 0.98, and they are a sliver of the model's size. When
    the CPU plugin cannot compile the result (its ConvertWeightCompressedConv1x1ToMatmul pass, see
    :data:`_CONV1X1_PASS`), the convolution it names and every other 1x1 convolution reading the same kind of
    producer are left float too, and it is compressed again, until it compiles."""
    import nncf
    import openvino as ov

    core = ov.Core()
    names: list[str] = []
    for _ in range(_COMPILE_ATTEMPTS):
        model = core.read_model(str(fp32))
        ignored = nncf.IgnoredScope(names=list(dict.fromkeys([*exclude, *names])), types=["GroupConvolution"],
                                    validate=False)  # fmt: skip
        compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM, ignored_scope=ignored)
        try:
            core.compile_model(compressed, "CPU")
            if names:
                logging.getLogger("edge_sdk").info("OpenVINO int8-dynamic: %d 1x1 convolution(s) kept float (the CPU "
                                                   "plugin's ConvertWeightCompressedConv1x1ToMatmul fails on them)",
                                                   len(names))  # fmt: skip
            return compressed
        except Exception as e:  # the plugin raises a bare RuntimeError
            found = _CONV1X1_PASS.search(" ".join(str(e).split()))
            if found is None:
                raise
            more = [found.group(1), *_conv1x1_reading(core.read_model(str(fp32)), found.group(2))]
            if set(more) <= set(names):
                raise
            names += [n for n in more if n not in names]
    raise ConversionError(
        f"OpenVINO could not compile the weight-compressed {fp32.name} for CPU after keeping "
        f"{len(names)} 1x1 convolution(s) float (ConvertWeightCompressedConv1x1ToMatmul)"
    )


def _conv1x1_reading(model: Any, producer_type: str) -> list[str]:
    """Names of the 1x1 Convolutions of ``model`` whose activation is written by an op of ``producer_type``."""
    found = []
    for op in model.get_ops():
        if op.get_type_name() != "Convolution":
            continue
        kernel = op.input_value(1).get_partial_shape()
        spatial = [d.get_length() if d.is_static else 0 for d in list(kernel)[2:]] if kernel.rank.is_static else [0]
        if all(s == 1 for s in spatial) and op.input_value(0).get_node().get_type_name() == producer_type:
            found.append(op.get_friendly_name())
    return found


#: ops a squeeze-excitation gate is computed with between its global pool and the Multiply that applies it
_GATE_OPS = {"Convolution", "MatMul", "Add", "Subtract", "Multiply", "Divide", "Relu", "Clamp", "Sigmoid",
             "HSigmoid", "HardSigmoid", "HSwish", "Swish", "Reshape", "Squeeze", "Unsqueeze", "Transpose",
             "Convert"}  # fmt: skip
_POOLS = {"ReduceMean", "ReduceMax", "AvgPool"}
#: keep squeeze-excitation gates float (see :func:`gate_ops`)
GATES_FLOAT = True


def gate_ops(model: Any) -> list[str]:
    """Names of the ops computing squeeze-excitation gates: the global pool of a feature map ``x``, the small
    layers on its pooled vector, up to (not including) the Multiply that scales ``x`` by the result. As
    :func:`converters.quantizers.onnx_quant.gate_nodes`: int8 saves no time on a vector of one value per channel,
    and its per-tensor rounding of pooled means is multiplied into the whole feature map."""
    if not GATES_FLOAT:
        return []
    found: list[str] = []
    for mul in model.get_ops():
        if mul.get_type_name() != "Multiply":
            continue
        values = [v for v in mul.input_values() if not _constant(v.get_node())]
        if len(values) != 2:
            continue
        for x, gate in (values, values[::-1]):
            path, node = [], gate.get_node()
            for _ in range(16):
                if node.get_type_name() not in _GATE_OPS | _POOLS:
                    break
                path.append(node.get_friendly_name())
                live = [v for v in node.input_values() if not _constant(v.get_node())]
                if node.get_type_name() in _POOLS:
                    if live and live[0] == x and len(path) > 1:
                        found += path
                    break
                if not live or (len(live) != 1 and node.get_type_name() not in ("Reshape", "Squeeze", "Unsqueeze")):
                    break
                node = live[0].get_node()
    return list(dict.fromkeys(found))


def recurrent_ops(model: Any) -> list[str]:
    """Names of the ops on a recurrent state's path: from a state input (a Parameter after the first) to the
    output it becomes on the next call (a Result of the same shape whose name extends the input's: ``state`` ->
    ``stateN``, ``h0`` -> ``h0_out``), as :func:`converters.stateful.state_links` pairs them. int8 error on that
    path is fed back every window and compounds: Silero VAD's state output fell to cosine 0.71 with its LSTM
    int8. The rest of the model (the convolutional encoder) stays int8."""
    params = model.get_parameters()[1:]
    results = model.get_results()
    found: list[str] = []
    for param in params:
        name = param.get_friendly_name()
        shape = param.get_partial_shape()
        for result in results:
            source = result.input_value(0)
            names = {result.get_friendly_name(), source.get_node().get_friendly_name(), *source.get_names()}
            if source.get_partial_shape() != shape or not any(n != name and n.startswith(name) for n in names):
                continue
            ancestors: set[str] = set()
            stack = [source.get_node()]
            while stack:
                node = stack.pop()
                if node.get_friendly_name() in ancestors or _constant(node):
                    continue
                ancestors.add(node.get_friendly_name())
                stack.extend(v.get_node() for v in node.input_values())
            seen: set[str] = set()
            stack = [param]
            while stack:
                node = stack.pop()
                if node.get_friendly_name() in seen:
                    continue
                seen.add(node.get_friendly_name())
                stack.extend(r for r in _readers(node) if r.get_friendly_name() in ancestors)
            found += [n for n in seen if n != name]
    return list(dict.fromkeys(found))


def _nncf_options(exact_weights: bool, scheme: Any = None) -> dict[str, Any]:
    """NNCF options: the scheme's overflow fix (7-bit weights where u8 x s8 saturates); for weights already on
    their int8 grid (GPTQ) where the ISA takes full 8 bits, no overflow fix, no bias correction and min/max
    ranges, so the grid survives. On x86 without VNNI full-range weights saturate (GPTQ weights kept as they
    were: EfficientNet-Lite0 74.5% top-1 agreement), so there the scheme's own options apply."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    fix = {"enable": OverflowFix.ENABLE, "first_layer": OverflowFix.FIRST_LAYER, "disable": OverflowFix.DISABLE}
    if exact_weights and scheme is not None and scheme.openvino_overflow_fix != "disable":
        # the ISA needs 7-bit weights, so GPTQ's 8-bit grid is re-rounded anyway: then NNCF's bias correction is
        # what compensates that rounding (EfficientNet-Lite0 on x86-avx2, 200 crops: exact-weight options with
        # the overflow fix needed the fallback to keep one layer float for 91.0%; NNCF's own options 95.5%)
        exact_weights = False
    if not exact_weights:
        options: dict[str, Any] = {"fast_bias_correction": True}
        if scheme is not None:  # 7-bit weights where u8 x s8 saturates (x86 without VNNI), full 8 bits elsewhere
            options["advanced_parameters"] = AdvancedQuantizationParameters(
                overflow_fix=fix[scheme.openvino_overflow_fix]
            )
        return options

    return {
        "advanced_parameters": AdvancedQuantizationParameters(
            overflow_fix=fix[scheme.openvino_overflow_fix] if scheme is not None else OverflowFix.DISABLE,
            disable_bias_correction=True,
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
        )
    }


# -- int8 fallback: what the int8 IR computes differently, and how to keep a layer float -------------------------

#: ops whose output passes on to one reader unchanged in kind (bias Add, activations): NNCF quantizes after them
_CHAIN = {"Add", "Multiply", "Subtract", "Relu", "Clamp", "Swish", "HSwish", "Sigmoid", "Gelu", "PRelu", "Reshape"}
_NOT_LAYERS = {"Constant", "Parameter", "Result", "FakeQuantize", "Convert", "ShapeOf"}


def float_reference(fp32: Path, ctx: Any) -> Path:
    """The float IR the int8 IR was made from (NNCF keeps its op names)."""
    return fp32


def fallback_layers(reference: Path, quantized: Path) -> tuple[list[Any], dict[str, str]]:
    """Ops of the int8 IR that read a FakeQuantize'd activation; each writes the tensor at the end of its chain
    (bias, activation) as its readers see it, after the FakeQuantize NNCF put there."""
    import openvino as ov

    from converters.quantizers.fallback import Layer

    core = ov.Core()
    known = {op.get_friendly_name() for op in core.read_model(str(reference)).get_ops()}
    layers, aliases = [], {}
    for op in core.read_model(str(quantized)).get_ordered_ops():
        if op.get_type_name() in _NOT_LAYERS or _constant(op):
            continue
        reads, quantized_input = [], False
        for port in op.inputs():
            src = port.get_source_output().get_node()
            if _constant(src):
                continue
            if src.get_type_name() == "FakeQuantize":
                quantized_input, fq = True, src
                src = fq.input_value(0).get_node()
                aliases[src.get_friendly_name()] = fq.get_friendly_name()
            if src.get_friendly_name() in known:
                reads.append(src.get_friendly_name())
        end, fq_name = _chain_end(op)
        if quantized_input and end in known:
            if fq_name:
                aliases[end] = fq_name
            layers.append(Layer(op.get_friendly_name(), op.get_type_name(), tuple(reads), end))
    return layers, aliases


#: ops whose weights ``nncf.compress_weights`` compresses
_WEIGHTED = {"MatMul", "Convolution", "Gather"}


def weight_layers(reference: Path, quantized: Path) -> tuple[list[Any], dict[str, str]]:
    """The weight-compressed IR's ops whose weight is now an int8 constant with its decompression (Convert ->
    Subtract -> Multiply), reading the ops that compute their activations; NNCF keeps the op names."""
    import openvino as ov

    from converters.quantizers.fallback import Layer

    core = ov.Core()
    known = {op.get_friendly_name() for op in core.read_model(str(reference)).get_ops()}
    layers = []
    for op in core.read_model(str(quantized)).get_ordered_ops():
        if op.get_type_name() not in _WEIGHTED or op.get_friendly_name() not in known:
            continue
        weights = [v.get_node() for v in op.input_values() if _constant(v.get_node())]
        if not any(_has_int8_constant(w) for w in weights):
            continue
        reads = tuple(v.get_node().get_friendly_name() for v in op.input_values()
                      if not _constant(v.get_node()) and v.get_node().get_friendly_name() in known)  # fmt: skip
        layers.append(Layer(op.get_friendly_name(), op.get_type_name(), reads, op.get_friendly_name()))
    return layers, {}


def _has_int8_constant(node: Any, depth: int = 0) -> bool:
    """True when the constant subgraph ``node`` starts from an 8-bit Constant (a compressed weight)."""
    if node.get_type_name() == "Constant":
        return node.get_output_element_type(0).get_type_name() in ("u8", "i8")
    return depth < 4 and any(_has_int8_constant(v.get_node(), depth + 1) for v in node.input_values())


def keep_float(reference: Path, names: list[str]) -> list[str]:
    """``IgnoredScope`` names that keep each named op float with the activations it reads and writes: NNCF puts a
    FakeQuantize on the inputs of the ops it quantizes, so the op, the ops whose chains (bias, activation) end
    in its inputs, the other readers of those, and the op's own chain and its readers are ignored."""
    import openvino as ov

    ops = {op.get_friendly_name(): op for op in ov.Core().read_model(str(reference)).get_ops()}
    keep: list[str] = []

    def forward(op: Any) -> None:  # the op, its chain, and the readers of the chain's end
        for _ in range(6):
            keep.append(op.get_friendly_name())
            readers = _readers(op)
            keep.extend(r.get_friendly_name() for r in readers)
            if len(readers) != 1 or not _in_chain(readers[0]):
                return
            op = readers[0]

    for name in names:
        op = ops.get(name)
        if op is None:
            continue
        forward(op)
        for value in op.input_values():
            src = value.get_node()
            for _ in range(6):  # back over the chain to the op that computes it
                if _constant(src) or src.get_type_name() == "Parameter" or not _in_chain(src):
                    break
                src = next(v.get_node() for v in src.input_values() if not _constant(v.get_node()))
            if not _constant(src) and src.get_type_name() != "Parameter":
                forward(src)
    return list(dict.fromkeys(keep))


def capture(path: Path, keys: list[str], samples: list[list[Any]], input_names: list[str]) -> Any:
    """Per sample, ``{op name: its first output}`` for the f32 ops ``keys`` of the IR ``path``."""
    import numpy as np
    import openvino as ov

    from edge_sdk.backends.openvino_backend import _spec

    core = ov.Core()
    model = core.read_model(str(path))
    specs = [_spec(p, i) for i, p in enumerate(model.inputs)]
    ops = {op.get_friendly_name(): op for op in model.get_ops()}
    params = {op.get_friendly_name(): i for i, op in enumerate(model.get_parameters())}
    wanted = [k for k in keys if k in ops and k not in params and ops[k].get_type_name() != "Result"
              and ops[k].get_output_size() and ops[k].get_output_element_type(0) == ov.Type.f32]  # fmt: skip
    results = [r.get_node().get_friendly_name() for r in model.add_outputs([ops[k].output(0) for k in wanted])]
    index = {r.get_node().get_friendly_name(): i for i, r in enumerate(model.outputs)}  # compiled keeps this order
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    for sample in samples:
        feeds = adapt_feeds(sample, specs, input_names)
        request.infer(feeds)
        values = {k: np.array(request.get_output_tensor(index[r]).data) for k, r in zip(wanted, results)}
        values.update({k: np.asarray(feeds[i]) for k, i in params.items() if k in keys})
        yield values


def _constant(node: Any, depth: int = 0) -> bool:
    """True for a Constant or an op computed from constants only (NNCF's int8 weight -> Convert -> Multiply)."""
    if node.get_type_name() == "Constant":
        return True
    if depth > 4 or node.get_type_name() == "Parameter" or node.get_input_size() == 0:
        return False
    return all(_constant(v.get_node(), depth + 1) for v in node.input_values())


def _readers(op: Any) -> list[Any]:
    return [t.get_node() for out in op.outputs() for t in out.get_target_inputs()]


def _in_chain(op: Any) -> bool:
    """A bias/activation op: in the chain set and every input but one constant."""
    live = [v for v in op.input_values() if not _constant(v.get_node())]
    return op.get_type_name() in _CHAIN and len(live) == 1


def _chain_end(op: Any) -> tuple[str, str | None]:
    """(the last op of ``op``'s bias/activation chain, the FakeQuantize on its output or None)."""
    for _ in range(6):
        readers = _readers(op)
        fq = next((r for r in readers if r.get_type_name() == "FakeQuantize"), None)
        if fq is not None:
            return op.get_friendly_name(), fq.get_friendly_name()
        if len(readers) != 1 or not _in_chain(readers[0]):
            break
        op = readers[0]
    return op.get_friendly_name(), None
