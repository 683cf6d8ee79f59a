"""``for frame, result in pipeline:`` and ``on_frame_result``: the Pipeline's results as (frame, typed result) pairs.

A mixin of :class:`edge_sdk.pipeline.pipeline.Pipeline`: the post stage hands each pair over
(:meth:`IterationMixin._hand_over`), a running loop takes them from a small queue.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import Any, Iterator

from edge_sdk.sources.base import Frame

log = logging.getLogger("edge_sdk.pipeline")


class IterationMixin:
    """Iteration over a Pipeline; relies on its ``start``/``stop``/``emit_metrics`` and its stage state."""

    _iter_queue: queue.Queue[tuple[Frame | None, Any]] | None
    _iter_tail: list[tuple[Frame | None, Any]] | None
    on_frame_result: Any
    metrics_every: float
    stop_reason: str | None
    _stop_request: str | None
    _threads: list[Any]
    _error: BaseException | None
    post: Any
    task: str
    last_event: dict[str, Any] | None
    on_result: Any
    _deliver: Any

    def __iter__(self) -> Iterator[tuple[Frame | None, Any]]:
        """``for frame, result in pipeline:``: run the pipeline and yield each frame with its typed result.

        ``frame`` is the source's :class:`~edge_sdk.sources.base.Frame` (``frame.data``: the RGB image,
        ``frame.index``, ``frame.meta``); ``result`` the typed result (:mod:`edge_sdk.results`), the one
        ``on_frame_result`` gets. Sinks, ``on_result`` and the metrics work as with :meth:`run`. The loop ends
        when the source ends or on :meth:`request_stop`; leaving it early (``break``) stops the pipeline.
        Results the post-processor closes at the end (a VAD speech segment's ``SPEECH_END``) come last, with
        ``frame`` None. A slow loop body holds the post stage back: with a file every frame still comes, with
        a live source the freshest frames win as in :meth:`run`. A stage's error is raised here.
        """
        q: queue.Queue[tuple[Frame | None, Any]] = queue.Queue(maxsize=2)
        self._iter_queue, self._iter_tail = q, []
        next_metrics = time.monotonic() + self.metrics_every if self.metrics_every > 0 else None
        reason = "source ended"
        self.start()  # type: ignore[attr-defined]
        try:
            while True:
                if self._stop_request is not None:
                    reason = self._stop_request
                    break
                try:
                    pair = q.get(timeout=0.05)
                except queue.Empty:
                    if not any(t.is_alive() for t in self._threads) and q.empty():
                        break
                else:
                    yield pair
                if next_metrics is not None and time.monotonic() >= next_metrics:
                    self.emit_metrics()  # type: ignore[attr-defined]
                    next_metrics = time.monotonic() + self.metrics_every
        except GeneratorExit:
            reason = "iteration ended"
            raise
        except BaseException:
            reason = "error"
            raise
        finally:
            self._iter_queue = None  # the post stage stops handing results over
            self.stop_reason = self.stop_reason or ("error" if self._error is not None else reason)
            self.stop()  # type: ignore[attr-defined]
        if self._error is not None:
            raise self._error
        tail, self._iter_tail = self._iter_tail or [], None
        yield from tail

    def _hand_over(self, frame: Frame | None, result: Any) -> None:
        """Give ``(frame, typed result)`` to ``on_frame_result`` and to a running ``for ... in pipeline`` loop
        (waiting while the loop is busy, until it ends)."""
        from edge_sdk.results import typed

        pair = (frame, typed(result))
        if self.on_frame_result is not None:
            self.on_frame_result(*pair)
        q = self._iter_queue
        if frame is None and self._iter_tail is not None:  # closing results come while stop() runs
            self._iter_tail.append(pair)
            return
        while q is not None and self._iter_queue is q:
            try:
                q.put(pair, timeout=0.05)
                return
            except queue.Full:
                continue

    def _closing_result(self, events: list[dict[str, Any]], last: dict[str, Any]) -> Any:
        """The typed result of the events the post-processor's ``finish()`` closed (VAD: a VoiceActivity with no
        windows), handed over like any other result."""
        if self.task != "vad":  # type: ignore[attr-defined]
            return {"events": events}
        import numpy as np

        from edge_sdk.results import VoiceActivity

        return VoiceActivity(np.zeros(0, np.float32), False, float(last.get("t_s", 0.0)), events)

    def _finish_post(self) -> None:
        """Close what the post-processor keeps open (a VAD speech segment) and send its closing events."""
        finish = getattr(self.post, "finish", None)
        if finish is None:
            return
        try:
            events = finish()
        except Exception as e:  # pragma: no cover - must not hide the run's end
            log.warning("finishing the %s post-processor failed: %s", self.task, e)
            return
        if not events:
            return
        for ev in events:
            ev.setdefault("stopped_by", self.stop_reason)
        last = self.last_event or {}
        event = {"type": "result", "task": self.task, "frame": last.get("frame"), "capture_ts": round(time.time(), 4),
                 "final": True, "stopped_by": self.stop_reason, "events": events}  # fmt: skip
        for key in ("t_s", "file"):
            if key in last:
                event[key] = last[key]
        self._deliver(None, None, event, None)
        self.last_event = event
        if self.on_result is not None:
            self.on_result(event)
        if self.on_frame_result is not None or self._iter_tail is not None:
            self._hand_over(None, self._closing_result(events, last))
