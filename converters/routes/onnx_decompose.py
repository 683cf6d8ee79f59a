"""Rewrite ONNX ops that a target has no kernel for into ops it has: Erf before onnx2tf (TFLite), Erfc after tf2onnx.

``Erf`` (the heart of exact GELU in BERT, ViT, Whisper, ConvNeXt...) otherwise reaches TFLite as
``tf.Erf``, which only the Flex delegate runs, so the conversion fails. It becomes

    erf(x) ~= tanh(z * (a + b z^2 + c z^4)),   z = clip(x, -4, 4)

with constants fitted for the smallest maximum error on [-5, 5]: 3.7e-5 (fp32 GELU outputs keep a
cosine of 1.0000 to 5 digits). Every op in it (Clip, Mul, Add, Tanh) has an int8 TFLite kernel, which
onnx2tf's own pseudo-Erf (a division by ``|x| + eps``) lacks: its int8 DIV fails on a zero divisor.
The clip keeps the polynomial positive (it turns at |x| ~ 8.2); erf(4) is 1 - 1.5e-8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: erf(x) ~= tanh(x (A + B x^2 + C x^4)) on |x| <= CLIP; max abs error 3.7e-5
ERF_A, ERF_B, ERF_C = 1.12814338, 0.10408119, -0.00178647
ERF_CLIP = 4.0


def decompose_for_tflite(src: Path, dst: Path) -> list[str]:
    """Write ``src`` to ``dst`` with every ``Erf`` rewritten as builtin-only math; names of the rewritten nodes."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    nodes, rewritten = [], []
    for node in graph.node:
        if node.op_type != "Erf" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        tag = f"{node.name or node.output[0]}__erf"

        def const(suffix: str, value: float, tag: str = tag) -> str:
            name = f"{tag}_{suffix}"
            graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), name))
            return name

        x, y = node.input[0], node.output[0]
        z, z2, z4 = f"{tag}_z", f"{tag}_z2", f"{tag}_z4"
        bz2, cz4, poly, poly2, arg = (f"{tag}_{s}" for s in ("bz2", "cz4", "poly", "poly2", "arg"))
        nodes += [
            helper.make_node("Clip", [x, const("lo", -ERF_CLIP), const("hi", ERF_CLIP)], [z], name=f"{tag}_clip"),
            helper.make_node("Mul", [z, z], [z2], name=f"{tag}_sq"),
            helper.make_node("Mul", [z2, z2], [z4], name=f"{tag}_sq2"),
            helper.make_node("Mul", [z2, const("b", ERF_B)], [bz2], name=f"{tag}_mul_b"),
            helper.make_node("Mul", [z4, const("c", ERF_C)], [cz4], name=f"{tag}_mul_c"),
            helper.make_node("Add", [bz2, const("a", ERF_A)], [poly], name=f"{tag}_add_a"),
            helper.make_node("Add", [poly, cz4], [poly2], name=f"{tag}_add_c"),
            helper.make_node("Mul", [z, poly2], [arg], name=f"{tag}_mul_z"),
            helper.make_node("Tanh", [arg], [y], name=node.name or f"{tag}_tanh"),
        ]
        rewritten.append(node.name or y)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(dst))
    return rewritten


def standard_onnx(path: Path, route: str) -> list[str]:
    """Make a converter's ONNX output standard, in place: ``Erfc`` (tf2onnx writes it for Keras' exact GELU,
    but ONNX has no such op) becomes ``1 - Erf(x)``; ``TFL_GELU`` (TFLite fuses GELU into one op, which
    ``tf2onnx --tflite`` passes through under its TFLite name) becomes its formula. Any other op unknown to ONNX is an
    :class:`~edge_sdk.errors.UnsupportedOperatorError` naming the op, the node and ``route``.
    Returns the names of the rewritten nodes."""
    import numpy as np
    import onnx
    from onnx import defs, helper, numpy_helper

    from edge_sdk.errors import UnsupportedOperatorError

    model = onnx.load(str(path))
    graph = model.graph
    nodes, rewritten, unknown = [], [], []
    for node in graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type == "Erfc":
            one, erf = f"{node.name or node.output[0]}__one", f"{node.output[0]}__erf"
            graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), one))
            nodes += [helper.make_node("Erf", [node.input[0]], [erf], name=f"{node.name}__erf"),
                      helper.make_node("Sub", [one, erf], list(node.output), name=node.name)]  # fmt: skip
            rewritten.append(node.name)
            continue
        if node.domain in ("", "ai.onnx") and node.op_type == "TFL_GELU":  # TFLite's fused GELU (tf2onnx --tflite)
            nodes += _gelu_nodes(node, graph)
            rewritten.append(node.name or node.output[0])
            continue
        if node.domain in ("", "ai.onnx") and not defs.has(node.op_type):
            unknown.append(f"{node.op_type} (node '{node.name}')")
        nodes.append(node)
    if unknown:
        raise UnsupportedOperatorError(
            f"{route} wrote op(s) ONNX does not define: {', '.join(unknown[:5])}; convert to TFLite or OpenVINO "
            "instead, or replace the layer in the source model"
        )
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.save(model, str(path))
    return rewritten


def _gelu_nodes(node: Any, graph: Any) -> list[Any]:
    """ONNX nodes computing TFLite's GELU of ``node`` (attribute ``approximate``: the tanh form), constants added
    to ``graph``: 0.5 x (1 + erf(x / sqrt 2)), or 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    import math

    import numpy as np
    from onnx import helper, numpy_helper

    approximate = any(a.name == "approximate" and helper.get_attribute_value(a) for a in node.attribute)
    x, y = node.input[0], node.output[0]
    tag = f"{node.name or y}__gelu"

    def const(name: str, value: float) -> str:
        graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), f"{tag}_{name}"))
        return f"{tag}_{name}"

    def op(kind: str, inputs: list[str], name: str) -> Any:
        return helper.make_node(kind, inputs, [f"{tag}_{name}"], name=f"{tag}_{name}")

    if approximate:
        inner = [op("Mul", [x, x], "x2"), op("Mul", [f"{tag}_x2", x], "x3"),
                 op("Mul", [f"{tag}_x3", const("k", 0.044715)], "kx3"), op("Add", [x, f"{tag}_kx3"], "t"),
                 op("Mul", [f"{tag}_t", const("c", math.sqrt(2.0 / math.pi))], "u"),
                 op("Tanh", [f"{tag}_u"], "f")]  # fmt: skip
    else:
        inner = [op("Mul", [x, const("inv_sqrt2", 1.0 / math.sqrt(2.0))], "s"), op("Erf", [f"{tag}_s"], "f")]
    return [*inner, op("Add", [f"{tag}_f", const("one", 1.0)], "a"), op("Mul", [x, f"{tag}_a"], "m"),
            helper.make_node("Mul", [f"{tag}_m", const("half", 0.5)], [y], name=node.name or f"{tag}_y")]  # fmt: skip

