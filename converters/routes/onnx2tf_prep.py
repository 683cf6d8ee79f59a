"""Make an ONNX graph safe for onnx2tf's NCHW -> NHWC rewrite, and undo its renaming afterwards.

onnx2tf guesses the layout of every tensor. Three of its guesses break real models
(Silero VAD among them), so we take the guessing away where we can:

1. ``onnxsim`` folds shape arithmetic (e.g. computed ``Pad`` amounts) to constants so every
   shape is static, but **without** fusing consecutive ``Slice`` nodes: onnx2tf maps the axes
   of a fused multi-axis slice wrongly after transposing to NHWC.
2. Static ``Squeeze``/``Unsqueeze`` become ``Reshape`` to the same shape: onnx2tf converts
   those axes one by one and loses track of which is the channel (waveform -> ``Unsqueeze``
   -> ``Conv1d`` came out with 640 "channels").
3. Recurrent layers with a short static sequence are unrolled (``-eru``); see
   :func:`unrollable_rnns`.
4. Inputs that are not feature maps (recurrent state, token ids: no convolution or pooling
   reads them) keep their layout (``-kat``) instead of being transposed like images.

After conversion, :func:`restore_onnx_outputs` renames the SavedModel's ``output_0..N`` back
to the ONNX output names and undoes moves of size-1 axes (a ``(2, 1, 128)`` LSTM state that
came out as ``(1, 2, 128)``), so a state output can be fed straight back as the next input.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from converters.cleanup import run_tool

log = logging.getLogger("edge_sdk.convert")

#: ops that read their input as a feature map (N, C, spatial...): inputs feeding them are transposed
SPATIAL_OPS = {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Resize", "Upsample", "BatchNormalization", "InstanceNormalization", "DepthToSpace", "SpaceToDepth",
}  # fmt: skip


#: ops a feature map passes through unchanged in layout (normalisation, casts, activations, padding)
PASS_THROUGH_OPS = {
    "Add", "Sub", "Mul", "Div", "Cast", "Pad", "Identity", "Clip", "Relu", "Sigmoid", "Tanh", "LeakyRelu",
    "HardSigmoid", "HardSwish", "Neg", "Abs", "Sqrt", "Pow", "QuantizeLinear", "DequantizeLinear",
}  # fmt: skip
SIMPLIFY_TIMEOUT_S = 600


def simplify(src: Path, dst: Path, onnxsim: Path) -> Path | None:
    """``src`` constant-folded by onnxsim (slices left unfused) into ``dst``; None if onnxsim is missing or fails."""
    if not onnxsim.is_file():
        return None
    cmd = [str(onnxsim), str(src), str(dst), "--skip-optimization", "fuse_consecutive_slices"]
    try:
        proc = run_tool(cmd, timeout=SIMPLIFY_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return dst if proc.returncode == 0 and dst.exists() else None


def static_shapes(model: object) -> dict[str, list[int]]:
    """Tensor name -> dims, 0 where unknown (:func:`edge_sdk.summary.onnx_summary.tensor_shapes`)."""
    from edge_sdk.summary.onnx_summary import tensor_shapes

    return {name: [d or 0 for d in dims] for name, dims in tensor_shapes(model).items()}


def squeezes_to_reshapes(src: Path, dst: Path) -> list[str]:
    """Rewrite ``Squeeze``/``Unsqueeze`` with a fully static output shape as ``Reshape``; names rewritten."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(src)))
    graph = model.graph
    shapes = static_shapes(model)
    rewritten, nodes = [], []
    for node in graph.node:
        shape = shapes.get(node.output[0]) if node.output else None
        if node.op_type in ("Squeeze", "Unsqueeze") and shape is not None and all(d > 0 for d in shape):
            const = f"{node.output[0]}__static_shape"
            graph.initializer.append(numpy_helper.from_array(np.array(shape, np.int64), const))
            nodes.append(helper.make_node("Reshape", [node.input[0], const], list(node.output), name=node.name))
            rewritten.append(node.name)
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(dst))
    return rewritten


#: the least value an activation can write (SiLU's minimum is x sigmoid(x) = -0.2784645... at x ~ -1.2785;
#: the bound sits just below it, so a padded element never beats a real one)
LOWER_BOUNDS = {"Relu": 0.0, "Sigmoid": 0.0, "HardSigmoid": 0.0, "Softplus": 0.0, "HardSwish": -0.375}
SILU_MIN = -0.2785


def bounded_max_pools(src: Path, dst: Path) -> list[str]:
    """Pad each padded ``MaxPool`` whose input has a known least value (a Relu, Clip, SiLU... writes it) with that
    value in a ``Pad`` of its own, and pool unpadded; names rewritten. Exact: every window still holds an input
    value >= the bound. onnx2tf pads a MaxPool with -3.4e38, and static int8 calibrates that constant into the
    tensor's range: ResNet's stem got scale 1.3e36 and a file LiteRT cannot prepare (XNNPACK refuses it, the
    builtin kernels abort)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    producer = {t: n for n in graph.node for t in n.output}
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)  # Pad takes inputs from 11
    rewritten, nodes = [], []
    types: dict[str, type] | None = None  # inferred on the first pool rewritten
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        pads = list(attrs.get("pads") or [])
        bound = _lower_bound(producer.get(node.input[0]), producer, constants) if node.op_type == "MaxPool" else None
        indices = len(node.output) > 1 and bool(node.output[1])  # flat indices would point into the padded tensor
        if (bound is None or not any(pads) or indices or opset < 11 or attrs.get("ceil_mode", 0)
                or attrs.get("auto_pad", b"NOTSET") != b"NOTSET"):  # fmt: skip
            nodes.append(node)
            continue
        types = types if types is not None else _float_types(model)
        if node.input[0] not in types:  # a type not inferred, or not float: the Pad value could not match it
            nodes.append(node)
            continue
        half = len(pads) // 2
        tag = f"{node.name or node.output[0]}__bounded_pad"
        graph.initializer.extend([
            numpy_helper.from_array(np.array([0, 0, *pads[:half], 0, 0, *pads[half:]], np.int64), f"{tag}_pads"),
            numpy_helper.from_array(np.array(bound, types[node.input[0]]), f"{tag}_value"),
        ])  # fmt: skip
        nodes.append(helper.make_node("Pad", [node.input[0], f"{tag}_pads", f"{tag}_value"], [f"{tag}_out"],
                                      name=tag, mode="constant"))  # fmt: skip
        kept = {k: v for k, v in attrs.items() if k != "pads"}
        nodes.append(helper.make_node("MaxPool", [f"{tag}_out"], list(node.output), name=node.name, **kept))
        rewritten.append(node.name or node.output[0])
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
    onnx.save(model, str(dst))
    return rewritten


def _float_types(model: object) -> dict[str, type]:
    """Each typed tensor's numpy float type (a Pad value must match its input's: fp16 models)."""
    import numpy as np
    import onnx

    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception as e:  # shape inference refuses some graphs (> 2 GB...): what the file itself declares
        log.debug("shape inference for the MaxPool rewrite failed: %s", e)
        graph = model.graph  # type: ignore[attr-defined]
    kinds = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
             onnx.TensorProto.DOUBLE: np.float64}  # fmt: skip
    return {v.name: kinds[v.type.tensor_type.elem_type] for v in (*graph.input, *graph.value_info, *graph.output)
            if v.type.tensor_type.elem_type in kinds}  # fmt: skip


def _lower_bound(node: object, producer: dict, constants: dict) -> float | None:
    """The least value ``node``'s output can take, when its op bounds it; None when unknown."""
    if node is None:
        return None
    op = node.op_type
    if op in LOWER_BOUNDS:
        return LOWER_BOUNDS[op]
    if op == "Clip":
        low = node.input[1] if len(node.input) > 1 and node.input[1] else None
        if low is not None and low in constants:
            return float(constants[low])
        return next((float(a.f) for a in node.attribute if a.name == "min"), None)
    if op == "Mul" and len(node.input) == 2:  # SiLU: x * Sigmoid(x)
        for x, gate in (node.input, node.input[::-1]):
            g = producer.get(gate)
            if g is not None and g.op_type == "Sigmoid" and g.input[0] == x:
                return SILU_MIN
    return None


def layout_kept_inputs(path: Path) -> list[str]:
    """Inputs of rank >= 3 that reach no spatial op (directly or through normalisation, casts, activations,
    padding): onnx2tf must not transpose them as if they were images."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    readers: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)
    kept = []
    for inp in graph.input:
        if inp.name in initializers or len(inp.type.tensor_type.shape.dim) < 3:
            continue
        if not _reaches_spatial_op(inp.name, readers):
            kept.append(inp.name)
    return kept


def _reaches_spatial_op(name: str, readers: dict[str, list], depth: int = 8) -> bool:
    frontier, seen = [name], {name}
    for _ in range(depth):
        following = []
        for tensor in frontier:
            for node in readers.get(tensor, []):
                if node.op_type in SPATIAL_OPS:
                    return True
                if node.op_type in PASS_THROUGH_OPS:
                    following += [o for o in node.output if o not in seen]
        seen.update(following)
        frontier = following
    return False


#: ops with no TFLite builtin that onnx2tf can rewrite into builtins (its ``-rtpo``, float math identities).
#: Without it they reach TFLite as TF ops that need the Flex delegate, and the conversion fails. ``Erf`` is
#: rewritten before onnx2tf instead (:mod:`converters.routes.onnx_decompose`): its pseudo-Erf is not int8-safe.
PSEUDO_OPS = ("Asin", "Acos", "Atan")


def pseudo_operators(path: Path) -> list[str]:
    """The :data:`PSEUDO_OPS` present in ``path``, for onnx2tf's ``-rtpo`` (replace with builtin-only math)."""
    import onnx

    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    return [op for op in PSEUDO_OPS if op in ops]


#: longest recurrent sequence unrolled into plain ops (beyond it the graph would grow too much)
MAX_UNROLLED_STEPS = 64


def unrollable_rnns(path: Path) -> bool:
    """True when every LSTM/GRU/RNN runs a static number of steps <= MAX_UNROLLED_STEPS.

    Unrolled, the recurrence becomes plain ops; kept as a TFLite WHILE loop it cannot be
    int8-calibrated (TensorFlow's calibrator crashes on it) and XNNPACK cannot run it.
    """
    import onnx
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = static_shapes(model)
    rnns = [n for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    steps = []
    for n in rnns:
        batch_first = any(a.name == "layout" and a.i == 1 for a in n.attribute)  # (batch, seq, ...) when 1
        dims = shapes.get(n.input[0], [])
        steps.append(dims[1 if batch_first else 0] if len(dims) >= 2 else 0)
    return bool(rnns) and all(0 < s <= MAX_UNROLLED_STEPS for s in steps)


def _onnx_outputs(path: Path) -> list[tuple[str, list[int] | None]]:
    """(name, dims) of each graph output; dims None when the output declares no shape."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    shapes = static_shapes(model)
    return [(o.name, shapes.get(o.name)) for o in model.graph.output]


def _squeezed(shape: list[int] | tuple[int, ...]) -> list[int]:
    return [d for d in shape if d != 1]


def restore_onnx_outputs(saved: Path, onnx_path: Path, dst: Path) -> Path:
    """A SavedModel whose outputs carry ``onnx_path``'s names, with size-1 axis moves undone.

    onnx2tf names outputs ``output_0..N`` in ONNX order. An output whose shape differs from
    the ONNX one only by where its size-1 axes sit is reshaped back (the same bytes); a real
    NCHW -> NHWC permutation of a feature map is left as onnx2tf made it. Returns ``saved``
    unchanged when its outputs cannot be matched one to one or the rewrite fails (it is best effort:
    the validation pairs outputs by shape and values either way).
    """
    try:
        return _restore_onnx_outputs(saved, onnx_path, dst)
    except Exception as e:  # noqa: BLE001 - a TF load/save failure must not end a working conversion
        log.warning("could not restore ONNX output names on the onnx2tf SavedModel (%s); keeping output_0..N", e)
        return saved


def _restore_onnx_outputs(saved: Path, onnx_path: Path, dst: Path) -> Path:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved))
    fn = loaded.signatures["serving_default"]
    produced = fn.structured_outputs
    wanted = _onnx_outputs(onnx_path)
    keys = [f"output_{i}" for i in range(len(wanted))]
    if sorted(produced) != sorted(keys):
        return saved
    plan = []
    for key, (name, shape) in zip(keys, wanted):
        have = produced[key].shape.as_list()
        static = shape is not None and all(d > 0 for d in shape) and None not in have
        fix = static and have != shape and _squeezed(have) == _squeezed(shape)  # type: ignore[arg-type]
        plan.append((key, name, shape if fix else None))
    specs = fn.structured_input_signature[1]
    input_names = sorted(specs)

    class Restored(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = loaded

        @tf.function(input_signature=[specs[n] for n in input_names])
        def serve(self, *args):
            result = self.inner.signatures["serving_default"](**dict(zip(input_names, args)))
            return {name: (tf.reshape(result[key], shape) if shape else result[key]) for key, name, shape in plan}

    module = Restored()
    tf.saved_model.save(module, str(dst), signatures={"serving_default": module.serve.get_concrete_function()})
    return dst
