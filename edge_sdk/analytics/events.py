"""Tracking, zones and lines on each frame's detections, and the events they give (what the pipeline runs).

Each event is one JSON-ready dict::

    {"type": "event", "event": "enter" | "leave" | "cross", "direction": "in" | "out", "track_id": 3,
     "zone": "door" | "line": "gate", "label": "person", "frame": 41, "ts": 1764500000.123, "pos_ms": 1366.7}

``ts``: wall-clock time of the frame's capture (the result line's ``capture_ts``); ``pos_ms``: the position
in a file. The pipeline writes them through every sink's ``write_event`` after the frame's result line.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from edge_sdk.analytics.zones import AnalyticsConfigError
from edge_sdk.errors import TaskError
from edge_sdk.results import Detections, typed

#: tasks whose results are boxes
BOX_TASKS = ("detect",)


class TrackedDetections(Detections):
    """:class:`~edge_sdk.results.Detections` with ``tracker_id`` and the frame's analytics ``events``; its
    JSON (``to_event``, the pipeline's result line) gives each detection its ``track_id`` (-1: not confirmed
    yet); ``annotate`` also draws the zones and lines and labels boxes ``#id``."""

    events: list[dict[str, Any]]
    _analytics: Any

    def to_event(self) -> dict[str, Any]:
        return self.to_dict()

    def annotate(self, image: np.ndarray) -> np.ndarray:
        from edge_sdk.postprocess.draw import _cv2, boxes

        img = image.copy()
        analytics = getattr(self, "_analytics", None)
        if analytics is not None:
            cv2 = _cv2()
            th = max(1, img.shape[0] // 240)
            for z in analytics.zones.values():
                cv2.polylines(img, [np.round(z.polygon).astype(np.int32)], True, (255, 200, 0), th)
            for ln in analytics.lines.values():
                (x1, y1), (x2, y2) = np.round(ln.ends).astype(int).tolist()
                cv2.line(img, (x1, y1), (x2, y2), (255, 0, 255), th)
        tids = self.tracker_id if self.tracker_id is not None else np.full(len(self), -1)
        names = [(f"#{t} " if t >= 0 else "") + f"{n} {s:.0%}"
                 for t, n, s in zip(tids, self.class_name, self.confidence)]  # fmt: skip
        return boxes(img, self.xyxy, names, blur=self.blur)


class Analytics:
    """Tracking (on when ``track`` is true, or zones or lines are given: they need track ids), zones and lines.

    ``track``: True, or a dict of :class:`~edge_sdk.analytics.tracking.Tracker` options (``activation``,
    ``high``, ``lost_frames``, ``min_frames``, ``iou``); ``zones``: ``{name: polygon}`` (``[(x, y), ...]``
    or a flat ``[x1, y1, ...]`` in the source image's pixels, or a :class:`Zone`); ``lines``:
    ``{name: [(x1, y1), (x2, y2)]}`` or :class:`Line`. ``frame_rate``: the source's rate (or a source with
    ``fps`` / ``rate``, read on the first frame); ``task``: refused unless it gives boxes.
    """

    def __init__(
        self,
        *,
        track: bool | Mapping[str, Any] = True,
        zones: Mapping[str, Any] | None = None,
        lines: Mapping[str, Any] | None = None,
        frame_rate: Any = 30.0,
        task: str = "detect",
    ) -> None:
        from edge_sdk.analytics.lines import Line
        from edge_sdk.analytics.zones import Zone

        if task not in BOX_TASKS:
            raise TaskError(f"tracking, zones and lines need boxes: task '{task}' gives none (use task='detect')")
        opts = dict(track) if isinstance(track, Mapping) else {}
        lost = int(opts.get("lost_frames", 30))
        self.zones: dict[str, Zone] = {}
        for name, z in (zones or {}).items():
            self.zones[str(name)] = z if isinstance(z, Zone) else Zone(str(name), z, lost_frames=lost)
        self.lines: dict[str, Line] = {}
        for name, ln in (lines or {}).items():
            self.lines[str(name)] = ln if isinstance(ln, Line) else Line(str(name), ln)
        self._track_opts = opts
        self._frame_rate = frame_rate
        self.tracker: Any = None
        self.tracks_seen: set[int] = set()
        self.events = 0
        if not (track or self.zones or self.lines):
            raise AnalyticsConfigError("Analytics: nothing to do (give track=True, zones or lines)")
        from edge_sdk.analytics.tracking import Tracker  # fail now, not on the first frame, when it is missing

        self._make_tracker = lambda fps: Tracker(fps, **opts)
        if isinstance(frame_rate, (int, float)):  # a number: build the tracker now (a source: on the first frame)
            self.tracker = self._make_tracker(float(frame_rate or 30.0))

    def update(self, result: Any, frame: Any = None) -> tuple[TrackedDetections, list[dict[str, Any]]]:
        """Track the frame's detections and run the zones and lines: the tracked detections (their ``events``
        attribute holds the frame's events too) and the events, stamped with ``frame``, ``ts`` and ``pos_ms``."""
        dets = typed(result)
        if not isinstance(dets, Detections):
            raise TaskError(f"tracking needs Detections, the post-processor gave a {type(result).__name__}")
        if self.tracker is None:
            src = self._frame_rate
            fps = getattr(src, "fps", 0.0) or getattr(src, "rate", 0.0) or 30.0
            self.tracker = self._make_tracker(float(fps))
        meta = getattr(frame, "meta", None) or {}
        t = meta["pos_ms"] / 1000.0 if "pos_ms" in meta else getattr(frame, "capture_ts", None)
        tracked = self.tracker.update(dets, t)
        out = TrackedDetections(tracked.xyxy, tracked.confidence, tracked.class_id, tracked.class_name,
                                tracked.tracker_id, tracked.landmarks, dets.image_hw, dets.blur)  # fmt: skip
        out._analytics = self
        events: list[dict[str, Any]] = []
        if self.zones or self.lines:
            sv_dets = out.to_supervision()
            for z in self.zones.values():
                events += z.update(sv_dets, out.class_name)
            for ln in self.lines.values():
                events += ln.update(sv_dets, out.class_name)
        if out.tracker_id is not None:
            self.tracks_seen.update(int(t) for t in out.tracker_id if t >= 0)
        stamp: dict[str, Any] = {}
        if frame is not None:
            stamp["frame"] = frame.index
            stamp["ts"] = round(time.time() - (time.monotonic() - frame.capture_ts), 4)
            if "pos_ms" in meta:
                stamp["pos_ms"] = round(meta["pos_ms"], 1)
        else:
            stamp["ts"] = round(time.time(), 4)
        events = [{**ev, **stamp} for ev in events]
        self.events += len(events)
        out.events = events
        return out, events

    def counts(self) -> dict[str, Any]:
        """``{"tracks": distinct confirmed tracks, "events": n, "zones": {name: {"in", "out", "inside"}},
        "lines": {name: {"in", "out"}}}``: what the pipeline's metrics carry as ``analytics``."""
        return {"tracks": len(self.tracks_seen), "events": self.events,
                "zones": {n: z.counts() for n, z in self.zones.items()},
                "lines": {n: ln.counts() for n, ln in self.lines.items()}}  # fmt: skip


def _spec(text: str, flag: str, example: str) -> tuple[str, list[float]]:
    name, sep, coords = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise AnalyticsConfigError(f"{flag} '{text}' is not NAME=x1,y1,..., e.g. {flag} {example}")
    try:
        values = [float(v) for v in coords.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise AnalyticsConfigError(f"{flag} '{text}': coordinates must be numbers, e.g. {flag} {example}") from None
    return name, values


def parse_zone(text: str) -> tuple[str, list[tuple[float, float]]]:
    """``"door=10,10,200,10,200,150,10,150"`` -> ``("door", [(10, 10), (200, 10), ...])`` (pixels)."""
    example = "door=10,10,200,10,200,150,10,150"
    name, v = _spec(text, "--zone", example)
    if len(v) % 2 or len(v) < 6:
        raise AnalyticsConfigError(f"--zone '{text}': give at least 3 x,y points (6 numbers), e.g. --zone {example}")
    return name, list(zip(v[0::2], v[1::2]))


def parse_line(text: str) -> tuple[str, list[tuple[float, float]]]:
    """``"gate=160,0,160,240"`` -> ``("gate", [(160, 0), (160, 240)])`` (pixels)."""
    example = "gate=160,0,160,240"
    name, v = _spec(text, "--line", example)
    if len(v) != 4:
        raise AnalyticsConfigError(f"--line '{text}': give x1,y1,x2,y2 (4 numbers), e.g. --line {example}")
    return name, [(v[0], v[1]), (v[2], v[3])]
