"""Host-side conversion: sources -> TFLite / ONNX / OpenVINO, quantized, validated against the original.

Heavy libraries (torch, tensorflow, onnx, openvino, nncf) are imported inside
the routes and quantizers that use them, never at ``import converters``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from converters.api import ConversionResult, convert

__all__ = ["ConversionResult", "convert", "prune"]


def __getattr__(name: str) -> Any:
    if name in ("convert", "ConversionResult"):
        from converters import api

        return getattr(api, name)
    if name == "prune":  # a callable module: converters.prune(model, method=..., amount=...)
        import importlib

        return importlib.import_module("converters.prune")
    raise AttributeError(name)
