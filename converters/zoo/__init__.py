"""The zoo: real pretrained models carried by installed pip packages (offline, no hub).

One module per model, each exposing ``ENTRY`` (a :class:`~converters.zoo.base.ZooEntry`)::

    from converters import zoo
    zoo.get("centerface").materialize(input_shape=(1, 3, 480, 640))   # Path to a patched .onnx
    zoo.load("efficientnet-lite0")       # ZooModel: nn.Module + example inputs + preprocess + labels

Listing and ``is_installed()`` import no model library; ``materialize`` imports what it needs.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from converters.zoo.base import ZooEntry, ZooModel, default_cache_dir
from edge_sdk.errors import ZooError

#: zoo name -> module holding its ``ENTRY``
ENTRIES: dict[str, str] = {
    "efficientnet-lite0": "converters.zoo.efficientnet_lite0",
    "centerface": "converters.zoo.centerface",
    "silero-vad": "converters.zoo.silero_vad",
}
PREFIX = "zoo:"

__all__ = ["ENTRIES", "ZooEntry", "ZooModel", "default_cache_dir", "entries", "get", "load", "materialize", "names"]


def names() -> list[str]:
    return list(ENTRIES)


def get(name: str) -> ZooEntry:
    """The entry called ``name`` (``zoo:`` prefix allowed); ZooError listing the known names otherwise."""
    key = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    if key not in ENTRIES:
        raise ZooError(f"no zoo model named '{key}'; known: {', '.join(ENTRIES)} (see `edge-sdk zoo list`)")
    return importlib.import_module(ENTRIES[key]).ENTRY


def entries() -> list[ZooEntry]:
    return [get(n) for n in ENTRIES]


def materialize(name: str, cache_dir: str | os.PathLike[str] | None = None, **opts: Any) -> Any:
    """``get(name).materialize(cache_dir, **opts)``: a model file Path or a torch module."""
    return get(name).materialize(cache_dir, **opts)


def load(name: str, cache_dir: str | os.PathLike[str] | None = None, **opts: Any) -> ZooModel:
    """``get(name).load(cache_dir, **opts)``: the model with example inputs, preprocessing and labels."""
    return get(name).load(cache_dir, **opts)
