"""What every runtime's tracer returns: the model's intermediate tensors, in execution order, for one input.

A *tracer* runs one model file and returns, besides its outputs, every intermediate float tensor that
depends on the inputs (constants and weight-decompression subgraphs are left out). A quantized model's
tensor is reported as the value the next layer consumes: an ONNX ``QuantizeLinear -> DequantizeLinear``
pair or an OpenVINO ``FakeQuantize`` after it is folded into the tensor, and TFLite int8 tensors are
dequantized with their own scale and zero point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_sdk.tensor_spec import TensorSpec


@dataclass
class Traced:
    """One intermediate tensor of one run."""

    name: str  # the runtime's name of the tensor (or of the op that made it when the tensor has none)
    node: str  # the node / op that produced it
    op: str  # its op type (Conv, CONV_2D, Convolution...)
    value: np.ndarray
    aliases: tuple[str, ...] = ()  # other names it answers to when matching by name
    inputs: tuple[str, ...] = ()  # names of the traced tensors (or graph inputs) it was computed from
    quantized: bool = False  # the value went through a quantize/dequantize on its way to the next layer

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass
class Trace:
    """Every traced tensor of one run, in execution (topological) order, and the model's outputs."""

    tensors: list[Traced]
    outputs: list[np.ndarray] = field(default_factory=list)


class Tracer(Protocol):
    """A model file opened for tracing."""

    format: str
    path: Path
    inputs: list[TensorSpec]
    output_names: list[str]

    def run(self, feeds: list[np.ndarray]) -> Trace:
        """Run once on ``feeds`` (in ``inputs`` order, already shaped for this model)."""
        ...


def open_tracer(path: Path) -> Tracer:
    """A tracer for an ONNX, OpenVINO IR or TFLite file (checked and loaded by ``edge_sdk.load`` first)."""
    import edge_sdk

    with edge_sdk.load(path) as model:  # the SDK's own checks: typed errors for a missing or corrupt file
        fmt, specs = model.format, list(model.inputs)
    if fmt == "onnx":
        from converters.diff.onnx_trace import OnnxTracer

        return OnnxTracer(Path(path), specs)
    if fmt == "openvino":
        from converters.diff.openvino_trace import OpenVINOTracer

        return OpenVINOTracer(Path(path), specs)
    if fmt == "tflite":
        from converters.diff.tflite_trace import TFLiteTracer

        return TFLiteTracer(Path(path), specs)
    from edge_sdk.errors import UnsupportedFormatError

    raise UnsupportedFormatError(f"{Path(path).name}: edge-sdk diff compares ONNX, OpenVINO IR and TFLite files")


def as_float(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 (a float16/float64 tensor compared on a common footing)."""
    return np.asarray(x, dtype=np.float32)
