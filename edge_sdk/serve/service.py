"""The service behind ``edge-sdk serve``: every camera of a config against one loaded model, and the HTTP API.

Each camera is an :class:`edge_sdk.Pipeline` in its own thread, all sharing the model that :func:`_shared_model`
gives (the one place that decides how streams share it: multistream's BatchingModel, else a lock; each call
timed per stream). A file camera plays at its own rate like a camera (``mode: live``) and ends at its end unless
``loop: true``; the service runs while any camera runs and stops when all have ended, or on
:meth:`Service.request_stop` (SIGTERM / SIGINT), which stops every pipeline: recordings and clips are finalised,
MQTT sinks publish their offline status.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edge_sdk.errors import ConfigError, EdgeSDKError, TaskOptionError
from edge_sdk.serve.config import ServeConfig
from edge_sdk.serve.streams import EventLog, LoopTime, RawFrames, StreamSink, Tagged

log = logging.getLogger("edge_sdk.serve")
#: a stream with no result for this long is reported down (unless it has just started)
STALE_S = 10.0
#: seconds between each pipeline's metrics lines to its sinks (jsonl, mqtt)
METRICS_EVERY = 10.0


def _shared_model(model: Any, observe: Any = None, on_event: Any = None) -> Any:
    """The object every camera shares the loaded ``model`` through: the one place that obtains it
    (:func:`edge_sdk.serve.shared.shared_model`: multistream's BatchingModel, else a lock)."""
    from edge_sdk.serve.shared import shared_model

    return shared_model(model, observe, on_event)


@dataclass
class Camera:
    name: str
    pipeline: Any
    sink: StreamSink
    thread: threading.Thread | None = None
    started: float = field(default_factory=time.monotonic)
    error: str | None = None
    ended: bool = False
    final: dict[str, Any] | None = None


class Service:
    """Run ``config``'s cameras and serve the HTTP API: :meth:`start`, :meth:`wait`, :meth:`stop` (or ``with``)."""

    def __init__(self, config: ServeConfig, *, probe: Any = None) -> None:
        from edge_sdk.serve.metrics import ServeMetrics

        self.config = config
        self._probe = probe  # called with the model file before it is loaded (the CLI's isolated probe)
        self.events = EventLog()
        self.metrics = ServeMetrics(self.status)
        self.cameras: dict[str, Camera] = {}
        self.shared: Any = None  # edge_sdk.serve.shared.LockedModel or BatchedModel
        self.task: str | None = None
        self.model_info: dict[str, Any] = {}
        self.server: Any = None
        self.stop_reason: str | None = None
        self._stop_request: str | None = None
        self._predictor: tuple[Any, Any] = (None, None)  # (spec, post-processor) of /v1/infer
        self._stopped = False
        self._serving = False  # serve_forever runs (shutdown() would wait for it forever otherwise)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> Service:
        """Check the bind address, listen, load the model, build and start every camera's pipeline."""
        from edge_sdk.serve.http_api import make_server

        cfg = self.config
        if not cfg.loopback and not cfg.token:
            raise cfg.error(
                "http",
                f"{cfg.host}:{cfg.port} is not a loopback address: serving other machines needs "
                "a bearer token; set token: in the config or EDGE_SDK_SERVE_TOKEN (or bind 127.0.0.1)",
            )
        self.server = make_server(self, cfg.host, cfg.port)
        try:
            self._load_model()
            for cam in cfg.cameras.values():
                self.cameras[cam.name] = self._camera(cam)
        except BaseException:
            self.stop()
            raise
        threading.Thread(target=self.server.serve_forever, name="serve-http", daemon=True).start()
        self._serving = True
        for cam in self.cameras.values():
            cam.thread = threading.Thread(target=self._run_camera, args=(cam,), name=f"serve-{cam.name}", daemon=True)
            cam.started = time.monotonic()
            cam.thread.start()
        return self

    @property
    def url(self) -> str:
        host = self.config.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        port = self.server.server_address[1] if self.server is not None else self.config.port
        return f"http://{host}:{port}/"

    def request_stop(self, reason: str = "requested") -> None:
        """Ask :meth:`wait` to return and every pipeline to stop (only sets flags: safe in a signal handler)."""
        if self._stop_request is None:
            self._stop_request = reason
        for cam in list(self.cameras.values()):
            cam.pipeline.request_stop(reason)

    def wait(self, timeout: float | None = None) -> str:
        """Block until a stop request, every camera has ended, or ``timeout``; the reason."""
        t_end = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._stop_request is not None:
                return self._stop_request
            if all(c.thread is not None and not c.thread.is_alive() for c in self.cameras.values()):
                return "all cameras ended"
            if t_end is not None and time.monotonic() >= t_end:
                return "timeout"
            time.sleep(0.1)

    def stop(self, reason: str | None = None) -> None:
        """Stop every pipeline (sinks finalised), then the HTTP server and the model (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self.stop_reason = self.stop_reason or reason or self._stop_request or "stop()"
        for cam in self.cameras.values():
            cam.pipeline.request_stop(self.stop_reason)
        for cam in self.cameras.values():
            if cam.thread is not None:
                cam.thread.join(timeout=60)
            else:
                cam.pipeline.stop()
            cam.sink.close()
        if self.server is not None:
            self.server.shutdown_streams()
            if self._serving:
                self.server.shutdown()
            self.server.server_close()
        if self.shared is not None:
            self.shared.close()

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- building -------------------------------------------------------------------------------------------
    def _load_model(self) -> None:
        import edge_sdk as es
        from edge_sdk.metadata import model_metadata
        from edge_sdk.postprocess.registry import POSTPROCESSORS
        from edge_sdk.zoo_models import resolve_model

        cfg = self.config
        try:
            rm = resolve_model(cfg.model)
        except EdgeSDKError as e:
            raise cfg.error("model", str(e)) from None
        stored = model_metadata(rm.path)
        task = cfg.task or (stored.task if stored else None) or rm.task
        if task is None:
            raise cfg.error("model", f"{rm.path.name} carries no task (no edge_sdk metadata); add task: to the config "
                            f"({', '.join(POSTPROCESSORS)})")  # fmt: skip
        self.task, self._rm = task, rm
        if self._probe is not None:
            self._probe(rm.path)
        model = es.load(rm.path, threads=cfg.threads)
        try:
            self._predictor = _predictor(model, task, rm, cfg.options)
        except TaskOptionError as e:  # an option is unknown or out of range: its own line and key
            model.close()
            key = f"options.{e.options[0]}" if e.options and f"options.{e.options[0]}" in cfg.lines_of else "options"
            raise cfg.error(key, e.bare) from None
        except EdgeSDKError as e:  # the task or the options do not fit the model
            model.close()
            raise cfg.error("task" if cfg.task else "model", str(e)) from None
        except BaseException:
            model.close()
            raise
        self.shared = _shared_model(model, self.metrics.observe_inference, self._on_model_event)
        shown = cfg.model if cfg.model.startswith("zoo:") else rm.path.name
        self.model_info = {"model": shown, "path": str(rm.path), "task": task, "backend": model.backend,
                           "shared_by": self.shared.kind}  # fmt: skip

    def _camera(self, cc: Any) -> Camera:
        from edge_sdk.analytics.clips import ClipSink
        from edge_sdk.pipeline import Pipeline
        from edge_sdk.sinks import open_sink
        from edge_sdk.sinks.video import VideoFileSink
        from edge_sdk.sources import open_source, resolve

        key = f"cameras.{cc.name}"
        analytics = bool(cc.track or cc.zones or cc.lines)
        if analytics and self.task != "detect":
            raise self.config.error(key, f"track, zones and lines need boxes: task '{self.task}' gives none")
        sink = StreamSink(cc.name, self.events, self._on_event)
        sinks: list[Any] = [sink]
        try:
            kind = resolve(cc.source)[0]
            opts = {"mode": cc.mode, "loop": cc.loop} if kind == "file" else {}
            source = open_source(cc.source, **opts)
            if getattr(source, "is_live", False) and hasattr(source, "retry_open"):
                source.retry_open = True  # a camera still offline at boot is retried like a lost one
            for spec in [*self.config.sinks, *cc.sinks]:
                if spec.lower().startswith(("mqtt://", "mqtts://")):  # each camera its own topic and status
                    spec = camera_topic(spec, cc.name)
                sinks.append(Tagged(open_sink(spec), cc.name))
            if cc.record is not None:
                video = VideoFileSink(str(cc.record.path))
                sinks.append(video if cc.record.annotated else RawFrames(video))
            if cc.clips is not None:
                c = cc.clips
                clips = ClipSink(c.dir, pre=c.pre_s, post=c.post_s, events=c.events, annotated=c.annotated,
                                 max_bytes=None if c.max_mb is None else int(c.max_mb * 1e6),
                                 max_age_s=c.max_age_s)  # fmt: skip
                sinks.append(LoopTime(clips) if opts.get("loop") else clips)
            rm = self._rm
            pipe = Pipeline(source, self.shared.handle(cc.name), task=self.task, sinks=sinks,  # type: ignore[union-attr]
                            preprocess=rm.preprocess, labels=rm.labels, metrics_every=METRICS_EVERY,
                            track=analytics, zones=cc.zones or None, lines=cc.lines or None,
                            inflight=-(-getattr(self.shared, "lanes", 1) // len(self.config.cameras)),
                            **self.config.options)  # fmt: skip
        except ConfigError:
            raise
        except EdgeSDKError as e:
            raise self.config.error(key, str(e)) from None
        return Camera(cc.name, pipe, sink)

    def _run_camera(self, cam: Camera) -> None:
        try:
            cam.final = cam.pipeline.run()
        except BaseException as e:  # one camera failing leaves the others running
            cam.error = str(e) if isinstance(e, EdgeSDKError) else f"{type(e).__name__}: {e}"
            log.warning("camera %s failed: %s", cam.name, cam.error)
            self.events.add(cam.name, {"type": "source", "event": "FAILED", "detail": cam.error})
        finally:
            cam.ended = True

    def _on_event(self, stream: str, event: dict[str, Any]) -> None:
        self.metrics.count_event(stream, event)

    def _on_model_event(self, event: dict[str, Any]) -> None:
        """A watchdog event of the shared model (a stalled call abandoned, the backend restarted)."""
        self.events.add("model", event)
        self.metrics.count_event("model", event)

    # -- what the API reports -------------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        """Per camera: name, up, state (starting, running, stalled, reconnecting, ended, failed), fps, last frame
        age, frames, results, dropped, frame age percentiles."""
        out = []
        for cam in list(self.cameras.values()):
            m = cam.final if cam.final is not None else cam.pipeline.metrics()
            last = cam.sink.last_result
            age = None if last is None else round(max(0.0, time.monotonic() - last), 3)
            running = cam.thread is not None and cam.thread.is_alive() and not cam.ended
            if cam.error:
                state = "failed"
            elif not running:
                state = "ended" if cam.thread is not None else "starting"
            elif getattr(cam.pipeline.source, "reconnecting", False):
                state = "reconnecting"  # a live source lost, or not reachable yet: retried with backoff
            elif age is None:
                state = "starting"
            else:
                state = "running" if age <= STALE_S else "stalled"
            frames = m.get("frames") or {}
            out.append({
                "name": cam.name, "up": state == "running", "state": state,
                "fps": m.get("fps_recent") if running else 0.0, "last_frame_age_s": age,
                "frames": frames.get("captured", 0), "results": m.get("results", 0),
                "dropped": frames.get("dropped", 0), "frame_age_ms": m.get("latency_ms"),
                "size": list(cam.sink.size) if cam.sink.size else None, "error": cam.error,
                "analytics": m.get("analytics"),
            })  # fmt: skip
        return out

    def infer(self, image: Any) -> Any:
        """What ``Model.predict`` gives for one RGB image (the service's task, preprocessing, labels and options),
        run through the shared model like a camera's frame (stream ``http``): the typed result."""
        from edge_sdk.results import typed
        from edge_sdk.sources.base import Frame

        spec, post = self._predictor
        if post is None:
            from edge_sdk.errors import TaskError

            raise TaskError(f"POST /v1/infer takes images, but the model (task '{self.task}') takes other input")
        outputs = self.shared.run(spec.apply(image), "http", dequantize=True)
        return typed(post(outputs, Frame(image, time.monotonic(), 0, {})))


def camera_topic(spec: str, camera: str) -> str:
    """``mqtt://host:1883/edge`` -> ``mqtt://host:1883/edge/<camera>`` (no topic: ``edge_sdk/events/<camera>``)."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(spec)
    topic = u.path.strip("/") or "edge_sdk/events"
    return urlunsplit((u.scheme, u.netloc, f"/{topic}/{camera}", u.query, u.fragment))


def _predictor(model: Any, task: str, rm: Any, options: dict[str, Any]) -> tuple[Any, Any]:
    """(PreprocessSpec, post-processor) for ``/v1/infer``, built as ``Model.predict`` builds them."""
    from edge_sdk.errors import TaskError
    from edge_sdk.pipeline.model_info import model_labels, model_preprocess
    from edge_sdk.postprocess.registry import build_postprocessor
    from edge_sdk.preprocess import PreprocessSpec

    spec = rm.preprocess if rm.preprocess is not None else model_preprocess(model)
    if not isinstance(spec, PreprocessSpec):
        return spec, None
    labels = rm.labels if rm.labels is not None else model_labels(model)
    post = build_postprocessor(task, model, spec, labels, dict(options))
    if getattr(post, "prepare", None) is not None:
        raise TaskError(f"task '{task}' prepares its own input (audio); edge-sdk serve runs image models")
    return spec, post
