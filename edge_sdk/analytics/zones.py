"""Polygon zones: which tracks are inside (``supervision.PolygonZone``), and when one enters or leaves.

A track is inside when its anchor point (default the box's bottom centre, where a person or a car touches
the ground) is in the polygon. ``enter``: a track seen inside after being seen outside, or first seen inside;
``leave``: a track seen outside after being inside, or gone for ``lost_frames`` frames while inside
(the event then has ``"lost": true``). Tracks the tracker has not confirmed (``tracker_id`` -1) are ignored.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edge_sdk.errors import EdgeSDKError

ANCHORS = ("center", "bottom_center", "top_center", "center_left", "center_right", "top_left", "top_right",
           "bottom_left", "bottom_right")  # fmt: skip


class AnalyticsConfigError(EdgeSDKError, ValueError):
    """A zone or line given with the wrong shape (too few points, not numbers, an unknown anchor)."""


def points(value: Any, what: str, count: int | None = None, least: int = 0) -> np.ndarray:
    """(K, 2) float points from ``[(x, y), ...]`` or a flat ``[x1, y1, x2, y2, ...]``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise AnalyticsConfigError(f"{what}: points must be numbers, e.g. [(10, 20), (300, 20), ...]") from None
    if arr.ndim == 1 and arr.size % 2 == 0:
        arr = arr.reshape(-1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.isfinite(arr).all():
        raise AnalyticsConfigError(f"{what}: give x,y pairs, e.g. [(10, 20), (300, 20), ...]; got {value!r}")
    if count is not None and len(arr) != count:
        raise AnalyticsConfigError(f"{what}: give exactly {count} points (x1,y1,x2,y2), got {len(arr)}")
    if len(arr) < least:
        raise AnalyticsConfigError(f"{what}: a zone needs at least {least} points, got {len(arr)}")
    return arr


def position(sv: Any, anchor: str, what: str) -> Any:
    key = anchor.strip().lower().replace("-", "_")
    if key not in ANCHORS:
        raise AnalyticsConfigError(f"{what}: anchor '{anchor}' is not one of {', '.join(ANCHORS)}")
    return sv.Position[key.upper()]


class Zone:
    """A named polygon in the source image's pixels; ``update`` gives the frame's enter / leave events."""

    def __init__(self, name: str, polygon: Any, *, anchor: str = "bottom_center", lost_frames: int = 30) -> None:
        from edge_sdk.analytics.tracking import _supervision

        sv = _supervision()
        self.name = str(name)
        self.polygon = points(polygon, f"zone '{name}'", least=3)
        self.anchor = anchor
        self.lost_frames = int(lost_frames)
        self._zone = sv.PolygonZone(np.round(self.polygon).astype(np.int64),
                                    triggering_anchors=(position(sv, anchor, f"zone '{name}'"),))  # fmt: skip
        self._inside: dict[int, int] = {}  # track id -> the update it was last seen in (inside)
        self._outside: set[int] = set()
        self._labels: dict[int, str] = {}
        self._n = 0
        self.entered = self.left = 0

    def update(self, sv_dets: Any, names: Sequence[str]) -> list[dict[str, Any]]:
        """``sv_dets``: the tracked ``supervision.Detections``; ``names``: their class names. Events without time."""
        self._n += 1
        events: list[dict[str, Any]] = []
        tids = np.asarray(sv_dets.tracker_id if sv_dets.tracker_id is not None else [], np.int64)
        hit = self._zone.trigger(sv_dets) if len(tids) else np.zeros(0, bool)
        for tid, is_in, label in zip(tids.tolist(), hit.tolist(), names):
            if tid < 0:
                continue
            self._labels[tid] = label
            if is_in:
                if tid not in self._inside:
                    self.entered += 1
                    events.append(self._event("enter", "in", tid, label))
                self._inside[tid] = self._n
                self._outside.discard(tid)
            else:
                if tid in self._inside:
                    del self._inside[tid]
                    self.left += 1
                    events.append(self._event("leave", "out", tid, label))
                self._outside.add(tid)
        for tid, seen in list(self._inside.items()):
            if self._n - seen > self.lost_frames:  # gone while inside: it left unseen
                del self._inside[tid]
                self.left += 1
                events.append({**self._event("leave", "out", tid, self._labels.get(tid, "")), "lost": True})
        if len(self._labels) > 4096:  # forget labels of tracks long gone
            keep = set(self._inside) | set(tids.tolist())
            self._labels = {k: v for k, v in self._labels.items() if k in keep}
            self._outside &= keep
        return events

    def _event(self, kind: str, direction: str, tid: int, label: str) -> dict[str, Any]:
        return {"type": "event", "event": kind, "direction": direction, "track_id": int(tid), "zone": self.name,
                "label": label}  # fmt: skip

    @property
    def inside(self) -> list[int]:
        """Track ids inside now."""
        return sorted(self._inside)

    def counts(self) -> dict[str, int]:
        return {"in": self.entered, "out": self.left, "inside": len(self._inside)}

    def __repr__(self) -> str:
        return f"<Zone {self.name} {len(self.polygon)} points {self.counts()}>"
