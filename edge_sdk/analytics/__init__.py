"""Analytics on a detector's results: tracking, polygon zones, line crossings and their events.

- :class:`~edge_sdk.analytics.tracking.Tracker`: ByteTrack (Roboflow's ``trackers`` package, the home of
  supervision's tracker since supervision 0.30) gives each box a ``tracker_id`` that stays with the object;
- :class:`~edge_sdk.analytics.zones.Zone`: a polygon (``supervision.PolygonZone``); a track entering it gives an
  ``enter`` event, leaving it (or vanishing inside it) a ``leave`` event; counts ``in`` / ``out`` / ``inside``;
- :class:`~edge_sdk.analytics.lines.Line`: a line (``supervision.LineZone``); a track crossing it gives a
  ``cross`` event with ``direction`` ``in`` or ``out``; counts ``in`` / ``out``;
- :class:`~edge_sdk.analytics.events.Analytics`: all of them on each frame's detections, as the pipeline runs
  them: ``Pipeline(..., track=True, zones={"door": [(x, y), ...]}, lines={"gate": [(x1, y1), (x2, y2)]})``;
- :class:`~edge_sdk.analytics.clips.ClipSink`: an mp4 with pre- and post-roll and a JPEG around each event.

Nothing here is imported by ``import edge_sdk``; supervision and trackers are imported when a tracker, zone
or line is built (``pip install "edge-sdk[track]"`` and ``pip install --no-deps trackers``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Analytics", "ClipSink", "Line", "TrackedDetections", "Tracker", "Zone", "parse_line", "parse_zone"]

_WHERE = {
    "Analytics": "events",
    "TrackedDetections": "events",
    "parse_zone": "events",
    "parse_line": "events",
    "Tracker": "tracking",
    "Zone": "zones",
    "Line": "lines",
    "ClipSink": "clips",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'edge_sdk.analytics' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"edge_sdk.analytics.{_WHERE[name]}"), name)
