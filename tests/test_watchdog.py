"""The inference watchdog of a shared model: a hanging call is abandoned, its callers get InferenceStalledError (a
Pipeline drops that frame), the backend is reloaded (or falls back to the CPU), an event is published, the other
streams keep producing results and no backlog builds."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import builders
import numpy as np
import pytest
from test_multistream import COLOURS, SPEC, colour_onnx, solid_clip

import edge_sdk as es
from edge_sdk.errors import InferenceStalledError, ModelLoadError
from edge_sdk.multistream import BatchingModel, MultiStream, WatchdogOptions

FAST = {"floor_s": 2.0, "factor": 10.0, "min_samples": 3, "startup_s": 10.0}  # a tiny model runs in < 1 ms


class Hanging:
    """A real Model whose ``hang_on``-th call hangs (until ``release``, at most 60 s); the others run normally."""

    def __init__(self, model: Any, hang_on: int) -> None:
        self.m, self.hang_on, self.calls = model, hang_on, 0
        self.hung, self.release = threading.Event(), threading.Event()

    def run(self, feeds: Any, **kw: Any) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.calls == self.hang_on:
            self.hung.set()
            self.release.wait(60)
        return self.m.run(feeds, **kw)

    def __getattr__(self, name: str) -> Any:  # inputs, outputs, path, backend, metadata, dequantize...
        return getattr(self.m, name)


def hammer(bm: BatchingModel, streams: int, calls: int, x: np.ndarray) -> dict[str, dict[str, Any]]:
    """``streams`` threads, each ``calls`` runs of ``x``: per stream the outputs it got and the stalls it saw."""
    out: dict[str, dict[str, Any]] = {f"s{i}": {"outputs": [], "stalled": 0} for i in range(streams)}

    def loop(name: str) -> None:
        for _ in range(calls):
            try:
                out[name]["outputs"].append(bm.run([x], stream=name)["y"])
            except InferenceStalledError:
                out[name]["stalled"] += 1

    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a caller is still waiting"
    return out


@pytest.fixture
def mlp(tmp_path: Path) -> Path:
    return builders.onnx_mlp(tmp_path / "mlp.onnx", batch="batch")


def test_stalled_call_is_abandoned_and_the_backend_restarted(mlp):
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    events: list[dict[str, Any]] = []
    with es.load(mlp) as model:
        ref = model.run(x)["y"]
        hanging = Hanging(model, hang_on=10)
        bm = BatchingModel(hanging, watchdog=FAST, on_event=events.append)
        try:
            got = hammer(bm, streams=3, calls=40, x=x)
            stats = bm.stats()
            assert hanging.hung.is_set()
            assert [e["event"] for e in events] == ["watchdog"] and events[0]["action"] == "restarted"
            assert events[0]["type"] == "event" and events[0]["stalled_s"] >= 2.0 and events[0]["dropped"] >= 1
            assert bm.model is not hanging and isinstance(bm.model, es.Model)  # reloaded from the file
            assert stats["stalls"] == 1 and stats["restarts"] == 1
            assert stats["max_pending"] <= 3  # one request per caller at most: nothing queued behind the hang
            assert sum(g["stalled"] for g in got.values()) >= 1
            for name, g in got.items():  # every stream kept going, with right answers, after the restart
                assert len(g["outputs"]) + g["stalled"] == 40, name
                assert len(g["outputs"]) >= 30, name
                for y in g["outputs"]:
                    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
        finally:
            hanging.release.set()
            bm.close()
        assert not model._closed  # the caller's model is the caller's to close


def test_failed_restart_falls_back_to_the_cpu(mlp):
    x = np.ones((1, 16), np.float32)
    tried: list[str] = []

    def loader(mode: str) -> Any:
        tried.append(mode)
        if mode == "restart":
            raise ModelLoadError("the accelerator is gone")
        return es.load(mlp, device="cpu")

    events: list[dict[str, Any]] = []
    with es.load(mlp) as model:
        hanging = Hanging(model, hang_on=5)
        bm = BatchingModel(hanging, watchdog=WatchdogOptions(**FAST), on_event=events.append, loader=loader)
        try:
            got = hammer(bm, streams=2, calls=15, x=x)
        finally:
            hanging.release.set()
            bm.close()
    assert tried == ["restart", "cpu"]
    assert events[0]["action"] == "cpu_fallback" and "accelerator is gone" in events[0]["restart_error"]
    assert all(len(g["outputs"]) + g["stalled"] == 15 for g in got.values())


def test_multistream_survives_a_hanging_backend(tmp_path):
    frames = 60
    clips = {n: str(solid_clip(tmp_path / f"{n}.mp4", rgb, frames)) for n, rgb in COLOURS.items()}
    events: list[dict[str, Any]] = []
    results: dict[str, list[int]] = {n: [] for n in clips}

    def on_result(name: str, frame: Any, result: Any) -> None:
        assert int(result.class_id[0]) == list(COLOURS).index(name)
        results[name].append(frame.index)

    sink = tmp_path / "green.jsonl"
    with es.load(colour_onnx(tmp_path / "colour.onnx", "N")) as model:
        hanging = Hanging(model, hang_on=6)
        green = {"green": {"sinks": [str(sink)]}}
        ms = MultiStream(clips, hanging, task="classify", preprocess=SPEC, watchdog=FAST, on_event=events.append,
                         on_result=on_result, per_stream=green, metrics_every=0)  # fmt: skip
        try:
            final = ms.run()
        finally:
            hanging.release.set()
        counters = ms.model.stats()
    assert hanging.hung.is_set()
    assert [e["action"] for e in events] == ["restarted"]
    dropped = {n: m["frames"]["dropped_by"]["infer"] for n, m in final.items()}
    assert sum(dropped.values()) >= 1
    for name, m in final.items():  # each stream: every frame either a result or a frame the watchdog dropped
        assert m["results"] + dropped[name] == frames, name
        assert max(results[name]) == frames - 1 and len(results[name]) == m["results"], name
    assert counters["max_pending"] <= 3 and counters["restarts"] == 1
    lines = [json.loads(x) for x in sink.read_text().splitlines()]
    assert any(x["type"] == "event" and x.get("event") == "watchdog" for x in lines)  # the streams' sinks hear it


def test_a_stall_in_one_lane_replaces_every_lane(mlp):
    x = np.random.default_rng(1).standard_normal((1, 16)).astype(np.float32)
    made: list[Hanging] = []

    def loader(mode: str) -> Any:  # only the first lane's copy hangs (on its 8th call)
        h = Hanging(es.load(mlp, threads=1), hang_on=8 if not made else 0)
        made.append(h)
        return h

    events: list[dict[str, Any]] = []
    with es.load(mlp) as model:
        ref = model.run(x)["y"]
        bm = BatchingModel(model, lanes=2, loader=loader, watchdog=FAST, on_event=events.append)
        try:
            got = hammer(bm, streams=3, calls=40, x=x)
            deadline = time.monotonic() + 60  # the first new lane serves while the second copy still loads
            while bm.stats()["restarts"] < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = bm.stats()
        finally:
            made[0].release.set()
            bm.close()
    assert made[0].hung.is_set()
    assert [e["action"] for e in events] == ["restarted"] and events[0]["lanes"] == 2
    assert len(made) == 4  # two lanes, then a fresh copy for each
    assert stats["stalls"] == 1 and stats["restarts"] == 1 and stats["lanes"] == 2
    for name, g in got.items():  # every stream kept going, with right answers, on the new lanes
        assert len(g["outputs"]) + g["stalled"] == 40, name
        assert len(g["outputs"]) >= 30, name
        for y in g["outputs"]:
            np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
