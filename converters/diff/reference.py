"""The original model as a traceable reference.

An ONNX or TFLite original is traced as it is. A PyTorch (``nn.Module``, ``.pt2``, ``zoo:``), Keras or
SavedModel original has no runtime that exposes every intermediate tensor by name, so it is exported to ONNX
with the converters' own routes (``torch.onnx.export``, tf2onnx) and that export is traced; the report says
so and gives how closely the export's outputs match the original's on the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.diff.trace import Tracer, open_tracer
from converters.routes import RouteContext
from converters.sources import SourceModel, open_source

#: source kind -> (route module, tool named in the report)
_EXPORTS = {
    "torch": ("converters.routes.torch_routes", "torch.onnx.export"),
    "pt2": ("converters.routes.torch_routes", "torch.onnx.export (dynamo)"),
    "keras": ("converters.routes.tf_routes", "tf2onnx via a SavedModel"),
    "savedmodel": ("converters.routes.tf_routes", "tf2onnx"),
}


@dataclass
class Reference:
    """The opened original, the tracer that stands for it, and what that tracer is."""

    source: SourceModel
    tracer: Tracer
    description: str
    exported: bool  # the tracer runs an export of the original, not the original itself


def open_reference(
    original: Any, workdir: Path, *, allow_lambda: bool = False, allow_pickle: bool = False
) -> Reference:
    """Open ``original`` (a path or ``zoo:NAME``) and the tracer of it (or of its ONNX export)."""
    ctx = RouteContext(workdir=workdir)
    if isinstance(original, str) and original.startswith("zoo:"):
        from converters.zoo_source import open_zoo_source

        source = open_zoo_source(original[4:], ctx)
    else:
        source = open_source(original, allow_lambda=allow_lambda, allow_pickle=allow_pickle)
    if source.kind in ("onnx", "tflite"):
        assert source.path is not None
        tracer = open_tracer(source.path)
        return Reference(source, tracer, f"the {source.kind.upper()} original itself", exported=False)
    module, tool = _EXPORTS[source.kind]
    import importlib

    exported = importlib.import_module(module).to_onnx(source, workdir / "reference.onnx", ctx)
    tracer = open_tracer(exported)
    return Reference(source, tracer, f"ONNX export of the {source.kind} original ({tool})", exported=True)
