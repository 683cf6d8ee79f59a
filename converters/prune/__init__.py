"""Pruning: magnitude (unstructured zeros) and channel (whole filters removed, a smaller dense model),
for PyTorch, Keras and ONNX models, with optional distillation fine-tuning from the original.

    from converters.prune import prune
    result = prune(module, method="channel", amount=0.25, example_inputs=(x,))
    result.model, result.layers, result.params_after

``converters.convert(src, ..., prune="channel:0.25")`` prunes, converts, quantizes and validates the
artifacts against the *original* model, with the pruning report in the manifest.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from converters.prune.api import prune
    from converters.prune.spec import LayerReport, PruneResult, PruneSpec

__all__ = ["LayerReport", "PruneResult", "PruneSpec", "prune"]


def __getattr__(name: str) -> Any:
    if name == "prune":
        from converters.prune.api import prune

        return prune
    if name in ("LayerReport", "PruneResult", "PruneSpec"):
        from converters.prune import spec

        return getattr(spec, name)
    raise AttributeError(name)


class _CallableModule(types.ModuleType):
    """``converters.prune(model, method=..., amount=...)`` works as well as ``from converters.prune import prune``."""

    def __call__(self, model: Any, **options: Any) -> Any:
        from converters.prune.api import prune

        return prune(model, **options)


sys.modules[__name__].__class__ = _CallableModule
