"""ONNX summary: ops and parameters from the wire; MACs through onnx shape inference when ``onnx`` is installed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk._dtypes import ONNX_ELEM_TYPES
from edge_sdk.formats import ModelFile
from edge_sdk.formats.onnx_format import read_wire_model
from edge_sdk.formats.onnx_wire import WireGraph, WireValueInfo
from edge_sdk.summary import ModelSummary, numel
from edge_sdk.tensor_spec import TensorSpec, guess_layout

_PARAM_TYPES = {1, 2, 3, 10, 11, 16}  # float, uint8, int8, float16, double, bfloat16


def _spec(vi: WireValueInfo) -> TensorSpec:
    dims = tuple(d if isinstance(d, int) and d > 0 else None for d in vi.dims)
    names = tuple(d if isinstance(d, str) else None for d in vi.dims)
    dtype = ONNX_ELEM_TYPES.get(vi.elem_type, np.dtype("float32"))
    return TensorSpec(vi.name, dims, dtype, guess_layout(dims), None, names)


def _walk(graph: WireGraph, ops: Counter) -> None:
    for node in graph.nodes:
        ops[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"] += 1
    for sub in graph.subgraphs:
        _walk(sub, ops)


def summarize(model_file: ModelFile) -> ModelSummary:
    wire = read_wire_model(model_file.path)
    graph = wire.graph
    assert graph is not None  # parse_model guarantees it
    init_names = {t.name for t in graph.initializers}
    ops: Counter = Counter()
    _walk(graph, ops)
    weight_dtypes: Counter = Counter()
    params = 0
    for t in wire.all_tensors():
        if t.data_type in _PARAM_TYPES and t.numel > 1:
            params += t.numel
            weight_dtypes[ONNX_ELEM_TYPES[t.data_type].name if t.data_type in ONNX_ELEM_TYPES else "bfloat16"] += (
                t.numel
            )
    summary = ModelSummary(
        path=str(model_file.path),
        format="onnx",
        size_bytes=model_file.size,
        inputs=[_spec(v) for v in graph.inputs if v.name not in init_names],
        outputs=[_spec(v) for v in graph.outputs],
        ops=ops,
        params=params,
        weight_dtypes=weight_dtypes,
        extra={"ir_version": wire.ir_version, "opsets": wire.opsets, "producer": wire.producer},
    )
    summary.macs, summary.macs_note = _macs(model_file)
    return summary


def tensor_shapes(model: Any) -> dict[str, list[int | None]]:
    """Tensor name -> dims (None where unknown) of every graph value whose rank is known."""
    shapes: dict[str, list[int | None]] = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return shapes


def _macs(model_file: ModelFile) -> tuple[int | None, str]:
    try:
        import onnx
    except ImportError:
        return None, 'needs the onnx package (pip install "edge-sdk[convert]")'
    try:
        model = onnx.load(str(model_file.path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends on a file our wire check let through
        return None, f"onnx could not parse the file ({type(e).__name__})"
    model = _infer_shapes(model)
    if model is None:
        return None, "shape inference failed"
    shapes: dict[str, list[Any]] = tensor_shapes(model)
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    unknown = 0
    for node in model.graph.node:
        op = node.op_type
        try:
            if op in ("Conv", "ConvInteger", "QLinearConv"):
                w = shapes[node.input[3 if op == "QLinearConv" else 1]]
                total += numel(shapes[node.output[0]]) * numel(w[1:])
            elif op == "ConvTranspose":
                w = shapes[node.input[1]]
                total += numel(shapes[node.input[0]]) * numel(w[1:])
            elif op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul"):
                a = shapes[node.input[0]]
                trans_a = any(at.name == "transA" and at.i for at in node.attribute)
                k = a[-2] if trans_a else a[-1]
                total += numel(shapes[node.output[0]]) * (k or 1)
        except (KeyError, IndexError):
            unknown += 1
    note = "Conv/Gemm/MatMul, batch 1" + (f"; {unknown} node(s) without inferred shapes" if unknown else "")
    return total, note


#: passes of ORT's symbolic shape inference before giving up (real models settle in two or three)
MAX_SHAPE_PASSES = 16


def _symbolic_shape_inference_class() -> Any:
    """ORT's ``SymbolicShapeInference``, loaded from its file alone: importing it as
    ``onnxruntime.tools.symbolic_shape_infer`` runs ``onnxruntime/tools/__init__.py``, which imports torch
    wherever torch is installed (6 s, and a device verb must not import torch)."""
    import importlib.util
    import sys

    name = "edge_sdk._ort_symbolic_shape_infer"
    module = sys.modules.get(name)
    if module is None:
        ort = importlib.util.find_spec("onnxruntime")
        folders = list(ort.submodule_search_locations or []) if ort else []
        files = [Path(f) / "tools" / "symbolic_shape_infer.py" for f in folders]
        found = [f for f in files if f.is_file()]
        if not found:
            raise ImportError("onnxruntime's tools/symbolic_shape_infer.py is not installed")
        spec = importlib.util.spec_from_file_location(name, found[0])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return module.SymbolicShapeInference


def ort_symbolic_shapes(model: Any, auto_merge: bool = False) -> tuple[Any, bool]:
    """ORT's symbolic shape inference as ``(model with shapes, complete)``, without its side effect.

    ``SymbolicShapeInference.infer_shapes`` saves ``sym_shape_infer_temp.onnx`` into the *current
    folder* when inference is incomplete, then raises; this runs the same steps (at most
    MAX_SHAPE_PASSES of them: ORT's loop never ends on some corrupt models), writes nothing and
    returns the partial result. Raises what ORT raises on models it cannot handle (custom ops)."""
    infer = _symbolic_shape_inference_class()(2**31 - 1, auto_merge, False, 0)
    infer._preprocess(model)
    complete = False
    for _ in range(MAX_SHAPE_PASSES):  # ORT loops "while run_", forever on some models (input of type 0)
        if not infer.run_:
            break
        complete = infer._infer_impl()
    infer._update_output_from_vi()
    return infer.out_mp_, complete


def _infer_shapes(model: Any) -> Any:
    """Shapes for every tensor: ORT's symbolic inference (follows shapes computed at run time, e.g. the
    dynamic padding of torch exports), else onnx's own; None if neither works."""
    try:
        inferred, complete = ort_symbolic_shapes(model, auto_merge=True)
        if complete:
            return inferred
    except Exception:  # custom ops, unsupported opsets: fall back to onnx's inference
        pass
    try:
        from onnx import shape_inference

        return shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:
        return None
