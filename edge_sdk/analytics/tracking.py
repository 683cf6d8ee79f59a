"""ByteTrack on typed :class:`~edge_sdk.results.Detections`, through Roboflow's ``trackers`` package.

supervision 0.30 moved its ``ByteTrack`` out to ``trackers`` (``trackers.ByteTrackTracker``; supervision's own
smoother and trace annotator import it from there). An older supervision that still has ``sv.ByteTrack`` is
used when ``trackers`` is absent. No tracker of our own: association, Kalman prediction and the lost-track
buffer are the library's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_sdk.errors import EdgeSDKError, MissingExtraError
from edge_sdk.results import Detections

INSTALL = 'pip install "edge-sdk[track]" && pip install --no-deps trackers'


class TrackerMissingError(MissingExtraError):
    """Neither ``trackers`` (ByteTrackTracker) nor a supervision with ``ByteTrack`` is installed."""

    def __init__(self, detail: str = "") -> None:
        self.extra, self.package = "track", "trackers"
        EdgeSDKError.__init__(
            self,
            "tracking needs ByteTrack from Roboflow's trackers package (supervision 0.30+ no longer has "
            f"sv.ByteTrack){': ' + detail if detail else ''}. Install it with: {INSTALL} (--no-deps: its "
            "opencv-python requirement would sit beside opencv-python-headless; both install cv2)",
        )


def _supervision() -> Any:
    try:
        import supervision as sv
    except ImportError:
        raise MissingExtraError("tracking, zones and lines", "track", "supervision") from None
    return sv


class Tracker:
    """ByteTrack: ``update(detections, timestamp)`` returns the detections with ``tracker_id`` set.

    Every box comes back (the order may change); a box the tracker has not confirmed yet (seen on fewer
    than ``min_frames`` frames, or below ``activation`` without a track) has ``tracker_id`` -1.
    ``activation``: the confidence a box needs to start a track; ``high``: boxes above it are matched
    first, the others only to tracks left over (ByteTrack's second stage); ``lost_frames``: frames (at
    30 fps, scaled to ``frame_rate``) a track is kept without a box before it is dropped; ``iou``: the
    least overlap of a box with a track's predicted box to match. ``timestamp`` (seconds, increasing):
    the tracker predicts by elapsed time, so frames a live source dropped do not break tracks; None:
    one frame per call.
    """

    def __init__(
        self,
        frame_rate: float = 30.0,
        *,
        activation: float = 0.25,
        high: float = 0.5,
        lost_frames: int = 30,
        min_frames: int = 2,
        iou: float = 0.1,
    ) -> None:
        self.sv = _supervision()
        self.frame_rate = float(frame_rate) if frame_rate and frame_rate > 0 else 30.0
        self.options = {"activation": activation, "high": high, "lost_frames": lost_frames,
                        "min_frames": min_frames, "iou": iou}  # fmt: skip
        self._last_ts: float | None = None
        try:
            from trackers import ByteTrackTracker
        except ImportError as e:
            legacy = getattr(self.sv, "ByteTrack", None)
            if legacy is None:
                raise TrackerMissingError(str(e)) from None
            self._impl = legacy(
                track_activation_threshold=activation, lost_track_buffer=lost_frames,
                frame_rate=int(round(self.frame_rate)), minimum_consecutive_frames=min_frames,
            )  # fmt: skip
            self._legacy = True
            self.library = f"supervision {self.sv.__version__} ByteTrack"
            return
        import trackers

        self._impl = ByteTrackTracker(
            lost_track_buffer=int(lost_frames), frame_rate=self.frame_rate, track_activation_threshold=activation,
            minimum_consecutive_frames=int(min_frames), minimum_iou_threshold=iou, high_conf_det_threshold=high,
        )  # fmt: skip
        self._legacy = False
        self.library = f"trackers {getattr(trackers, '__version__', '')} ByteTrackTracker".replace("  ", " ")

    def update(self, detections: Detections, timestamp: float | None = None) -> Detections:
        """The same boxes with ``tracker_id`` (int64, -1 where not confirmed), in the tracker's order."""
        sv_in = detections.to_supervision()
        sv_in.tracker_id = None
        if self._legacy:
            out = self._impl.update_with_detections(sv_in)
        else:
            if timestamp is not None and self._last_ts is not None and timestamp <= self._last_ts:
                timestamp = self._last_ts + 1.0 / self.frame_rate  # a repeated time would skip the prediction
            if timestamp is not None:
                self._last_ts = timestamp
            out = self._impl.update(sv_in, timestamp=timestamp)
        if out.tracker_id is None:
            out.tracker_id = np.full(len(out), -1, np.int64)
        tracked = Detections.from_supervision(out, detections.image_hw)
        tracked.blur = detections.blur
        return tracked

    def reset(self) -> None:
        self._impl.reset()
        self._last_ts = None
