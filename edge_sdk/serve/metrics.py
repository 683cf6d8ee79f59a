"""``GET /metrics``: the service's Prometheus exposition through prometheus-client, in a registry of its own.

Per stream (label ``stream``): ``edge_sdk_stream_up``, ``edge_sdk_stream_fps`` (results per second lately),
``edge_sdk_stream_frames_total`` (captured), ``edge_sdk_stream_results_total``,
``edge_sdk_stream_dropped_frames_total``, ``edge_sdk_stream_frame_age_seconds{quantile="0.5"|"0.99"}`` (capture
to result), ``edge_sdk_stream_last_result_age_seconds``,
``edge_sdk_inference_seconds`` (histogram of the model call; ``stream="http"`` for ``POST /v1/infer``) and
``edge_sdk_events_total{stream, event}`` (enter, leave, cross, and source events such as DISCONNECTED).
The per-stream numbers are read from the pipelines when scraped (a custom collector), so nothing is counted twice.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

#: inference time buckets (seconds): 1 ms .. 10 s
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StreamCollector:
    """Builds the per-stream families from ``status()`` (the list :meth:`Service.status` returns) at scrape time."""

    def __init__(self, status: Callable[[], list[dict[str, Any]]]) -> None:
        self._status = status

    def describe(self) -> Iterator[Any]:
        return iter(self._families([]))

    def collect(self) -> Iterator[Any]:
        return iter(self._families(self._status()))

    @staticmethod
    def _families(streams: list[dict[str, Any]]) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        up = GaugeMetricFamily("edge_sdk_stream_up", "1 when the stream gives results, else 0", labels=["stream"])
        fps = GaugeMetricFamily("edge_sdk_stream_fps", "results per second lately", labels=["stream"])
        frames = CounterMetricFamily("edge_sdk_stream_frames", "frames captured from the source", labels=["stream"])
        results = CounterMetricFamily("edge_sdk_stream_results", "frames run through the model", labels=["stream"])
        drops = CounterMetricFamily("edge_sdk_stream_dropped_frames", "frames dropped (latest frame wins)",
                                    labels=["stream"])  # fmt: skip
        age = GaugeMetricFamily("edge_sdk_stream_frame_age_seconds", "capture-to-result age of the frames, recent "
                                "window percentiles", labels=["stream", "quantile"])  # fmt: skip
        last = GaugeMetricFamily("edge_sdk_stream_last_result_age_seconds", "seconds since the stream's last result",
                                 labels=["stream"])  # fmt: skip
        for s in streams:
            name = [s["name"]]
            up.add_metric(name, 1.0 if s["up"] else 0.0)
            fps.add_metric(name, float(s["fps"] or 0.0))
            frames.add_metric(name, float(s["frames"]))
            results.add_metric(name, float(s["results"]))
            drops.add_metric(name, float(s["dropped"]))
            for q, key in (("0.5", "p50"), ("0.99", "p99")):
                v = (s.get("frame_age_ms") or {}).get(key)
                if v is not None:
                    age.add_metric([s["name"], q], v / 1000.0)
            if s["last_frame_age_s"] is not None:
                last.add_metric(name, float(s["last_frame_age_s"]))
        return [up, fps, frames, results, drops, age, last]


class ServeMetrics:
    """The service's own :class:`prometheus_client.CollectorRegistry` (never the global one) and its metrics."""

    def __init__(self, status: Callable[[], list[dict[str, Any]]]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.inference = Histogram("edge_sdk_inference_seconds", "time of one model call",
                                   ["stream"], buckets=BUCKETS, registry=self.registry)  # fmt: skip
        self.events = Counter("edge_sdk_events", "events (zones, lines, source)", ["stream", "event"],
                              registry=self.registry)  # fmt: skip
        self.requests = Counter("edge_sdk_http_requests", "HTTP requests answered", ["path", "code"],
                                registry=self.registry)  # fmt: skip
        self.registry.register(_StreamCollector(status))

    def observe_inference(self, stream: str, seconds: float) -> None:
        self.inference.labels(stream).observe(seconds)

    def count_event(self, stream: str, event: dict[str, Any]) -> None:
        self.events.labels(stream, str(event.get("event") or event.get("type") or "?")).inc()

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """(body, content type) for a scrape (OpenMetrics when the scraper asks for it)."""
        from prometheus_client.exposition import choose_encoder

        encoder, ctype = choose_encoder(accept or "")
        return encoder(self.registry), ctype
