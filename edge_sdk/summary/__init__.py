"""What is inside a model: tensors, operator histogram, parameters, MACs, quantization.

One summariser per format, each in its own module, found through the format
registry's name (``edge_sdk.summary.<format>_summary``). Summaries are for
``edge-sdk info``; they never run the model.
"""

from __future__ import annotations

import importlib
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edge_sdk.errors import EdgeSDKError, ModelLoadError, first_line
from edge_sdk.formats import MAX_MODEL_BYTES, ModelFile, inspect_file
from edge_sdk.tensor_spec import TensorSpec

#: operators that mark a model as quantized, across formats
QUANT_OPS = {
    # ONNX
    "QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
    "DynamicQuantizeLinear", "QLinearAdd", "QGemm",
    # TFLite
    "QUANTIZE", "DEQUANTIZE",
    # OpenVINO
    "FakeQuantize", "FakeConvert",
}  # fmt: skip


@dataclass
class ModelSummary:
    path: str
    format: str
    size_bytes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    ops: Counter = field(default_factory=Counter)
    params: int = 0
    weight_dtypes: Counter = field(default_factory=Counter)
    macs: int | None = None
    macs_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def quantization(self) -> str:
        """``"none"``, ``"int8 (QDQ)"``-style description of how the model is quantized."""
        int_io = any(s.dtype.kind in "iu" and s.quant is not None for s in self.inputs)
        int_weights = self.weight_dtypes.get("int8", 0) + self.weight_dtypes.get("uint8", 0)
        if int_io:
            return "full integer (int8 I/O)"
        if any(op in QUANT_OPS for op in self.ops) or int_weights:
            return "int8 weights/activations (float I/O)"
        if self.weight_dtypes.get("float16", 0) > self.weight_dtypes.get("float32", 0):
            return "fp16 weights"
        return "none (float)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "size_bytes": self.size_bytes,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "quantization": self.quantization,
            "params": self.params,
            "weight_dtypes": dict(self.weight_dtypes),
            "macs": self.macs,
            "macs_note": self.macs_note,
            "ops": dict(self.ops.most_common()),
            **self.extra,
        }


def summarize(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_MODEL_BYTES, max_memory: int | None = None
) -> ModelSummary:
    """Check ``path`` like ``load`` does (same size and memory limits), then describe what is inside it."""
    model_file = inspect_file(path, max_bytes=max_bytes, max_memory=max_memory)
    return summarize_file(model_file)


def summarize_file(model_file: ModelFile) -> ModelSummary:
    """Describe a checked model file; any failure is a typed error (the file may still be hostile)."""
    module = importlib.import_module(f"edge_sdk.summary.{model_file.format}_summary")
    try:
        return module.summarize(model_file)
    except EdgeSDKError:
        raise
    except Exception as e:  # a runtime's reader tripping on the file: typed, with its reason
        raise ModelLoadError(
            f"could not describe {model_file.path.name}: {type(e).__name__}: {first_line(e)}"
        ) from None


def numel(shape: Any) -> int:
    """Product of a shape with dynamic (None/negative) dims counted as 1."""
    n = 1
    for d in shape:
        if d is not None and int(d) > 0:
            n *= int(d)
    return n
