"""``Pipeline``: source -> pre-process -> inference -> post-process -> sinks, each stage in its own thread.

Stages hand over through bounded queues (:class:`~edge_sdk.pipeline.queues.StageQueue`). With a live source the
default drop policy is ``oldest`` (the freshest frame wins; drops are counted), with a file it is ``block`` (every
frame is processed). Pre- and post-processing of neighbouring frames overlap inference, so the model is the only
bottleneck.

Stopping: :meth:`Pipeline.request_stop` (safe in a signal handler: it only sets a flag) makes :meth:`Pipeline.run`
return within 50 ms through :meth:`Pipeline.stop`, which closes what the post-processor left open (a VAD speech
segment gets its ``SPEECH_END``), writes the final metrics line (with ``stopped_by``) and closes every sink (a
video file is finalised, MQTT says offline).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterator, Sequence

import numpy as np

from edge_sdk.errors import EdgeSDKError, InferenceStalledError, PreprocessError, SinkError
from edge_sdk.model import Model
from edge_sdk.pipeline.iteration import IterationMixin
from edge_sdk.pipeline.metrics import PipelineMetrics
from edge_sdk.pipeline.queues import Closed, InOrder, StageQueue
from edge_sdk.postprocess.registry import build_postprocessor
from edge_sdk.sources import Source, open_source
from edge_sdk.sources.base import Frame

log = logging.getLogger("edge_sdk.pipeline")
STAGES = ("pre", "infer", "post")


@dataclass
class _Item:
    frame: Frame
    feeds: Any = None
    outputs: dict[str, np.ndarray] | None = None
    work: float = 0.0  # seconds of pre + infer + post spent on this frame (the rest of its age is queue wait)


class Pipeline(IterationMixin):
    """Run ``model`` on every frame ``source`` gives (or the freshest ones, when live) and feed ``sinks``.

    ``source``: a URI / path / camera index / :class:`Source`; ``model``: a loaded
    :class:`~edge_sdk.Model` or a path (loaded and closed by the pipeline); ``task``: a key of
    :data:`edge_sdk.postprocess.registry.POSTPROCESSORS`, default the task the model carries (else ``classify``);
    ``sinks``: sink specs (``"events.jsonl"``, ``"out.mp4"``, ``"http://:8080"``, ``"mqtt://host/topic"``, ``"window"``)
    or :class:`~edge_sdk.sinks.Sink` objects. Extra keywords go to the post-processor
    (``top_k=5``, ``threshold=0.5``, ``blur=True``...). ``warmup``: inferences on zeros while the
    source opens (0: none; default: one for a live source, whose first frames should not wait on the
    runtime's first-call cost, none for files, whose first result would only come later).
    ``events_only``: sinks that take no image get one ``{"type": "event"}`` line per task event instead of every result.
    ``inflight``: inference calls at once (default 1); more keep a model with several lanes busy from one
    source (:class:`~edge_sdk.multistream.BatchingModel`); results still reach post-processing in frame order.

    Analytics (``detect``; :mod:`edge_sdk.analytics`): ``track=True`` (or a dict of tracker options) gives each
    box a ByteTrack ``tracker_id`` (``track_id`` in the result JSON); ``zones={"door": [(x, y), ...]}`` and
    ``lines={"gate": [(x1, y1), (x2, y2)]}`` (source image pixels; they turn tracking on) give ``enter`` /
    ``leave`` / ``cross`` events, written as their own ``{"type": "event"}`` lines through every sink's
    ``write_event``, and in/out counts under ``analytics`` in the metrics.

    Results in Python: ``on_result`` gets each result's JSON dict (what a jsonl sink writes);
    ``on_frame_result`` gets ``(frame, result)``: the :class:`~edge_sdk.sources.base.Frame` (``frame.data`` is
    the image) and the typed result (:mod:`edge_sdk.results`: ``Classifications``, ``Detections``,
    ``VoiceActivity``). Or iterate: ``for frame, result in pipeline:`` runs the pipeline and yields the same
    pairs (see :meth:`__iter__`).
    """

    def __init__(
        self,
        source: Any,
        model: Any,
        *,
        task: str | None = None,
        sinks: Sequence[Any] = (),
        preprocess: Any = None,
        labels: Sequence[str] | None = None,
        queue_size: int = 1,
        drop: str | None = None,
        inflight: int = 1,
        metrics_every: float = 5.0,
        metrics_file: str | os.PathLike[str] | IO[str] | None = None,
        on_result: Callable[[dict[str, Any]], None] | None = None,
        on_frame_result: Callable[[Frame | None, Any], None] | None = None,
        warmup: int | None = None,
        events_only: bool = False,
        track: bool | dict[str, Any] = False,
        zones: dict[str, Any] | None = None,
        lines: dict[str, Any] | None = None,
        **post_opts: Any,
    ) -> None:
        from edge_sdk.pipeline.model_info import model_labels, model_preprocess, model_task
        from edge_sdk.sinks import open_sink

        self._owns_model = not hasattr(model, "run")
        if not isinstance(inflight, int) or isinstance(inflight, bool) or inflight < 1:
            raise EdgeSDKError(f"inflight must be a whole number >= 1 (calls in inference at once), got {inflight!r}")
        self.inflight = inflight
        if inflight > 1 and (self._owns_model or isinstance(model, Model)):  # a path is loaded as a plain Model
            raise EdgeSDKError(f"inflight={inflight} runs {inflight} calls at once, but a Model runs one at a time; "
                               f"share it as edge_sdk.multistream.BatchingModel(model, lanes={inflight})")  # fmt: skip
        if self._owns_model:
            from edge_sdk.loader import load

            model = load(model)
        self.model = model
        task = task or model_task(model)  # a detector converted by edge-sdk says so; classify otherwise
        self.task = task
        try:
            spec_error: PreprocessError | None = None
            if preprocess is None:
                try:
                    preprocess = model_preprocess(model)
                except PreprocessError as e:  # e.g. an audio model: its post-processor prepares the input
                    spec_error = e
            self.spec = preprocess
            labels = labels if labels is not None else model_labels(model)
            self.post = build_postprocessor(task, model, preprocess, labels, post_opts)
            self._prepare = getattr(self.post, "prepare", None)
            self._infer = getattr(self.post, "infer", None)
            if self._infer is not None and self.inflight > 1:  # it carries state from one call to the next (VAD)
                log.info("task %s runs its inference in order, one call at a time: inflight 1", task)
                self.inflight = 1
            if self._prepare is None and spec_error is not None:
                raise spec_error
            self.source: Source = open_source(source)
            self.sinks = [open_sink(s) for s in sinks]
            self.analytics = None
            if track or zones or lines:
                from edge_sdk.analytics import Analytics

                self.analytics = Analytics(track=track or True, zones=zones, lines=lines, frame_rate=self.source,
                                           task=task)  # fmt: skip
        except BaseException:
            if self._owns_model:
                model.close()
            raise
        live = self.source.is_live or getattr(self.source, "policy", "") == "latest"
        # a source may ask for its own policy: audio sources say "block" (their ring buffer is where
        # audio is lost and counted; a window dropped between stages would break a recurrent model's state)
        policy = drop or getattr(self.source, "drop_policy", None) or ("oldest" if live else "block")
        self.drop = policy
        self.q_pre = StageQueue("pre->infer", queue_size, policy)
        self.q_post = StageQueue("infer->post", queue_size, policy)
        self._in_order = InOrder(self.q_post, self.inflight)
        self.metrics_every = metrics_every
        self._metrics_out = metrics_file
        self._metrics_fh: IO[str] | None = None
        self.on_result = on_result
        self.on_frame_result = on_frame_result
        self._iter_queue: queue.Queue[tuple[Frame | None, Any]] | None = None  # set while __iter__ runs
        self._iter_tail: list[tuple[Frame | None, Any]] | None = None  # closing results, yielded after stop
        self.warmup = warmup
        self.events_only = events_only
        self.live = live
        self.stop_reason: str | None = None
        self._stop_request: str | None = None
        self.stats = PipelineMetrics(STAGES)
        self.source_events: list[dict[str, Any]] = []
        self.last_event: dict[str, Any] | None = None
        self._needs_image = any(getattr(s, "needs_image", False) for s in self.sinks)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._started = self._closed = False
        self._max_results: int | None = None
        self.infer_dropped = 0  # frames whose inference a watchdog abandoned (InferenceStalledError)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Pipeline:
        if self._started:
            return self
        self._started = True
        self._start_source_while_warming_up()
        fps = getattr(self.source, "fps", 0.0) or getattr(self.source, "rate", 0.0) or None
        model_name = str(getattr(self.model, "path", ""))
        info = {"task": self.task, "model": model_name, "source": self.source.name, "fps": fps, "live": self.live}
        try:
            for s in self.sinks:
                s.open(info)
        except BaseException:
            self.source.stop()
            raise
        if isinstance(self._metrics_out, (str, os.PathLike)):
            try:
                self._metrics_fh = open(self._metrics_out, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
            except OSError as e:
                raise SinkError(f"metrics file {self._metrics_out}: {e.strerror}; create its folder or choose "
                                "another path") from None  # fmt: skip
        elif self._metrics_out is not None:
            self._metrics_fh = self._metrics_out
        self.stats.reset()
        infer = [(f"infer{i or ''}", self._infer_loop) for i in range(self.inflight)]
        for name, fn in (("pre", self._pre_loop), *infer, ("post", self._post_loop)):
            t = threading.Thread(target=self._guard, args=(fn,), name=f"pipeline-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _start_source_while_warming_up(self) -> None:
        """Open the source (a camera, stream or file takes 0.1-1 s) while the warm-up inference runs beside it.

        The two used to run one after the other, which put both on the time to the first result.
        """
        runs = self.warmup if self.warmup is not None else (1 if self.live else 0)
        if not runs:
            self.source.start()
            return
        failed: list[BaseException] = []

        def warm() -> None:
            try:
                self.model.warmup(runs)
            except BaseException as e:  # re-raised on the caller's thread below
                failed.append(e)

        t = threading.Thread(target=warm, name="pipeline-warmup", daemon=True)
        t.start()
        try:
            self.source.start()
        finally:
            t.join()
        if failed:
            self.source.stop()
            raise failed[0]

    def request_stop(self, reason: str = "requested") -> None:
        """Ask :meth:`run` to stop and finalise everything; only sets a flag, so a signal handler may call it."""
        if self._stop_request is None:
            self._stop_request = reason

    def run(self, duration: float | None = None, max_results: int | None = None) -> dict[str, Any]:
        """Run until the source ends, ``duration`` seconds pass, ``max_results`` results, or a stop request.

        Emits the metrics every ``metrics_every`` seconds; returns the final metrics (``stopped_by`` says
        which of those ended the run). Re-raises an error a stage hit (after stopping everything).
        """
        self._max_results = max_results
        self.start()
        t_end = None if duration is None else time.monotonic() + duration
        next_metrics = time.monotonic() + self.metrics_every if self.metrics_every > 0 else None
        reason = "source ended"
        try:
            while True:
                if self._stop_request is not None:
                    reason = self._stop_request
                    break
                if self._stop.is_set() or not any(t.is_alive() for t in self._threads):
                    reason = "max_results" if self._max_results_hit() else "source ended"
                    break
                now = time.monotonic()
                if t_end is not None and now >= t_end:
                    reason = "duration"
                    break
                if next_metrics is not None and now >= next_metrics:
                    self.emit_metrics()
                    next_metrics = now + self.metrics_every
                self._stop.wait(0.05)
        except BaseException:
            reason = "error"
            raise
        finally:
            self.stop_reason = self.stop_reason or ("error" if self._error is not None else reason)
            self.stop()
        if self._error is not None:
            raise self._error
        return self.metrics()

    def stop(self) -> None:
        """Stop every stage, the source and the sinks (idempotent); the final metrics stay readable."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self.source.stop()
        self.q_pre.close()
        self.q_post.close()
        for t in self._threads:
            t.join(timeout=10)
        if self._started:
            self._finish_post()
        self._final = self.metrics()
        if self._started:
            self.emit_metrics(final=True)
        for s in self.sinks:
            try:
                s.close()
            except Exception as e:  # pragma: no cover - a sink failing to close must not hide the run
                log.warning("closing sink %s failed: %s", s, e)
        if self._metrics_fh is not None and isinstance(self._metrics_out, (str, os.PathLike)):
            self._metrics_fh.close()
        if self._owns_model:
            self.model.close()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- metrics ---------------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """fps, latency p50/p99/max (capture -> result, ms), per-stage fps and time, drops, source events."""
        if self._closed and hasattr(self, "_final"):
            return self._final
        src = self.source
        dropped = {"source": src.dropped, "pre_queue": self.q_pre.dropped, "post_queue": self.q_post.dropped,
                   "infer": self.infer_dropped}  # fmt: skip
        snap = self.stats.snapshot(
            task=self.task,
            source=src.name,
            frames={
                "captured": src.produced,
                "dropped": sum(dropped.values()),
                "dropped_by": dropped,
                "overflows": src.overflows,
            },  # fmt: skip
            events=self.source_events[-20:],
        )
        if self.analytics is not None:
            snap["analytics"] = self.analytics.counts()
        return snap

    def emit_metrics(self, final: bool = False) -> dict[str, Any]:
        """Write the metrics as one JSON line (``metrics_file``) and hand them to every sink."""
        snap = self.metrics()
        line = {"type": "metrics", "final": final, "ts": time.time(), **snap}
        if final:
            line["stopped_by"] = self.stop_reason or "stop()"
        if self._metrics_fh is not None:
            self._metrics_fh.write(json.dumps(line) + "\n")
            self._metrics_fh.flush()
        for s in self.sinks:
            try:
                s.write_metrics(line)
            except Exception as e:
                log.warning("sink %s: writing metrics failed: %s", s, e)
        return snap

    # -- stages ----------------------------------------------------------------------------------
    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as e:
            if self._error is None:
                self._error = e
            log.debug("pipeline stage failed", exc_info=True)
            self._stop.set()
            self.q_pre.close()
            self.q_post.close()

    def _pre_loop(self) -> None:
        src, spec, stage = self.source, self.spec, self.stats.stages["pre"]
        try:
            while not self._stop.is_set():
                self._drain_source_events()
                frame = src.read(timeout=0.25)
                if frame is None:
                    if src.ended:
                        break
                    continue
                t = time.perf_counter()
                feeds = self._prepare(frame) if self._prepare else spec.apply(frame.data)
                dt = time.perf_counter() - t
                stage.add(dt)
                self.q_pre.put(_Item(frame, feeds, work=dt), self._stop)
        finally:
            self._drain_source_events()
            self.q_pre.close()

    def _items(self, queue: Any) -> Iterator[_Item]:
        """Items from a stage queue until it is closed, or it is empty after stop was asked."""
        while (item := self._next(queue)) is not None:
            yield item

    def _next(self, queue: Any) -> _Item | None:
        while True:
            try:
                item = queue.get(0.25)
            except Closed:
                return None
            if item is not None or self._stop.is_set():
                return item

    def _infer_loop(self) -> None:
        """One of ``inflight`` infer threads: frames leave in the order they were taken (``InOrder``)."""
        model, stage, order = self.model, self.stats.stages["infer"], self._in_order
        run = self._infer or (lambda m, feeds, _frame: m.run(feeds, dequantize=True))
        try:
            while (taken := order.take(lambda: self._next(self.q_pre))) is not None:
                ticket, item = taken
                t = time.perf_counter()
                try:  # a shared model's watchdog may give up on this frame (InferenceStalledError): drop it
                    item.outputs = run(model, item.feeds, item.frame)
                except InferenceStalledError:
                    self.infer_dropped += 1
                    order.done(ticket, None)
                    continue
                dt = time.perf_counter() - t
                stage.add(dt)
                item.work += dt
                item.feeds = None
                order.done(ticket, item, self._stop)
        finally:
            order.finish()

    def _post_loop(self) -> None:
        stage = self.stats.stages["post"]
        for item in self._items(self.q_post):
            t = time.perf_counter()
            frame = item.frame
            result = self.post(item.outputs, frame)
            found: list[dict[str, Any]] = []
            if self.analytics is not None:  # track ids, zone and line events (edge_sdk.analytics)
                result, found = self.analytics.update(result, frame)
            work = item.work + time.perf_counter() - t
            age = self.stats.result(frame.capture_ts, work)
            event = {
                "type": "result",
                "task": self.task,
                "frame": frame.index,
                "capture_ts": round(time.time() - (time.monotonic() - frame.capture_ts), 4),
                "latency_ms": round(age * 1000, 2),
                "processing_ms": round(min(work, age) * 1000, 2),
                **result.to_event(),
            }
            if "pos_ms" in frame.meta:
                event["pos_ms"] = round(frame.meta["pos_ms"], 1)
            if "file" in frame.meta:
                event.setdefault("file", frame.meta["file"])
            reason = self.stop_reason or self._stop_request
            if reason and frame.meta.get("last") and self._stop.is_set():  # the source's last frame, cut by a stop
                for ev in event.get("events") or ():
                    ev.setdefault("stopped_by", reason)
            image = result.annotate(frame.data) if self._needs_image else None
            self._deliver(frame, result, event, image)
            for ev in found:
                self._write_event(ev)
            self.last_event = event
            if self.on_result is not None:
                self.on_result(event)
            if self.on_frame_result is not None or self._iter_queue is not None:
                self._hand_over(frame, result)
            stage.add(time.perf_counter() - t)
            if self._max_results_hit():
                self._stop.set()

    def _deliver(self, frame: Any, result: Any, event: dict[str, Any], image: np.ndarray | None) -> None:
        """Hand one result to every sink; with ``events_only`` sinks without images get its events alone."""
        task_events = event.get("events") or []
        for s in self.sinks:
            if not self.events_only or s.needs_image:
                s.write(frame, result, event, image)
                continue
            for ev in task_events:
                line = {"type": "event", "task": self.task, **ev, "frame": event.get("frame"),
                        "capture_ts": event.get("capture_ts")}  # fmt: skip
                s.write(frame, result, line, None)

    def _max_results_hit(self) -> bool:
        return self._max_results is not None and self.stats.results >= self._max_results

    def _drain_source_events(self) -> None:
        q = self.source.events
        while not q.empty():
            try:
                ev = q.get_nowait()
            except Exception:
                break
            d = {"type": "source", **ev.to_dict()}
            self.source_events.append(d)
            del self.source_events[:-100]
            self._write_event(d)

    def _write_event(self, d: dict[str, Any]) -> None:
        for s in self.sinks:
            try:
                s.write_event(d)
            except Exception as e:
                log.warning("sink %s: writing an event failed: %s", s, e)
