"""TFLite tracer: ``Interpreter(experimental_preserve_all_tensors=True)``, every op output read after invoke.

The interpreter runs without its default XNNPACK delegate, whose fused kernels would not keep intermediate
tensors: the traced values are those of TFLite's builtin kernels. Quantized (int8/uint8/int16) tensors are
dequantized with their own scale and zero point. A fused tensor's name lists the TF ops it stands for,
last one first (``model/relu/Relu;model/add/Add;model/conv/Conv2D``): each part is an alias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converters.diff.trace import Trace, Traced, as_float
from converters.layout import base_name
from edge_sdk.backends.litert_backend import _spec, import_interpreter_module
from edge_sdk.errors import ModelLoadError, first_line
from edge_sdk.tensor_spec import TensorSpec


class TFLiteTracer:
    """Runs a TFLite file with builtin kernels and all tensors preserved."""

    format = "tflite"

    def __init__(self, path: Path, inputs: list[TensorSpec]) -> None:
        mod, _ = import_interpreter_module()
        self.path = path
        self.inputs = inputs
        kwargs: dict[str, Any] = {"model_path": str(path), "experimental_preserve_all_tensors": True}
        resolver = getattr(mod, "OpResolverType", None)
        if resolver is not None:
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self._interp = mod.Interpreter(**kwargs)
            self._interp.allocate_tensors()
            ops = self._interp._get_ops_details()
            details = {d["index"]: d for d in self._interp.get_tensor_details()}
        except Exception as e:
            raise ModelLoadError(f"LiteRT could not trace {path.name}: {first_line(e)}") from None
        self._in = [(d["index"], _spec(d)) for d in self._interp.get_input_details()]
        self._out = [(d["index"], _spec(d)) for d in self._interp.get_output_details()]
        self.output_names = [s.name for _, s in self._out]
        self._plan = _plan(ops, details, {i for i, _ in self._in})

    def run(self, feeds: list[np.ndarray]) -> Trace:
        for (index, spec), x in zip(self._in, feeds):
            if spec.quant is not None and spec.dtype.kind in "iu" and np.asarray(x).dtype.kind == "f":
                x = spec.quant.quantize(x, spec.dtype)
            self._interp.set_tensor(index, np.ascontiguousarray(x))
        self._interp.invoke()
        tensors = [
            Traced(
                name=p["name"],
                node=p["node"],
                op=p["op"],
                value=_dequantized(self._interp.get_tensor(p["index"]), p["spec"]),
                aliases=p["aliases"],
                inputs=p["inputs"],
                quantized=p["spec"].quant is not None,
            )
            for p in self._plan
        ]
        outputs = [_dequantized(self._interp.get_tensor(i), s) for i, s in self._out]
        return Trace(tensors, outputs)


def _dequantized(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.quant is not None and x.dtype.kind in "iu":
        return spec.quant.dequantize(x)
    return as_float(x)


def _aliases(name: str) -> tuple[str, ...]:
    parts = [p for p in name.split(";") if p]
    first = parts[0] if parts else name
    out = [first, base_name(first)]
    if first.endswith(("/Relu", "/Relu6", "/BiasAdd", "/Conv2D", "/MatMul")):
        out.append(first.rsplit("/", 1)[0])  # Keras layer name: model/conv2d/Relu -> model/conv2d
    return tuple(dict.fromkeys(a for a in out if a != name))


def _plan(ops: list[dict[str, Any]], details: dict[int, dict[str, Any]], inputs: set[int]) -> list[dict[str, Any]]:
    """Op outputs in execution order that depend on an input and hold real numbers (float, or quantized)."""
    live = set(inputs)
    plan = []
    for op in ops:
        ins = [int(i) for i in op["inputs"] if int(i) >= 0]
        if not any(i in live for i in ins):
            continue
        for index in (int(i) for i in op["outputs"]):
            live.add(index)
            d = details.get(index)
            if d is None:
                continue
            spec = _spec(d)
            if not (spec.dtype.kind == "f" or (spec.quant is not None and spec.dtype.kind in "iu")):
                continue
            plan.append(
                {
                    "index": index,
                    "name": d["name"],
                    "node": d["name"].split(";")[0],
                    "op": op["op_name"],
                    "aliases": _aliases(d["name"]),
                    "inputs": tuple(details[i]["name"] for i in ins if i in live and i in details),
                    "spec": spec,
                }
            )
    return plan
