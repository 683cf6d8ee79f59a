"""ONNX Runtime quantization: fp16 conversion, dynamic int8, static QDQ int8 with per-channel weights.

Static int8 takes ``scheme`` (:class:`converters.quantizers.isa.Int8Scheme`: activation/weight types and
``reduce_range`` for the target ISA) and ``exclude`` (node names kept float, ``nodes_to_exclude``); the
``fallback_*`` / ``capture`` functions let :mod:`converters.quantizers.fallback` compare a QDQ model's
intermediate tensors with the float model's and choose what to exclude."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from converters.layout import adapt_feeds
from edge_sdk.errors import ConversionError, first_line
from edge_sdk.summary.onnx_summary import ort_symbolic_shapes

#: ops dynamic int8 quantizes: ONNX Runtime's own guidance is dynamic quantization for transformers and RNNs and
#: static for CNNs. Its dynamic ConvInteger has per-tensor activations and no fast kernel: MobileNet-class models
#: fell to cosine 0.93 and ran slower than fp32. Convolutions stay float here; --precision int8 quantizes them.
DYNAMIC_OPS = ("MatMul", "Gemm", "Attention", "LSTM", "GRU", "RNN")


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
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if precision == "int8-dynamic" and options.get("prepared"):  # the fallback's probe: already prepared
        return _quantize_dynamic(fp32, out, options.get("exclude"))
    source = fp32
    fp32 = _at_least_opset(fp32, 13, ctx)  # per-channel QDQ needs DequantizeLinear's axis (opset 13)
    fp32 = _named_nodes(fp32, ctx)  # nodes_to_exclude and the fallback address nodes by name
    fp32 = _fold_conv_affine(fp32, ctx)
    prepared = ctx.workdir / f"{fp32.stem}.prep.onnx"
    try:  # our symbolic step, not ORT's: its own drops sym_shape_infer_temp.onnx into the cwd when incomplete
        inferred, complete = ort_symbolic_shapes(onnx.load(str(fp32)))
        if not complete:
            raise ValueError("incomplete symbolic shape inference")
        quant_pre_process(inferred, str(prepared), skip_symbolic_shape=True)
        prepared = _named_nodes(prepared, ctx)  # ORT's optimizer leaves the nodes it creates unnamed
    except Exception:  # pre-processing is an optimisation; quantize the original if it fails
        prepared = fp32
    if precision == "int8-dynamic":
        _reference_file(source, ctx).write_text(str(prepared))  # the fallback's float reference
        return _quantize_dynamic(prepared, out, options.get("exclude"))

    import edge_sdk
    from edge_sdk.errors import EdgeSDKError

    try:
        with edge_sdk.load(prepared) as m:
            specs = m.inputs
    except EdgeSDKError:  # ORT's pre-processing can write a graph ORT itself cannot load (DistilBERT): skip it
        if prepared == fp32:
            raise
        prepared.unlink(missing_ok=True)  # so the fallback's float reference is the file quantized below
        prepared = fp32
        with edge_sdk.load(prepared) as m:
            specs = m.inputs
    _reference_file(source, ctx).write_text(str(prepared))  # the fallback's float reference
    names = [s.name for s in specs]
    feeds = [dict(zip(names, adapt_feeds(sample, specs, calibration.input_names))) for sample in calibration.samples]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(feeds)

    scheme = options.get("scheme")
    act, weight = (scheme.onnx_activations, scheme.onnx_weights) if scheme is not None else ("u8", "s8")
    types = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[options.get("calibration_method", "minmax")]  # fmt: skip
    # "" would match every unnamed node
    excluded = list(dict.fromkeys([*(n for n in options.get("exclude") or [] if n), *gate_nodes(prepared)]))
    try:
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=types[act],
            weight_type=types[weight],
            reduce_range=bool(scheme is not None and scheme.onnx_reduce_range),
            nodes_to_exclude=excluded,
            calibrate_method=method,
            extra_options={"CalibMovingAverage": False},
        )
    except Exception as e:
        raise ConversionError(f"onnxruntime static quantization failed: {first_line(e)}") from None
    _check_quantized(out)
    return out


def _quantize_dynamic(prepared: Path, out: Path, exclude: list[str] | None) -> Path:
    """ONNX Runtime dynamic int8 of :data:`DYNAMIC_OPS` with per-channel s8 weights, the ``exclude`` nodes float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=list(DYNAMIC_OPS),
                     nodes_to_exclude=[n for n in exclude or [] if n])  # fmt: skip
    return out


#: ops a squeeze-excitation gate is computed with between its global pool and the Mul that applies it
_GATE_OPS = {"Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Clip", "Sigmoid", "HardSigmoid",
             "HardSwish", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Cast"}  # fmt: skip
_POOLS = {"GlobalAveragePool", "ReduceMean", "GlobalMaxPool", "ReduceMax"}
#: keep squeeze-excitation gates float (see :func:`gate_nodes`)
GATES_FLOAT = True


def gate_nodes(path: Path) -> list[str]:
    """Names of the nodes computing squeeze-excitation gates (MobileNetV3, EfficientNet, RegNetY, GhostNet...):
    the global pool of a feature map ``x``, the small layers on its pooled vector, up to (not including) the
    ``Mul`` that scales ``x`` by the result. They run on a vector of one value per channel, so int8 saves no
    time there, but per-tensor int8 of pooled means and of the gate rounds the small channels away and the
    error is multiplied into the whole feature map: measured, these were the layers the fallback ranked
    worst on MobileNetV3 (a pooled mean lost ~10 dB). Kept float with the rest of the model int8."""
    import onnx

    if not GATES_FLOAT:
        return []
    graph = onnx.load(str(path), load_external_data=False).graph
    producer, _ = _graph_index(graph)
    constant = {i.name for i in graph.initializer}
    constant |= {t for n in graph.node if n.op_type == "Constant" for t in n.output}

    def live(node: Any) -> list[str]:
        return [t for t in node.input if t and t not in constant and not _constant_only(t, producer, constant)]

    found: list[str] = []
    for mul in graph.node:
        if mul.op_type != "Mul" or len(live(mul)) != 2:
            continue
        for x, gate in (mul.input[:2], mul.input[1::-1]):
            path_nodes, node = [], producer.get(gate)
            for _ in range(16):
                if node is None or node.op_type not in _GATE_OPS | _POOLS:
                    break
                path_nodes.append(node.name)
                if node.op_type in _POOLS:
                    if node.input[0] == x and len(path_nodes) > 1:
                        found += path_nodes
                    break
                inputs = live(node)
                if len(inputs) != 1 and node.op_type not in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
                    break
                node = producer.get(node.input[0] if len(inputs) != 1 else inputs[0])
    return [n for n in dict.fromkeys(found) if n]


def _constant_only(tensor: str, producer: dict[str, Any], constant: set[str], depth: int = 0) -> bool:
    """True when ``tensor`` is computed from constants only (a shape computed by Shape -> Gather is not)."""
    node = producer.get(tensor)
    if node is None or depth > 6 or node.op_type == "Shape":
        return False
    return all(t in constant or _constant_only(t, producer, constant, depth + 1) for t in node.input if t)


def _check_quantized(path: Path) -> None:
    """A static int8 file with no int8 op is an fp32 file under an int8 name: refuse it, never publish it."""
    import onnx

    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    if not ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"}:
        raise ConversionError(f"onnxruntime static quantization of {path.name} quantized no op (every node excluded "
                              "or none quantizable); it would be an fp32 model named int8")  # fmt: skip


def _named_nodes(path: Path, ctx: Any) -> Path:
    """``path`` itself, or a copy where every node has a unique name (exporters leave many empty)."""
    import onnx

    model = onnx.load(str(path))
    taken = {n.name for n in model.graph.node if n.name}
    unnamed = [n for n in model.graph.node if not n.name]
    if not unnamed and len(taken) == len(model.graph.node):
        return path
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            base = f"{node.op_type}_{i}"
            node.name = base if base not in taken else f"{base}_{len(seen)}"
        seen.add(node.name)
    out = ctx.workdir / f"{path.stem}.named.onnx"
    onnx.save(model, str(out))
    return out


#: a constant per-channel scale or shift after a Conv (BatchNorm that tf2onnx left unfolded, e.g. after Keras'
#: DepthwiseConv2D, which has no bias): folded into the Conv's weights and bias
_AFFINE = {"Mul", "Add", "Sub"}


def _fold_conv_affine(path: Path, ctx: Any) -> Path:
    """``path`` itself, or a copy where each Conv -> Mul/Add/Sub by a per-output-channel constant is one Conv.

    Quantized as they are, the Conv's output is rounded per tensor *before* the scale that evens out its channels
    (a BatchNorm's gamma / sqrt(var) spans orders of magnitude), so the small channels round to zero; the Mul and
    the Add are then quantized again each. Keras MobileNetV2 through tf2onnx: every depthwise conv is followed by
    an unfolded BatchNorm Mul + Add, and int8 ONNX fell to cosine 0.36 (0% top-1). ONNX Runtime's own
    Conv+Mul / Conv+Add fusions run only when its pre-processing succeeds; this runs before it, always."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    folded = 0
    while True:
        _, readers = _graph_index(graph)
        changed = False
        for conv in graph.node:
            if conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in inits:
                continue
            after = readers.get(conv.output[0], [])
            if len(after) != 1 or conv.output[0] in outputs or after[0].op_type not in _AFFINE:
                continue
            op = after[0]
            other = [t for t in op.input if t != conv.output[0]]
            if len(other) != 1 or other[0] not in inits or list(op.input).count(conv.output[0]) != 1:
                continue
            if op.op_type == "Sub" and op.input[0] != conv.output[0]:
                continue  # c - conv is not a shift of conv
            w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
            c = numpy_helper.to_array(inits[other[0]]).astype(np.float64)
            per_channel = _per_channel(c, w.shape[0], w.ndim)
            if per_channel is None or w.dtype.kind != "f":
                continue
            has_bias = len(conv.input) > 2 and conv.input[2] != ""
            if has_bias and conv.input[2] not in inits:
                continue
            b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if has_bias else np.zeros(w.shape[0])
            if op.op_type == "Mul":
                w = w * per_channel.reshape((-1,) + (1,) * (w.ndim - 1))
                b = b * per_channel
            else:
                b = b + per_channel if op.op_type == "Add" else b - per_channel
            dtype = numpy_helper.to_array(inits[conv.input[1]]).dtype
            names = (f"{conv.name}_folded_w{folded}", f"{conv.name}_folded_b{folded}")
            graph.initializer.extend([numpy_helper.from_array(w.astype(dtype), names[0]),
                                      numpy_helper.from_array(b.astype(dtype), names[1])])  # fmt: skip
            inits[names[0]], inits[names[1]] = graph.initializer[-2], graph.initializer[-1]
            del conv.input[1:]
            conv.input.extend(names)
            conv.output[0] = op.output[0]
            graph.node.remove(op)
            folded += 1
            changed = True
            break
        if not changed:
            break
    if not folded:
        return path
    used = {t for n in graph.node for t in n.input} | outputs
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.value_info[:]  # shapes are unchanged, but the removed tensors' entries would dangle
    out = ctx.workdir / f"{path.stem}.folded.onnx"
    onnx.save(model, str(out))
    return out


def _per_channel(c: Any, channels: int, rank: int) -> Any:
    """``c`` as one value per output channel of an NCHW conv output of ``rank`` dims, or None when it is not."""
    import numpy as np

    if c.size == 1:
        return np.full(channels, float(c.reshape(-1)[0]))
    if c.ndim > rank or c.size != channels:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape  # broadcast against (N, C, spatial...)
    if shape[1] != channels:
        return None
    return c.reshape(-1)


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


# -- int8 fallback: what the QDQ model computes differently, and how to keep a layer float ------------------------

#: single-input ops that pass a tensor on unchanged in kind; ORT quantizes through them (e.g. Conv -> Relu)
_PASS_THROUGH = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "MaxPool", "Reshape", "Flatten", "Transpose",
                 "Squeeze", "Unsqueeze", "Identity", "Resize"}  # fmt: skip


def _reference_file(fp32: Path, ctx: Any) -> Path:
    return ctx.workdir / f"{fp32.stem}.quantized-from.txt"


def float_reference(fp32: Path, ctx: Any) -> Path:
    """The float model the QDQ model was made from (after ORT's pre-processing, so tensor names match)."""
    recorded = _reference_file(fp32, ctx)
    if recorded.is_file() and Path(recorded.read_text()).is_file():
        return Path(recorded.read_text())
    for stem in (f"{fp32.stem}.named", f"{fp32.stem}.opset13.named", fp32.stem, f"{fp32.stem}.opset13"):
        prepared = ctx.workdir / f"{stem}.prep.onnx"
        if prepared.exists():
            return prepared
    for stem in (f"{fp32.stem}.named", f"{fp32.stem}.opset13.named", f"{fp32.stem}.opset13"):  # not pre-processed
        if (ctx.workdir / f"{stem}.onnx").exists():
            return ctx.workdir / f"{stem}.onnx"
    return fp32


def fallback_layers(reference: Path, quantized: Path) -> tuple[list[Any], dict[str, str]]:
    """Nodes of the QDQ model that read a quantized activation, with the tensors they read and write named as in
    ``reference``, and the QDQ model's names for them: a tensor is measured as its readers see it, after its
    QuantizeLinear -> DequantizeLinear (so a Relu folded into the quantization range is counted)."""
    import onnx

    from converters.quantizers.fallback import Layer

    known = _tensor_names(onnx.load(str(reference), load_external_data=False))
    graph = onnx.load(str(quantized), load_external_data=False).graph
    producer, consumers = _graph_index(graph)
    layers, aliases = [], {}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        reads, quantized_input = [], False
        for t in filter(None, node.input):
            name, seen = t, t
            dq = producer.get(t)
            if dq is not None and dq.op_type == "DequantizeLinear":
                q = producer.get(dq.input[0])
                if q is None or q.op_type != "QuantizeLinear":
                    continue  # a quantized constant (weight, bias)
                quantized_input, name = True, q.input[0]
            if name in known:
                reads.append(name)
                aliases[name] = seen
        written = _as_read(node.output[0], consumers, known)
        if quantized_input and written is not None:
            aliases[written[0]] = written[1]
            layers.append(Layer(node.name, node.op_type, tuple(reads), written[0]))
    return layers, aliases


def weight_layers(reference: Path, quantized: Path) -> tuple[list[Any], dict[str, str]]:
    """The int8-dynamic model's quantized ops (:data:`DYNAMIC_OPS` of ``reference`` with a constant weight whose
    output the quantized model now computes with another op, MatMulInteger's rescale), reading and writing tensors
    named as in ``reference``: ``quantize_dynamic`` keeps each op's output name."""
    import onnx

    from converters.quantizers.fallback import Layer

    ref = onnx.load(str(reference), load_external_data=False).graph
    constant = {i.name for i in ref.initializer} | {n.output[0] for n in ref.node if n.op_type == "Constant"}
    quantized_producer = {t: n.op_type for n in onnx.load(str(quantized), load_external_data=False).graph.node
                          for t in n.output}  # fmt: skip
    layers = []
    for node in ref.node:
        if node.op_type not in DYNAMIC_OPS or not node.output or not any(t in constant for t in node.input):
            continue
        if quantized_producer.get(node.output[0], node.op_type) == node.op_type:
            continue  # left float (excluded, or an op type quantize_dynamic skipped)
        reads = tuple(t for t in node.input if t and t not in constant)
        layers.append(Layer(node.name, node.op_type, reads, node.output[0]))
    return layers, {}


def keep_float(reference: Path, names: list[str]) -> list[str]:
    """``nodes_to_exclude`` that keeps each named node float with the activations it reads and writes: ORT
    quantizes a tensor while any node touching it is quantized, so the producers of its inputs (back through
    Relu/Clip/... that ORT folds into the quantization), every reader of those inputs, and the readers of its
    output (forward through the same) are excluded with it."""
    import onnx

    graph = onnx.load(str(reference), load_external_data=False).graph
    producer, readers = _graph_index(graph)
    by_name = {n.name: n for n in graph.node}
    keep: list[str] = []

    def forward(node: Any) -> None:  # the node and the readers of what it writes
        keep.append(node.name)
        for reader in (r for t in node.output for r in readers.get(t, [])):
            if reader.op_type in _PASS_THROUGH and reader.name not in keep:
                forward(reader)
            else:
                keep.append(reader.name)

    for name in names:
        node = by_name.get(name)
        if node is None:
            continue
        forward(node)
        for t in filter(None, node.input):
            src = producer.get(t)
            while src is not None and src.op_type in _PASS_THROUGH and src.input and src.input[0] in producer:
                src = producer[src.input[0]]
            if src is not None:
                forward(src)
    return list(dict.fromkeys(keep))


def capture(path: Path, keys: list[str], samples: list[list[Any]], input_names: list[str]) -> Any:
    """Per sample, ``{tensor name: value}`` for the float tensors ``keys`` of the ONNX model ``path``."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    inputs = {i.name for i in model.graph.input}
    present = {o.name for o in model.graph.output}
    wanted = [k for k in keys if k not in inputs and types.get(k) == onnx.TensorProto.FLOAT]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, None)
                              for k in wanted if k not in present)  # fmt: skip
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    specs = _specs(path)
    for sample in samples:
        feeds = dict(zip([s.name for s in specs], adapt_feeds(sample, specs, input_names)))
        values = dict(zip(names, session.run(None, feeds)))
        values.update({k: np.asarray(v) for k, v in feeds.items()})
        yield {k: values[k] for k in keys if k in values}


def _graph_index(graph: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(tensor -> the node writing it, tensor -> the nodes reading it)."""
    producer = {t: n for n in graph.node for t in n.output}
    readers: dict[str, list[Any]] = {}
    for n in graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    return producer, readers


def _specs(path: Path) -> list[Any]:
    import edge_sdk

    with edge_sdk.load(path) as m:
        return m.inputs


def _tensor_names(model: Any) -> set[str]:
    return {i.name for i in model.graph.input} | {t for n in model.graph.node for t in n.output}


def _as_read(out: str, consumers: dict[str, list[Any]], known: set[str]) -> tuple[str, str] | None:
    """(float model's name, QDQ model's name) of the tensor ``out`` as its readers see it: after its
    QuantizeLinear -> DequantizeLinear when it has one (a graph output's DequantizeLinear took its name)."""
    for q in consumers.get(out, []):
        if q.op_type == "QuantizeLinear":
            for dq in consumers.get(q.output[0], []):
                if dq.op_type == "DequantizeLinear":
                    name = out if out in known else dq.output[0]
                    return (name, dq.output[0]) if name in known else None
    return (out, out) if out in known else None
