"""Layer-by-layer comparison of a converted model with its original (``edge-sdk diff``).

``diff(original, artifact)`` runs both on the same inputs, pairs their intermediate tensors
(:mod:`converters.diff.matching`), and reports per pair the cosine and SNR and the first layer where the
error jumps (:mod:`converters.diff.report`). One tracer per runtime: ONNX Runtime, OpenVINO, LiteRT.
"""

from converters.diff.api import diff
from converters.diff.report import DiffReport, LayerDiff

__all__ = ["DiffReport", "LayerDiff", "diff"]
