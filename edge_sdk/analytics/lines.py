"""Line crossings (``supervision.LineZone``): a track whose box crossed from one side to the other.

``in``: from the side where cross(end − start, p − start) > 0 to the other side; for a line drawn top to
bottom that is left to right, for a line drawn left to right it is bottom to top (image y grows down).
Draw the line the other way round to swap them. By default every corner of the box must have crossed
(supervision's default), so a box straddling the line counts once it is fully over.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edge_sdk.analytics.zones import points, position

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


class Line:
    """A named line segment in the source image's pixels; ``update`` gives the frame's cross events."""

    def __init__(self, name: str, ends: Any, *, anchors: Sequence[str] = CORNERS, min_frames: int = 1) -> None:
        from edge_sdk.analytics.tracking import _supervision

        sv = _supervision()
        self.name = str(name)
        self.ends = points(ends, f"line '{name}'", count=2)
        (x1, y1), (x2, y2) = self.ends.tolist()
        self._line = sv.LineZone(start=sv.Point(x1, y1), end=sv.Point(x2, y2),
                                 triggering_anchors=[position(sv, a, f"line '{name}'") for a in anchors],
                                 minimum_crossing_threshold=int(min_frames))  # fmt: skip

    def update(self, sv_dets: Any, names: Sequence[str]) -> list[dict[str, Any]]:
        crossed_in, crossed_out = self._line.trigger(sv_dets)
        events = []
        for i in np.flatnonzero(crossed_in | crossed_out).tolist():
            events.append({"type": "event", "event": "cross", "direction": "in" if crossed_in[i] else "out",
                           "track_id": int(sv_dets.tracker_id[i]), "line": self.name, "label": names[i]})  # fmt: skip
        return events

    def counts(self) -> dict[str, int]:
        return {"in": int(self._line.in_count), "out": int(self._line.out_count)}

    def __repr__(self) -> str:
        return f"<Line {self.name} {self.ends.tolist()} {self.counts()}>"
