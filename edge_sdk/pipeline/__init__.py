"""Real-time pipelines: :class:`Pipeline` (source -> pre -> infer -> post -> sinks) and its metrics."""

from __future__ import annotations

from edge_sdk.pipeline.pipeline import Pipeline

__all__ = ["Pipeline"]
