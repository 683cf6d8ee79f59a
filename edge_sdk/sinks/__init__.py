"""Sinks by kind: one registry, each entry in its own module, imported only when used.

=================================  ==========================================  ==========
``window``                         an OpenCV window (needs a display)          ``window``
``http://:8080``                   live view: MJPEG stream + metrics page       ``http``
``out.mp4`` / ``video:out.avi``    annotated video file                        ``video``
``events.jsonl`` / ``-``           JSON lines to a file or stdout              ``jsonl``
``mqtt://host:1883/topic``         result events published to an MQTT broker   ``mqtt``
=================================  ==========================================  ==========
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from edge_sdk.errors import SinkError
from edge_sdk.sinks.base import Sink

#: kind -> "module:Class"; the class is built with (target, **opts)
SINKS: dict[str, str] = {
    "window": "edge_sdk.sinks.window:WindowSink",
    "http": "edge_sdk.sinks.http_view:HttpViewSink",
    "video": "edge_sdk.sinks.video:VideoFileSink",
    "jsonl": "edge_sdk.sinks.jsonl:JsonLinesSink",
    "mqtt": "edge_sdk.sinks.mqtt:MqttSink",
}
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".log")

__all__ = ["SINKS", "Sink", "open_sink", "resolve_sink"]


def resolve_sink(spec: str | os.PathLike[str]) -> tuple[str, str]:
    """``spec`` -> (kind, target); SinkError naming the spec when it fits no sink."""
    text = os.fspath(spec).strip()
    low = text.lower()
    if low in ("window", "window:"):
        return "window", ""
    if low in ("-", "stdout", "jsonl:-"):
        return "jsonl", "-"
    if low.startswith("http://"):
        return "http", text
    if low.startswith("mqtt://") or low.startswith("mqtts://"):
        return "mqtt", text
    kind, sep, rest = text.partition(":")
    if sep and kind.lower() in SINKS and len(kind) > 1:
        return kind.lower(), rest
    suffix = Path(text).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video", text
    if suffix in JSONL_SUFFIXES:
        return "jsonl", text
    raise SinkError(
        f"sink '{text}' is not one of: window, http://[host]:PORT, a video file ({', '.join(VIDEO_SUFFIXES)}), "
        f"a JSON-lines file ({', '.join(JSONL_SUFFIXES)}) or '-' for stdout, mqtt://HOST[:PORT]/TOPIC"
    )


def open_sink(spec: Any, **opts: Any) -> Sink:
    """A :class:`Sink` for a spec string (see the module table), or the Sink itself."""
    if isinstance(spec, Sink):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise SinkError(f"cannot make a sink from a {type(spec).__name__}; give a spec string or a Sink")
    kind, target = resolve_sink(spec)
    module, _, name = SINKS[kind].partition(":")
    return getattr(importlib.import_module(module), name)(target, **opts)
