"""Sinks: spec resolution, JSON lines, video file, the HTTP live view (in headless Chromium), MQTT (mosquitto)."""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
import urllib.request

import numpy as np
import pytest
from realtime_helpers import free_port, have, onnx_colour_classifier, wait_port

import edge_sdk as es
from edge_sdk.errors import SinkError
from edge_sdk.pipeline import Pipeline
from edge_sdk.preprocess import PreprocessSpec
from edge_sdk.sinks import open_sink, resolve_sink

SPEC = PreprocessSpec(size=(32, 32), mean=0.0, std=255.0)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    with es.load(onnx_colour_classifier(tmp_path_factory.mktemp("sinks") / "colour.onnx")) as m:
        yield m


@pytest.mark.parametrize(
    "spec, kind, target",
    [
        ("window", "window", ""),
        ("http://:8080", "http", "http://:8080"),
        ("out/annotated.mp4", "video", "out/annotated.mp4"),
        ("video:clip.avi", "video", "clip.avi"),
        ("events.jsonl", "jsonl", "events.jsonl"),
        ("-", "jsonl", "-"),
        ("mqtt://127.0.0.1:1883/cams/1", "mqtt", "mqtt://127.0.0.1:1883/cams/1"),
    ],
)
def test_resolve_sink(spec, kind, target):
    assert resolve_sink(spec) == (kind, target)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("results.csv", "sink 'results.csv' is not one of"),
        ("mqtt:///topic", "name the broker"),
        ("http://:notaport", "the port is not a number"),
    ],
)
def test_bad_sinks_say_what_is_accepted(spec, message):
    with pytest.raises(SinkError, match=message):
        open_sink(spec)


def test_window_without_a_display_points_to_the_live_view(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match="no display here.*http://:8080"):
        open_sink("window").open({})


def test_unreachable_mqtt_broker_is_a_clear_error():
    with pytest.raises(SinkError, match=r"cannot reach the MQTT broker at 127\.0\.0\.1:9"):
        open_sink("mqtt://127.0.0.1:9/x").open({})


def test_video_and_jsonl_sinks(model, tmp_path):
    import cv2

    video, events = tmp_path / "out" / "annotated.mp4", tmp_path / "events.jsonl"
    video.parent.mkdir()  # sinks create no folders
    p = Pipeline("synthetic:?fps=0&frames=20&size=160x120", model, preprocess=SPEC, sinks=[video, events])
    p.run()
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 20 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 160
    cap.release()
    assert not list(video.parent.glob(".*partial*"))  # written to a temp name, then renamed
    kinds = [json.loads(x)["type"] for x in events.read_text().splitlines()]
    assert kinds.count("result") == 20 and kinds[-1] == "metrics"


def _start_live(model, port: int) -> tuple[Pipeline, threading.Thread]:
    p = Pipeline("synthetic:?fps=15&size=320x240", model, preprocess=SPEC, sinks=[f"http://127.0.0.1:{port}"],
                 metrics_every=0.5)  # fmt: skip
    t = threading.Thread(target=p.run, kwargs={"duration": 60}, daemon=True)
    t.start()
    assert wait_port(port)
    return p, t


def test_http_live_view_serves_mjpeg_and_metrics(model):
    port = free_port()
    p, t = _start_live(model, port)
    try:
        time.sleep(1.0)
        base = f"http://127.0.0.1:{port}"
        page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert 'src="/stream.mjpg"' in page
        m = json.loads(urllib.request.urlopen(base + "/metrics", timeout=5).read())
        assert m["results"] > 0 and "latency_ms" in m
        with urllib.request.urlopen(base + "/stream.mjpg", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            data = b""
            while data.count(b"\xff\xd9") < 2:  # two complete JPEGs
                data += r.read1(65536)
        start = data.index(b"\xff\xd8")
        import cv2

        img = cv2.imdecode(np.frombuffer(data[start : data.index(b"\xff\xd9") + 2], np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (240, 320, 3)
    finally:
        p.stop()
        t.join(10)


@pytest.mark.slow
@pytest.mark.skipif(not have("chromium"), reason="chromium not installed (make sysdeps)")
def test_live_view_in_headless_chromium(model):
    port = free_port()
    p, t = _start_live(model, port)
    try:
        time.sleep(1.0)
        with tempfile.TemporaryDirectory() as profile:
            r = subprocess.run(
                ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--virtual-time-budget=4000", "--dump-dom",
                 f"http://127.0.0.1:{port}/"],
                capture_output=True, text=True, timeout=90,
            )  # fmt: skip
        dom = r.stdout
        assert '<div id="s">stream 320x240</div>' in dom, dom[-600:]  # an image frame arrived and decoded
        metrics = dom[dom.index('<div id="m">') :].split("</div>")[0]
        assert "waiting for metrics" not in metrics and "latency p50" in metrics  # the script updated it
        assert int(metrics.split("results ")[1].split()[0]) > 0
        assert p.sinks[0].frames_sent >= 1
    finally:
        p.stop()
        t.join(10)


@pytest.mark.slow
@pytest.mark.skipif(not have("mosquitto"), reason="mosquitto not installed (make sysdeps)")
def test_mqtt_events_reach_a_real_broker(model, tmp_path):
    import paho.mqtt.client as mqtt

    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    received: list[tuple[str, dict]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    try:
        assert wait_port(port)
        sub.on_message = lambda c, u, msg: received.append((msg.topic, json.loads(msg.payload)))
        sub.connect("127.0.0.1", port)
        sub.subscribe("cams/#")
        sub.loop_start()
        time.sleep(0.3)
        p = Pipeline("synthetic:?fps=0&frames=25&size=64x64", model, preprocess=SPEC,
                     sinks=[f"mqtt://127.0.0.1:{port}/cams/test"])  # fmt: skip
        p.run()
        zone_sink = open_sink(f"mqtt://127.0.0.1:{port}/cams/zone")  # what the analytics write through a sink
        zone_sink.open({})
        zone_sink.write_event({"type": "event", "event": "enter", "zone": "door", "track_id": 3, "label": "person"})
        zone_sink.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (sum(t == "cams/test" for t, _ in received) < 25
                                               or not any(t == "cams/zone/events" for t, _ in received)):  # fmt: skip
            time.sleep(0.05)
    finally:
        sub.loop_stop()
        broker.terminate()
        broker.wait(5)
    results = [d for t, d in received if t == "cams/test"]
    assert len(results) == 25 and results[0]["type"] == "result" and "top" in results[0]
    assert any(t == "cams/test/metrics" for t, _ in received)
    assert any(t == "cams/test/status" and d.get("event") == "EOS" for t, d in received)
    # zone / line events have a topic of their own: the status topic is liveness and source events
    assert [d["zone"] for t, d in received if t == "cams/zone/events"] == ["door"]
    assert not any(t == "cams/zone/status" and d.get("event") == "enter" for t, d in received)
