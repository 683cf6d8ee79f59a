"""Conversion routes: one registry of (source kind, target) -> function, each route in its own module.

A route writes the **fp32** artifact for its target; precision is the quantizers'
job (``converters.quantizers``). Chained routes say so in ``via`` (e.g. Keras ->
SavedModel -> ONNX) so the manifest and ``--verbose`` show the real path taken.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge_sdk.errors import ConversionError

TARGETS = ("tflite", "onnx", "openvino")
#: file name suffix of each target's main file
TARGET_SUFFIX = {"tflite": ".tflite", "onnx": ".onnx", "openvino": ".xml"}


@dataclass
class RouteContext:
    """What every route may need besides the source: a scratch folder, options, memoised intermediates."""

    workdir: Path
    opset: int = 17
    verbose: bool = False
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    tflite_sparse: bool = False  # store (pruned) TFLite weights in the sparse format (TF sources only)
    tf_select_ops: bool = False  # TFLiteConverter may keep TF ops (Flex) that have no TFLite builtin
    used_tool: dict[str, str] = field(default_factory=dict)  # target -> tool, when a route fell back
    intermediates: dict[str, Path] = field(default_factory=dict)  # e.g. "savedmodel", "onnx"


@dataclass(frozen=True)
class Route:
    source: str
    target: str
    function: str  # "module:function"
    via: tuple[str, ...] = ()
    tool: str = ""
    check: str = ""  # "module:function(path)" raising UnsupportedOperatorError before any work

    def load(self) -> Callable[[Any, Path, RouteContext], Path]:
        module, _, fn = self.function.partition(":")
        return getattr(importlib.import_module(module), fn)

    def precheck(self, path: Path) -> None:
        """Refuse early (naming op and node) what the target cannot express."""
        if self.check:
            module, _, fn = self.check.partition(":")
            getattr(importlib.import_module(module), fn)(path)


_T = "converters.routes.torch_routes"
_TF = "converters.routes.tf_routes"
_ONNX = "converters.routes.onnx_routes"
_TFL = "converters.routes.tflite_routes"
_T2TFL = "torch.onnx.export + onnx2tf + TFLiteConverter (litert-torch without onnx2tf)"

ROUTES: dict[tuple[str, str], Route] = {
    (r.source, r.target): r
    for r in [
        Route("torch", "onnx", f"{_T}:to_onnx", tool="torch.onnx.export"),
        Route("torch", "openvino", f"{_T}:to_openvino", tool="openvino.convert_model"),
        Route("torch", "tflite", f"{_T}:to_tflite", via=("onnx", "savedmodel"), tool=_T2TFL),
        Route("pt2", "onnx", f"{_T}:to_onnx", tool="torch.onnx.export"),
        Route("pt2", "openvino", f"{_T}:to_openvino", tool="openvino.convert_model"),
        Route("pt2", "tflite", f"{_T}:to_tflite", via=("onnx", "savedmodel"), tool=_T2TFL),
        Route("keras", "tflite", f"{_TF}:to_tflite", via=("savedmodel",), tool="tf.lite.TFLiteConverter"),
        Route("keras", "onnx", f"{_TF}:to_onnx", via=("savedmodel",), tool="tf2onnx"),
        Route("keras", "openvino", f"{_TF}:to_openvino", via=("savedmodel",), tool="openvino.convert_model"),
        Route("savedmodel", "tflite", f"{_TF}:to_tflite", tool="tf.lite.TFLiteConverter"),
        Route("savedmodel", "onnx", f"{_TF}:to_onnx", tool="tf2onnx"),
        Route("savedmodel", "openvino", f"{_TF}:to_openvino", tool="openvino.convert_model"),
        Route("onnx", "onnx", f"{_ONNX}:to_onnx", tool="onnx (copy, shapes fixed)"),
        Route(
            "onnx", "openvino", f"{_ONNX}:to_openvino", tool="openvino.convert_model", check=f"{_ONNX}:check_openvino"
        ),
        Route(
            "onnx",
            "tflite",
            f"{_ONNX}:to_tflite",
            via=("savedmodel",),
            tool="onnx2tf + TFLiteConverter",
            check=f"{_ONNX}:check_tflite",
        ),
        Route("tflite", "tflite", f"{_TFL}:to_tflite", tool="copy (quantize with ai-edge-quantizer)"),
        Route("tflite", "onnx", f"{_TFL}:to_onnx", tool="tf2onnx --tflite"),
        Route("tflite", "openvino", f"{_TFL}:to_openvino", tool="openvino.convert_model"),
    ]
}


def find_route(source: str, target: str) -> Route:
    if target not in TARGETS:
        raise ConversionError(f"unknown target '{target}'; targets are {', '.join(TARGETS)}")
    route = ROUTES.get((source, target))
    if route is None:
        possible = sorted(t for s, t in ROUTES if s == source)
        raise ConversionError(f"no route from {source} to {target}; from {source}: {', '.join(possible) or 'none'}")
    return route
