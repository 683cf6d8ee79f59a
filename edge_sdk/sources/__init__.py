"""Sources by URI: one registry, each entry in its own module, imported only when used.

=======================  =====================================================
``0``, ``/dev/video0``   camera (OpenCV / V4L2)                    ``camera``
``gst:<pipeline>``       GStreamer pipeline ending in appsink       ``gst``
``rtsp://``, ``http://`` network stream (FFmpeg)                    ``rtsp``/``http``
``clip.mp4``             video file                                 ``file``
``photos/``              folder of images                           ``folder``
``picamera2:``           Raspberry Pi camera (picamera2)            ``picamera2``
``synthetic:?fps=30``    moving test pattern                        ``synthetic``
``mic:``, ``mic:2``      microphone (sounddevice / PortAudio)       ``mic``
``speech.wav``           WAV file (``wav:x.wav?mode=realtime``)     ``wav``
``synthetic-audio:``     tone / noise / silence                     ``synthetic-audio``
=======================  =====================================================

Options come as keywords (``open_source("clip.mp4", mode="live")``) or, for non-network
URIs and plain paths, as a query string (``synthetic:?fps=15&size=320x240``, ``clip.mp4?mode=live``).
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from edge_sdk.errors import SourceError
from edge_sdk.sources.base import Event, Frame, Source, SourceEvent

#: scheme or kind -> "module:Class". Audio sources ("mic", "wav", "synthetic-audio") register here too.
SCHEMES: dict[str, str] = {
    "camera": "edge_sdk.sources.camera:CameraSource",
    "gst": "edge_sdk.sources.gstreamer:GStreamerSource",
    "rtsp": "edge_sdk.sources.stream:StreamSource",
    "rtsps": "edge_sdk.sources.stream:StreamSource",
    "http": "edge_sdk.sources.stream:StreamSource",
    "https": "edge_sdk.sources.stream:StreamSource",
    "file": "edge_sdk.sources.video_file:VideoFileSource",
    "folder": "edge_sdk.sources.folder:ImageFolderSource",
    "picamera2": "edge_sdk.sources.picamera2:PiCamera2Source",
    "synthetic": "edge_sdk.sources.synthetic:SyntheticSource",
    "mic": "edge_sdk.sources.audio_mic:MicSource",
    "wav": "edge_sdk.sources.audio_file:WavFileSource",
    "synthetic-audio": "edge_sdk.sources.audio_synthetic:SyntheticAudioSource",
}
#: file suffix -> kind for plain paths (anything else is tried as a video file)
SUFFIXES: dict[str, str] = {".wav": "wav"}
NETWORK = ("rtsp", "rtsps", "http", "https")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]+):(.*)$", re.IGNORECASE | re.DOTALL)

__all__ = ["NETWORK", "SCHEMES", "SUFFIXES", "Event", "Frame", "Source", "SourceEvent", "open_source", "resolve"]


def resolve(uri: str | int | os.PathLike[str]) -> tuple[str, str, dict[str, Any]]:
    """``uri`` -> (kind, target, options from its query string). Raises SourceError if unknown."""
    if isinstance(uri, bool):
        raise SourceError(f"source {uri!r} is not a camera index, path or URI")
    if isinstance(uri, int):
        return "camera", str(uri), {}
    text = os.fspath(uri).strip()
    if not text:
        raise SourceError("source is empty; give a camera index (0), a file, a folder or a URI like rtsp://...")
    if text.isdigit() or text.startswith("/dev/video"):
        return "camera", text, {}
    m = _SCHEME.match(text)
    if m and len(m.group(1)) > 1:
        scheme, rest = m.group(1).lower(), m.group(2)
        if scheme not in SCHEMES:
            raise SourceError(
                f"source '{text}': unknown scheme '{scheme}:'; known: "
                + ", ".join(f"{s}:" for s in SCHEMES if s not in ("camera", "file", "folder"))
                + ", a camera index, a video file or an image folder"
            )
        if scheme in NETWORK or scheme == "gst":
            return scheme, text if scheme in NETWORK else rest, {}
        target, _, query = rest.partition("?")
        return scheme, target if scheme in ("file", "wav") else target.lstrip("/"), _parse_query(query, text)
    path, query = Path(text).expanduser(), ""
    if not path.exists() and "?" in text:  # clip.mp4?mode=live, photos/?fps=2: options as for any source
        head, _, query = text.rpartition("?")
        path = Path(head).expanduser()
    opts = _parse_query(query, text)
    if path.is_dir():
        return "folder", str(path), opts
    if not path.exists():
        raise SourceError(
            f"source '{text}' does not exist: no such file or folder (and not a camera index or a URI "
            "like rtsp://, gst:, synthetic:)"
        )
    return SUFFIXES.get(path.suffix.lower(), "file"), str(path), opts


def open_source(uri_or_obj: Any, **opts: Any) -> Source:
    """A (not yet started) :class:`Source` for a URI, a path, a camera index, or a Source (returned as is)."""
    if isinstance(uri_or_obj, Source):
        if opts:
            raise SourceError(f"options {sorted(opts)} cannot be applied to an already-built {uri_or_obj!r}")
        return uri_or_obj
    if not isinstance(uri_or_obj, (str, int, os.PathLike)):
        raise SourceError(
            f"cannot make a source from a {type(uri_or_obj).__name__}; give a camera index, a path, a URI "
            "or an edge_sdk.sources.Source"
        )
    kind, target, query = resolve(uri_or_obj)
    module, _, cls_name = SCHEMES[kind].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    try:
        return cls(target, **{**query, **opts})
    except TypeError as e:
        raise SourceError(f"source '{uri_or_obj}' ({kind}): bad option: {e}") from None


def _parse_query(query: str, text: str) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        opts[k] = _coerce(v)
    return opts


def _coerce(v: str) -> Any:
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    return v
