"""Pipeline: every frame of a file, freshness with a live source and a slow model, metrics, errors."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from realtime_helpers import SlowModel, have, make_clip, onnx_colour_classifier

import edge_sdk as es
from edge_sdk.errors import OutputMismatchError, TaskError
from edge_sdk.pipeline import Pipeline
from edge_sdk.preprocess import PreprocessSpec

SPEC = PreprocessSpec(size=(32, 32), mean=0.0, std=255.0)


@pytest.fixture(scope="module")
def colour_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_colour_classifier(tmp_path_factory.mktemp("rt") / "colour.onnx")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not have("ffmpeg"):
        pytest.skip("ffmpeg not installed (make sysdeps)")
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=2.0)


def test_file_source_processes_every_frame(colour_onnx, clip, tmp_path):
    events = tmp_path / "events.jsonl"
    with es.load(colour_onnx) as model:
        p = Pipeline(clip, model, task="classify", sinks=[events], preprocess=SPEC, top_k=2)
        m = p.run()
    assert m["results"] == 60 and m["frames"]["dropped"] == 0
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    results = [x for x in lines if x["type"] == "result"]
    assert [r["frame"] for r in results] == list(range(60))
    assert len(results[0]["top"]) == 2 and {"label", "score", "class"} <= set(results[0]["top"][0])
    assert any(x["type"] == "source" and x["event"] == "EOS" for x in lines)
    assert lines[-1]["type"] == "metrics" and lines[-1]["final"] is True


def test_model_path_is_loaded_and_closed_by_the_pipeline(colour_onnx):
    p = Pipeline("synthetic:?fps=0&frames=5&size=64x64", str(colour_onnx), task="classify", preprocess=SPEC)
    assert p.run()["results"] == 5
    with pytest.raises(es.errors.ModelClosedError):
        p.model.run(np.zeros((1, 3, 32, 32), np.float32))


def test_colour_reaches_the_right_class(colour_onnx, tmp_path):
    import cv2

    for i, rgb in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 40, 3), rgb[::-1], np.uint8))
    got: list[int] = []
    with es.load(colour_onnx) as model:
        Pipeline(tmp_path, model, preprocess=SPEC, on_result=lambda e: got.append(e["top"][0]["class"])).run()
    assert got == [0, 1, 2]


@pytest.mark.slow
def test_live_source_slow_model_stays_fresh_and_drops(colour_onnx):
    """30 fps live source, a 50 ms model: frame age <= one period + inference, not growing; drops counted."""
    ages: list[float] = []
    with es.load(colour_onnx) as real:
        model = SlowModel(real, 0.05)
        p = Pipeline("synthetic:?fps=30&size=320x240", model, preprocess=SPEC, metrics_every=0,
                     on_result=lambda e: ages.append(e["latency_ms"]))  # fmt: skip
        m = p.run(duration=6.0)
    infer_p50 = m["stages"]["infer"]["p50_ms"]
    budget = 1000 / 30 + infer_p50
    assert m["latency_ms"]["p50"] <= budget, m
    # a backlog would age frames by seconds over 6 s (180 frames in, ~110 out); the margins are scheduling jitter
    # on a busy 2-core machine (pytest-xdist runs another worker beside this one): p99 101 ms against 84 was seen
    assert m["latency_ms"]["p99"] <= 2 * budget, m
    third = len(ages) // 3
    assert np.median(ages[-third:]) <= np.median(ages[:third]) + budget / 2  # does not grow
    assert m["frames"]["dropped"] > 0.25 * m["frames"]["captured"]
    assert m["results"] + m["frames"]["dropped"] >= m["frames"]["captured"] - 3


def test_metrics_lines_are_periodic(colour_onnx, tmp_path):
    out = tmp_path / "metrics.jsonl"
    with es.load(colour_onnx) as model:
        p = Pipeline("synthetic:?fps=60&size=64x64", model, preprocess=SPEC, metrics_every=0.4, metrics_file=out)
        p.run(duration=2.0)
        live = p.metrics()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) >= 4 and lines[-1]["final"]
    for key in ("fps", "latency_ms", "stages", "frames"):
        assert key in live
    assert set(live["stages"]) == {"pre", "infer", "post"}
    assert live["fps"] > 20


def test_unknown_task_lists_the_tasks(colour_onnx):
    with es.load(colour_onnx) as model, pytest.raises(TaskError, match="unknown task 'segment'; known tasks: classify"):
        Pipeline("synthetic:", model, task="segment", preprocess=SPEC)


def test_detect_on_a_classifier_says_which_output_and_why(colour_onnx):
    with es.load(colour_onnx) as model, pytest.raises(OutputMismatchError, match=r"output 'logits' has shape \[1,10\]"):
        Pipeline("synthetic:", model, task="detect", preprocess=SPEC)


def test_classify_on_a_multi_output_model_names_the_outputs(two_io_onnx):
    with es.load(two_io_onnx) as model, pytest.raises(OutputMismatchError, match="'sum'.*'prod'.*output=NAME"):
        Pipeline("synthetic:", model, task="classify", preprocess=SPEC)


def test_a_failing_stage_stops_the_pipeline_and_raises(colour_onnx):
    from edge_sdk.postprocess.registry import POSTPROCESSORS, register_postprocessor

    class Boom:
        def __init__(self, model, **_):
            pass

        def __call__(self, outputs, frame):
            raise RuntimeError("post-processor bug")

    register_postprocessor("boom", Boom)
    try:
        with es.load(colour_onnx) as model:
            p = Pipeline("synthetic:?fps=30&size=64x64", model, task="boom", preprocess=SPEC)
            with pytest.raises(RuntimeError, match="post-processor bug"):
                p.run(duration=5)
        assert not [t for t in threading.enumerate() if t.name.startswith(("pipeline-", "capture-"))]
    finally:
        POSTPROCESSORS.pop("boom", None)


def test_truncated_file_ends_the_pipeline_cleanly(colour_onnx, clip, tmp_path):
    import subprocess

    ts = tmp_path / "clip.ts"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip), "-c", "copy", str(ts)], check=True)
    raw = ts.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    with es.load(colour_onnx) as model:
        m = Pipeline(cut, model, preprocess=SPEC).run(duration=20)
    assert 10 < m["results"] < 60
    assert m["events"][-1]["event"] == "EOS"


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.slow
def test_memory_stays_flat(colour_onnx, tmp_path):
    """A short version of benchmarks/pipeline_memory.py: RSS after warm-up stays within 10%."""
    samples: list[float] = []
    with es.load(colour_onnx) as model:
        p = Pipeline("synthetic:?fps=200&size=640x480", model, preprocess=SPEC, metrics_every=0.5,
                     sinks=[tmp_path / "e.jsonl"])  # fmt: skip
        p.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 14:
            time.sleep(1.0)
            samples.append(_rss_mib())
        p.stop()
    warm = samples[3]
    assert max(samples[3:]) <= warm * 1.10, samples
    assert p.metrics()["results"] > 500


class Jittery:
    """A real model whose calls take 0-8 ms at random (so that concurrent calls finish out of order); its
    ``drop_on``-th call is abandoned the way a shared model's watchdog abandons one."""

    def __init__(self, model: es.Model, drop_on: int = 0) -> None:
        self.m, self.drop_on, self.calls, self.lock = model, drop_on, 0, threading.Lock()
        self.model_lock = threading.Lock()  # a Model runs one call at a time; the pauses overlap
        self.rng = np.random.default_rng(0)
        self.active = self.max_active = 0

    def run(self, feeds, **kw):
        from edge_sdk.errors import InferenceStalledError

        with self.lock:
            self.calls += 1
            call, pause = self.calls, float(self.rng.uniform(0, 0.008))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(pause)
            if call == self.drop_on:
                raise InferenceStalledError("frame dropped: test")
            with self.model_lock:
                return self.m.run(feeds, **kw)
        finally:
            with self.lock:
                self.active -= 1

    def __getattr__(self, name):
        return getattr(self.m, name)


def test_inflight_calls_finish_out_of_order_but_results_come_in_frame_order(colour_onnx):
    with es.load(colour_onnx) as model:
        jittery = Jittery(model, drop_on=7)
        got: list[int] = []
        p = Pipeline("synthetic:?fps=0&frames=60&size=64x48", jittery, task="classify", preprocess=SPEC,
                     inflight=3, metrics_every=0, on_result=lambda e: got.append(e["frame"]))  # fmt: skip
        m = p.run()
    assert jittery.max_active >= 2  # calls did overlap
    assert len(got) == 59 and got == sorted(got) and len(set(got)) == 59  # one dropped, the rest in order
    assert m["frames"]["dropped_by"]["infer"] == 1 and m["results"] == 59


def test_inflight_on_a_plain_model_says_what_to_use(colour_onnx):
    with es.load(colour_onnx) as model, pytest.raises(es.EdgeSDKError) as e:
        Pipeline("synthetic:?fps=0&frames=2", model, task="classify", preprocess=SPEC, inflight=2)
    assert "inflight=2 runs 2 calls at once" in str(e.value) and "BatchingModel(model, lanes=2)" in str(e.value)
    with pytest.raises(es.EdgeSDKError, match="inflight=3 runs 3 calls at once"):  # a path is loaded as a Model
        Pipeline("synthetic:?fps=0&frames=2", str(colour_onnx), task="classify", preprocess=SPEC, inflight=3)
    for bad in (0, 1.5, "2"):
        with pytest.raises(es.EdgeSDKError, match=r"inflight must be a whole number >= 1 .* got"):
            Pipeline("synthetic:?fps=0&frames=2", model, task="classify", preprocess=SPEC, inflight=bad)
