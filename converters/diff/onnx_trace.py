"""ONNX tracer: every input-dependent float tensor made a graph output, run with ONNX Runtime.

In a QDQ (static int8) model a tensor ``X`` followed by ``QuantizeLinear -> DequantizeLinear`` is reported
with the DequantizeLinear's value (what the next layer consumes, quantization error included), under
``X``'s name and with the DequantizeLinear output's name as an alias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converters.diff.trace import Trace, Traced, as_float
from edge_sdk.errors import ModelLoadError, first_line
from edge_sdk.tensor_spec import TensorSpec

_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (onnx.TensorProto)


class OnnxTracer:
    """Runs an ONNX file with all intermediate float tensors exposed as outputs."""

    format = "onnx"

    def __init__(self, path: Path, inputs: list[TensorSpec]) -> None:
        import onnx

        self.path = path
        self.inputs = inputs
        model = onnx.load(str(path))
        self.output_names = [o.name for o in model.graph.output]
        types = _elem_types(model)
        self._plan = _plan(model.graph, types)
        extra = [name for name in _fetch_names(self._plan) if name not in self.output_names]
        for name in extra:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
        self._fetch = self.output_names + extra
        self._session = _session(model, path)
        self._input_names = [i.name for i in self._session.get_inputs()]

    def run(self, feeds: list[np.ndarray]) -> Trace:
        values = self._session.run(self._fetch, dict(zip(self._input_names, feeds)))
        by_name = dict(zip(self._fetch, values))
        tensors = [
            Traced(
                name=p["name"],
                node=p["node"],
                op=p["op"],
                value=as_float(by_name[p["fetch"]]),
                aliases=p["aliases"],
                inputs=p["inputs"],
                quantized=p["quantized"],
            )
            for p in self._plan
        ]
        return Trace(tensors, [by_name[n] for n in self.output_names])


def _elem_types(model: Any) -> dict[str, int]:
    """Element type of every tensor whose type ONNX shape inference (or ORT's symbolic one) can tell."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a model ONNX's checker cannot type still runs in ORT: take what the file says
        inferred = model
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    missing = [o for n in g.node for o in n.output if o and not types.get(o)]
    if missing:
        from edge_sdk.summary.onnx_summary import ort_symbolic_shapes

        try:
            symbolic, _ = ort_symbolic_shapes(model)
            sg = symbolic.graph
            for v in [*sg.value_info, *sg.output]:
                types.setdefault(v.name, v.type.tensor_type.elem_type)
                types[v.name] = types[v.name] or v.type.tensor_type.elem_type
        except Exception:
            pass
    return types


def _plan(graph: Any, types: dict[str, int]) -> list[dict[str, Any]]:
    """Which tensors to trace, in graph (topological) order: float outputs of nodes that depend on an input,
    each QuantizeLinear -> DequantizeLinear pair folded into the tensor it quantizes."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {o: n for n in graph.node for o in n.output}
    live = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    for node in graph.node:
        if any(name in live for name in node.input):
            live.update(o for o in node.output if o)
    folded: set[str] = set()
    plan: list[dict[str, Any]] = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for name in node.output:
            if not name or name not in live or types.get(name) not in _FLOAT_TYPES or name in folded:
                continue
            dq = _dequantized(name, consumers)
            if dq is not None:
                folded.add(dq)
            plan.append(
                {
                    "name": name,
                    "fetch": dq or name,
                    "node": _module_path(node) or node.name or name,
                    "op": node.op_type,
                    "aliases": (dq,) if dq else (),
                    "inputs": tuple(_through_qdq(i, producers) for i in node.input if i in live),
                    "quantized": dq is not None,
                }
            )
    return plan


def _module_path(node: Any) -> str | None:
    """The PyTorch module a node came from, as ``torch.onnx.export(dynamo=True)`` records it (``dw.1``)."""
    import ast

    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            return str(scopes[-2]) if isinstance(scopes, list) and len(scopes) >= 3 else None
    return None


def _dequantized(name: str, consumers: dict[str, list[Any]]) -> str | None:
    """The DequantizeLinear output of ``name -> QuantizeLinear -> DequantizeLinear``, if there is one."""
    for q in consumers.get(name, []):
        if q.op_type == "QuantizeLinear" and q.input[0] == name:
            for dq in consumers.get(q.output[0], []):
                if dq.op_type == "DequantizeLinear":
                    return dq.output[0]
    return None


def _through_qdq(name: str, producers: dict[str, Any]) -> str:
    """The float tensor a DequantizeLinear output stands for (``X`` for ``X -> Q -> DQ``), else ``name``."""
    node = producers.get(name)
    if node is not None and node.op_type == "DequantizeLinear":
        q = producers.get(node.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            return q.input[0]
    return name


def _fetch_names(plan: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(p["fetch"] for p in plan))


def _session(model: Any, path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelLoadError(
            f"onnxruntime could not load {path.name} with its intermediate tensors exposed: {first_line(e)}"
        ) from None
