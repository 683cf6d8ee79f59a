"""``edge-sdk serve CONFIG.yaml``: several cameras against one model as a long-running service, with an HTTP API
(health, Prometheus metrics, inference, MJPEG streams, events, a dashboard). See docs/serve.md.

Nothing heavy is imported here: PyYAML and prometheus-client are imported when a config is read and a service
starts (``pip install "edge-sdk[serve]"``).
"""

from __future__ import annotations

__all__ = ["Service", "load_config"]


def __getattr__(name: str):  # lazy: `import edge_sdk.serve` stays light
    if name == "Service":
        from edge_sdk.serve.service import Service

        return Service
    if name == "load_config":
        from edge_sdk.serve.config import load_config

        return load_config
    raise AttributeError(name)
