"""OpenVINO tracer: every input-dependent float op output added as a model output (``Model.add_outputs``).

An IR converted from ONNX keeps the ONNX tensor names (``Output.get_names()``); an output without names is
called by its op's friendly name. An op output followed by a ``FakeQuantize`` (NNCF int8) is reported with
the FakeQuantize's value: what the next layer consumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converters.diff.trace import Trace, Traced, as_float
from edge_sdk.errors import ModelLoadError, first_line
from edge_sdk.tensor_spec import TensorSpec

_SKIP = {"Parameter", "Constant", "Result", "FakeQuantize"}


class OpenVINOTracer:
    """Runs an OpenVINO IR on CPU (fp32 inference precision) with its intermediate tensors exposed."""

    format = "openvino"

    def __init__(self, path: Path, inputs: list[TensorSpec]) -> None:
        import openvino as ov

        self.path = path
        self.inputs = inputs
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            self.output_names = [o.get_any_name() if o.get_names() else f"output_{i}" for i, o in
                                 enumerate(model.outputs)]  # fmt: skip
            self._plan, ports = _plan(model)
            n_outputs = len(model.outputs)
            model.add_outputs(ports)  # a port that already is an output is not added twice
            where = {_key(r.input_value(0)): i for i, r in enumerate(model.get_results())}
            self._index = [where[_key(p)] for p in ports]
            self._compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        except Exception as e:
            raise ModelLoadError(f"OpenVINO could not trace {path.name}: {first_line(e)}") from None
        self._n_outputs = n_outputs
        self._request = self._compiled.create_infer_request()

    def run(self, feeds: list[np.ndarray]) -> Trace:
        results = self._request.infer({i: x for i, x in enumerate(feeds)})
        values = [results[port] for port in self._compiled.outputs]
        tensors = [
            Traced(
                name=p["name"],
                node=p["node"],
                op=p["op"],
                value=as_float(values[self._index[k]]),
                aliases=p["aliases"],
                inputs=p["inputs"],
                quantized=p["quantized"],
            )
            for k, p in enumerate(self._plan)
        ]
        return Trace(tensors, [np.asarray(v) for v in values[: self._n_outputs]])


def _key(port: Any) -> tuple[str, int]:
    return port.get_node().get_friendly_name(), port.get_index()


def _port_name(port: Any) -> str:
    """The port's tensor name; its op's friendly name when it has none but numbers (the PyTorch frontend's)."""
    names = sorted(n for n in port.get_names() if not n.isdigit())
    if names:
        return names[0]
    node = port.get_node()
    suffix = f":{port.get_index()}" if node.get_output_size() > 1 else ""
    return f"{node.get_friendly_name()}{suffix}"


def _plan(model: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """Ports to trace in execution order (float outputs of ops fed by a Parameter), FakeQuantize folded in."""
    live: set[str] = set()  # friendly names of ops that depend on an input
    plan: list[dict[str, Any]] = []
    ports: list[Any] = []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        sources = [op.input_value(i) for i in range(op.get_input_size())]
        if kind == "Parameter" or any(s.get_node().get_friendly_name() in live for s in sources):
            live.add(op.get_friendly_name())
        if kind in _SKIP or op.get_friendly_name() not in live:
            continue
        for port in op.outputs():
            if not port.get_element_type().is_real():
                continue
            fq = _fake_quantize(port)
            name = _port_name(port)
            plan.append(
                {
                    "name": name,
                    "node": op.get_friendly_name(),
                    "op": kind,
                    "aliases": tuple(n for n in sorted(port.get_names()) + [op.get_friendly_name()] if n != name),
                    "inputs": tuple(_port_name(_through_fq(s)) for s in sources if _is_live(s, live)),
                    "quantized": fq is not None,
                }
            )
            ports.append(fq if fq is not None else port)
    return plan, ports


def _is_live(port: Any, live: set[str]) -> bool:
    return port.get_node().get_friendly_name() in live


def _fake_quantize(port: Any) -> Any:
    """The output of the FakeQuantize that consumes ``port``, if one does."""
    for target in port.get_target_inputs():
        node = target.get_node()
        if node.get_type_name() == "FakeQuantize" and target.get_index() == 0:
            return node.output(0)
    return None


def _through_fq(port: Any) -> Any:
    """The op output a FakeQuantize output stands for, else ``port``."""
    node = port.get_node()
    if node.get_type_name() == "FakeQuantize":
        return node.input_value(0)
    return port
