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

import subprocess
from pathlib import Path

#: ops that read their input as a feature map (N, C, spatial...): inputs feeding them are transposed
SPATIAL_OPS = {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Resize", "Upsample", "BatchNormalization", "InstanceNormalization", "DepthToSpace", "SpaceToDepth",
}  # fmt: skip


def simplify(src: Path, dst: Path, onnxsim: Path) -> Path:
    """``src`` constant-folded by onnxsim (slices left unfused) into ``dst``; ``src`` if onnxsim fails."""
    cmd = [str(onnxsim), str(src), str(dst), "--skip-optimization", "fuse_consecutive_slices"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return dst if proc.returncode == 0 and dst.exists() else src


def squeezes_to_reshapes(src: Path, dst: Path) -> list[str]:
    """Rewrite ``Squeeze``/``Unsqueeze`` with a fully static output shape as ``Reshape``; names rewritten."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(src)))
    graph = model.graph
    shapes = {}
    for v in [*graph.value_info, *graph.output, *graph.input]:
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
        shapes[v.name] = dims
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


def layout_kept_inputs(path: Path) -> list[str]:
    """Inputs of rank >= 3 that no spatial op reads directly: onnx2tf must not transpose them."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    kept = []
    for inp in graph.input:
        if inp.name in initializers or len(inp.type.tensor_type.shape.dim) < 3:
            continue
        readers = {n.op_type for n in graph.node if inp.name in n.input}
        if not readers & SPATIAL_OPS:
            kept.append(inp.name)
    return kept


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
    graph = model.graph
    shapes = {
        v.name: [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
        for v in [*graph.value_info, *graph.input]
    }
    rnns = [n for n in graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    steps = [shapes.get(n.input[0], [0])[0] for n in rnns]
    return bool(rnns) and all(0 < s <= MAX_UNROLLED_STEPS for s in steps)


def _onnx_outputs(path: Path) -> list[tuple[str, list[int]]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    out = []
    for o in model.graph.output:
        out.append((o.name, [d.dim_value if d.HasField("dim_value") else 0 for d in o.type.tensor_type.shape.dim]))
    return out


def _squeezed(shape: list[int] | tuple[int, ...]) -> list[int]:
    return [d for d in shape if d != 1]


def restore_onnx_outputs(saved: Path, onnx_path: Path, dst: Path) -> Path:
    """A SavedModel whose outputs carry ``onnx_path``'s names, with size-1 axis moves undone.

    onnx2tf names outputs ``output_0..N`` in ONNX order. An output whose shape differs from
    the ONNX one only by where its size-1 axes sit is reshaped back (the same bytes); a real
    NCHW -> NHWC permutation of a feature map is left as onnx2tf made it. Returns ``saved``
    unchanged when its outputs cannot be matched one to one.
    """
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
        static = all(d > 0 for d in shape) and None not in have
        fix = static and have != shape and _squeezed(have) == _squeezed(shape)
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
