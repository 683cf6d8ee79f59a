"""``MultiStream``: N sources against one model, one :class:`~edge_sdk.Pipeline` per source.

Each stream keeps its own source, pre-processing, post-processing, analytics and sinks threads (a live
source keeps the latest frame, a file gives every frame); their inference calls meet in one
:class:`~edge_sdk.multistream.batching.BatchingModel`, which batches them across streams or serves them
round-robin, under the watchdog. Per-stream numbers come from each Pipeline's own metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from edge_sdk.multistream.batching import BatchingModel
from edge_sdk.multistream.lanes import usable_cores

log = logging.getLogger("edge_sdk.multistream")


class MultiStream:
    """Run ``sources`` (``{name: source spec}``: a path, URI, camera index or Source) against one ``model``.

    ``model``: a path (loaded and closed here), a loaded :class:`~edge_sdk.Model` (left open) or a
    :class:`BatchingModel` (shared with others; left open). ``task``: default the model's own (metadata),
    else ``classify``. ``per_stream``: ``{name: {Pipeline keyword: value}}`` for one stream (sinks, zones,
    lines, track, ...); other keywords go to every stream's Pipeline. ``on_result(name, frame, result)``
    gets each typed result; ``on_event(event)`` each watchdog event (also written to every stream's sinks).
    ``max_batch``, ``window_ms``, ``lanes``, ``watchdog``: see :class:`BatchingModel`. Each stream keeps
    enough calls in flight (``Pipeline(inflight=...)``) for every lane to have work: two for one stream on
    two lanes, one each from two streams on.

    ``run()`` blocks until every file source ended (or ``duration`` / :meth:`request_stop`); ``start()`` and
    ``stop()`` (or ``with``) run it in the background; :meth:`stats` gives per-stream numbers meanwhile.
    One stream failing (its source, its sink) does not stop the others; its error is in ``errors[name]``.
    """

    def __init__(
        self,
        sources: dict[str, Any],
        model: Any,
        *,
        task: str | None = None,
        per_stream: dict[str, dict[str, Any]] | None = None,
        on_result: Callable[[str, Any, Any], None] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        max_batch: int | None = None,
        window_ms: float | None = None,
        lanes: int | str | None = "auto",
        watchdog: Any = None,
        **pipeline_kwargs: Any,
    ) -> None:
        from edge_sdk.errors import EdgeSDKError

        if not sources:
            raise EdgeSDKError("MultiStream needs at least one source: {name: source}")
        unknown = sorted(set(per_stream or {}) - set(sources))
        if unknown:
            raise EdgeSDKError(f"per_stream names unknown stream(s) {unknown}; streams: {sorted(sources)}")
        self._owns_shared = not isinstance(model, BatchingModel)
        self.model = model if isinstance(model, BatchingModel) else BatchingModel(
            model, max_batch=max_batch, window_ms=window_ms, lanes=lanes, watchdog=watchdog)  # fmt: skip
        self.model.add_listener(self._on_watchdog)
        self.on_result = on_result
        self.on_event = on_event
        self.task = task or self._model_task()
        self.pipelines: dict[str, Any] = {}
        self._n_sources = len(sources)
        self.errors: dict[str, BaseException] = {}
        self._runners: dict[str, threading.Thread] = {}
        self._stop_request: str | None = None
        self._started = self._closed = False
        try:
            for name, source in sources.items():
                own = (per_stream or {}).get(name, {})
                self.pipelines[name] = self._pipeline(name, source, {**pipeline_kwargs, **own})
        except BaseException:
            self._close_all()
            raise

    def _model_task(self) -> str:
        from edge_sdk.pipeline.model_info import model_task

        return model_task(self.model)

    def _pipeline(self, name: str, source: Any, kwargs: dict[str, Any]) -> Any:
        from edge_sdk.pipeline import Pipeline

        own = kwargs.pop("on_frame_result", None)
        if self.on_result is not None or own is not None:

            def deliver(frame: Any, result: Any) -> None:
                if own is not None:
                    own(frame, result)
                if self.on_result is not None:
                    self.on_result(name, frame, result)

            kwargs["on_frame_result"] = deliver
        kwargs.setdefault("task", self.task)
        kwargs.setdefault("inflight", -(-self.model.lanes // self._n_sources))
        pipeline = Pipeline(source, self.model.stream(name), **kwargs)
        if getattr(pipeline.source, "decode_threads", 0) is None:  # a decoder the caller left at FFmpeg's default
            pipeline.source.decode_threads = max(1, usable_cores() // self._n_sources)
        return pipeline

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> MultiStream:
        """Start every stream (sources open side by side); each then runs in its own runner thread."""
        if self._started:
            return self
        self._started = True
        failed: list[BaseException] = []

        def open_one(p: Any) -> None:
            try:
                p.start()
            except BaseException as e:
                failed.append(e)

        openers = [threading.Thread(target=open_one, args=(p,), daemon=True) for p in self.pipelines.values()]
        for t in openers:
            t.start()
        for t in openers:
            t.join()
        if failed:
            self._close_all()
            raise failed[0]
        for name, p in self.pipelines.items():
            t = threading.Thread(target=self._run_one, args=(name, p), name=f"multistream-{name}", daemon=True)
            self._runners[name] = t
            t.start()
        return self

    def _run_one(self, name: str, pipeline: Any) -> None:
        try:
            pipeline.run()
        except BaseException as e:
            self.errors[name] = e
            log.warning("stream %s stopped on an error: %s", name, e)

    def request_stop(self, reason: str = "requested") -> None:
        """Ask every stream to stop; only sets flags, so a signal handler may call it."""
        if self._stop_request is None:
            self._stop_request = reason
        for p in self.pipelines.values():
            p.request_stop(reason)

    def run(self, duration: float | None = None) -> dict[str, dict[str, Any]]:
        """Run until every stream ended (file sources), ``duration`` seconds, or :meth:`request_stop`.

        Returns each stream's final metrics; raises the first error when every stream failed.
        """
        self.start()
        t_end = None if duration is None else time.monotonic() + duration
        try:
            while any(t.is_alive() for t in self._runners.values()):
                if self._stop_request is not None:
                    break
                if t_end is not None and time.monotonic() >= t_end:
                    self.request_stop("duration")
                    break
                time.sleep(0.05)
        finally:
            self.stop()
        if self.errors and len(self.errors) == len(self.pipelines):
            raise next(iter(self.errors.values()))
        return {name: p.metrics() for name, p in self.pipelines.items()}

    def stop(self) -> None:
        """Stop every stream (sinks finalised) and close the shared model if it was made here (idempotent)."""
        if self._closed:
            return
        self.request_stop(self._stop_request or "stop()")
        for t in self._runners.values():
            t.join(timeout=15)
        self._close_all()

    def _close_all(self) -> None:
        self._closed = True
        for name, p in self.pipelines.items():
            if name not in self._runners:  # never ran: its run() did not stop it
                try:
                    p.stop()
                except Exception as e:  # pragma: no cover - stopping must go on for the others
                    log.warning("stopping stream %s failed: %s", name, e)
        if self._owns_shared:
            self.model.close()

    def __enter__(self) -> MultiStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- numbers and events ----------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, Any]]:
        """Per stream: up (running, no error, its source not disconnected), fps (recent while running), frames
        (results), drops, frame age p50/p99 (capture -> result, ms), seconds since its last result (None before
        the first) and, after a failure, error."""
        now = time.monotonic()
        out = {}
        for name, p in self.pipelines.items():
            m = p.metrics()
            runner = self._runners.get(name)
            running = runner is not None and runner.is_alive()
            last = p.stats.result_ts[-1] if p.stats.result_ts else None
            lat = m.get("latency_ms") or {}
            events = [e.get("event") for e in p.source_events if e.get("event") in ("DISCONNECTED", "RECONNECTED")]
            connected = not events or events[-1] != "DISCONNECTED"
            out[name] = {
                "up": running and connected and name not in self.errors,
                "fps": p.stats.recent_fps() if running else m.get("fps", 0.0),
                "frames": m.get("results", 0),
                "drops": m.get("frames", {}).get("dropped", 0),
                "frame_age_p50_ms": lat.get("p50"),
                "frame_age_p99_ms": lat.get("p99"),
                "last_frame_age_s": None if last is None else round(now - last, 3),
            }
            if name in self.errors:
                out[name]["error"] = str(self.errors[name])
        return out

    def _on_watchdog(self, event: dict[str, Any]) -> None:
        """A watchdog event: to ``on_event`` and to every stream's sinks (``write_event``)."""
        if self.on_event is not None:
            self.on_event(event)
        for p in self.pipelines.values():
            p._write_event(event)
