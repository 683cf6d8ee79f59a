"""edge_sdk: run and ship neural networks on edge devices.

``import edge_sdk`` needs numpy alone; every runtime is imported lazily by the
backend that uses it.
"""

from __future__ import annotations

from edge_sdk.errors import EdgeSDKError
from edge_sdk.formats import detect_format, inspect_file
from edge_sdk.loader import load
from edge_sdk.model import Model
from edge_sdk.results import Classifications, Detections, VoiceActivity
from edge_sdk.tensor_spec import QuantParams, TensorSpec

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: the pipeline and sources are imported on first use
    if name == "Pipeline":
        from edge_sdk.pipeline import Pipeline

        return Pipeline
    if name == "MultiStream":
        from edge_sdk.multistream import MultiStream

        return MultiStream
    if name == "open_source":
        from edge_sdk.sources import open_source

        return open_source
    raise AttributeError(f"module 'edge_sdk' has no attribute {name!r}")


__all__ = [
    "Classifications",
    "Detections",
    "EdgeSDKError",
    "Model",
    "MultiStream",
    "Pipeline",
    "QuantParams",
    "TensorSpec",
    "VoiceActivity",
    "__version__",
    "detect_format",
    "inspect_file",
    "load",
    "open_source",
]
