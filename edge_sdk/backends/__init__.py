"""Runtime backends: one registry, one module per runtime, imported only when used.

``onnxruntime`` reads ONNX; ``litert`` reads TFLite (ai-edge-litert, then
tflite-runtime, then tensorflow.lite); ``openvino`` reads IR, and also ONNX and
TFLite directly. For each format the first available backend in
:data:`PREFERENCE` is the default.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from edge_sdk.errors import BackendOptionError, BackendUnavailableError, UnsupportedFormatError

if TYPE_CHECKING:
    from edge_sdk.backends.base import Backend

#: backend name -> module that defines its class ``BACKEND``
_MODULES: dict[str, str] = {
    "onnxruntime": "edge_sdk.backends.onnxruntime_backend",
    "litert": "edge_sdk.backends.litert_backend",
    "openvino": "edge_sdk.backends.openvino_backend",
}
_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "tflite": "litert", "ov": "openvino"}

#: format -> backends that can read it, best first
PREFERENCE: dict[str, tuple[str, ...]] = {
    "onnx": ("onnxruntime", "openvino"),
    "tflite": ("litert", "openvino"),
    "openvino": ("openvino",),
}


def backend_names() -> list[str]:
    return list(_MODULES)


def canonical_name(name: str) -> str:
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _MODULES:
        raise BackendOptionError(f"unknown backend '{name}'; choose one of: {', '.join(_MODULES)}")
    return key


def get_backend_class(name: str) -> type[Backend]:
    """The backend class registered as ``name`` (module imported, runtime not yet)."""
    module = importlib.import_module(_MODULES[canonical_name(name)])
    return module.BACKEND


def choose_backend(fmt: str, requested: str | None = None) -> type[Backend]:
    """Pick the backend for a format: the requested one (checked) or the best available."""
    if requested is not None:
        cls = get_backend_class(requested)
        if fmt not in cls.formats:
            readable = ", ".join(PREFERENCE.get(fmt, ()))
            raise UnsupportedFormatError(
                f"backend '{cls.name}' cannot read {fmt} models; backends for {fmt}: {readable}"
            )
        if not cls.is_available():
            raise BackendUnavailableError(cls.name, cls.extra)
        return cls
    candidates = [get_backend_class(n) for n in PREFERENCE[fmt]]
    for cls in candidates:
        if cls.is_available():
            return cls
    first = candidates[0]
    raise BackendUnavailableError(first.name, first.extra, f"no installed runtime reads {fmt} models")


def module_available(name: str) -> bool:
    """True if ``name`` is importable, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
