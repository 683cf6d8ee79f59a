"""The ``edge-sdk serve`` dashboard in headless Chromium: a real ONNX detector (it finds the bright square, see
test_analytics) on two looping H.264 cameras, one with a zone and a line; the page shows both streams (their
MJPEG frames decode in the browser, the stream areas of the screenshot are not blank) and the zone and line
events with their snapshots."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from realtime_helpers import have

pytest.importorskip("yaml")
pytest.importorskip("prometheus_client")
pytest.importorskip("onnx")
pytest.importorskip("supervision")
pytest.importorskip("trackers")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have("chromium"), reason="chromium not installed (make sysdeps)"),
    pytest.mark.skipif(not have("ffmpeg"), reason="ffmpeg not installed (make sysdeps)"),
]
from test_analytics import FRAMES, LINE, SIDE, ZONE, H, W, square_detector, square_x  # noqa: E402

WINDOW = (1000, 760)
#: the page's background (#111)
PAGE = 17


def gradient_clip(path: Path) -> Path:
    """The test_analytics square on a colour gradient (red stays below the detector's 0.5, so only the square is
    found): a stream area that shows it is plainly not blank."""
    xs = np.linspace(40, 255, W, dtype=np.float32)
    ys = np.linspace(255, 40, H, dtype=np.float32)
    frames = np.empty((FRAMES, H, W, 3), np.uint8)
    frames[..., 0] = 30
    frames[..., 1] = xs[None, None, :].astype(np.uint8)
    frames[..., 2] = ys[None, :, None].astype(np.uint8)
    for i in range(FRAMES):
        x = square_x(i)
        frames[i, 100 : 100 + SIDE, x : x + SIDE] = 255
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
         f"{W}x{H}", "-r", "30", "-i", "-", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-crf", "18", str(path)],
        input=frames.tobytes(), check=True, timeout=60,
    )  # fmt: skip
    return path


def points(shape: list[tuple[int, int]]) -> str:
    return json.dumps([list(p) for p in shape])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    from edge_sdk.serve.config import load_config
    from edge_sdk.serve.service import Service

    folder = tmp_path_factory.mktemp("dashboard")
    square_detector(folder / "square.onnx")
    gradient_clip(folder / "square.mp4")
    (folder / "clips").mkdir()
    zone, line = points(ZONE["mid"]), points(LINE["gate"])
    (folder / "dash.yaml").write_text(
        "model: square.onnx\ntask: detect\nhttp: 127.0.0.1:0\nloop: true\ncameras:\n"
        f"  door: {{source: square.mp4, zones: {{mid: {zone}}}, lines: {{gate: {line}}},\n"
        "         clips: {dir: clips, pre_s: 0.3, post_s: 0.3, events: [enter]}}\n"
        "  yard: {source: square.mp4}\n"
    )
    svc = Service(load_config(folder / "dash.yaml")).start()
    try:
        yield svc
    finally:
        svc.stop()


def wait_for_events(url: str, timeout: float = 90.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "events", timeout=30) as r:
            events = json.loads(r.read())["events"]
        kinds = {e.get("event") for e in events if e.get("snapshot")}
        if {"enter", "cross"} <= kinds:
            return events
        time.sleep(0.3)
    raise AssertionError(f"no enter and cross events with snapshots in {timeout} s")


def chromium(url: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=5000",
             *args, url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip


def test_events_have_snapshots(service):
    import cv2

    events = wait_for_events(service.url)
    enter = next(e for e in events if e.get("event") == "enter")
    assert enter["stream"] == "door" and enter["zone"] == "mid" and enter["snapshot"].startswith("/snapshots/door-")
    with urllib.request.urlopen(service.url + enter["snapshot"].lstrip("/"), timeout=30) as r:
        img = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (H, W, 3)
    with urllib.request.urlopen(service.url + "metrics", timeout=30) as r:
        text = r.read().decode()
    assert 'edge_sdk_events_total{event="enter",stream="door"}' in text


def test_clips_from_the_config(service):
    """``clips:`` of a camera: an mp4 and a JPEG around each enter event, in the config's folder."""
    folder = service.config.cameras["door"].clips.dir
    deadline = time.monotonic() + 90
    done: list[Path] = []
    while time.monotonic() < deadline and not done:
        done = [p for p in folder.glob("clip-*-enter-mid-*.jpg") if p.with_suffix(".mp4").is_file()]
        time.sleep(0.3)
    assert done, sorted(p.name for p in folder.iterdir())
    assert done[0].with_suffix(".mp4").stat().st_size > 1000


def test_dashboard_dom_shows_the_streams_and_the_events(service):
    wait_for_events(service.url)
    r = chromium(service.url, "--dump-dom")
    dom = r.stdout
    assert r.returncode == 0 and "<title>edge-sdk serve</title>" in dom, r.stderr[-2000:]
    for name in ("door", "yard"):
        box = dom[dom.index(f'id="cam-{name}"') :].split("</div></div>")[0]
        assert f'src="/streams/{name}.mjpg"' in box and 'data-size="320x240"' in box, box  # frames decoded
        assert ">running " in box or ">starting" in box, box  # numbers from /healthz
    assert "door: enter zone mid" in dom and "door: cross line gate" in dom
    assert 'src="/snapshots/door-' in dom and "no events yet" not in dom
    assert "zoo:" not in dom and "square.onnx" in dom  # the model, from /healthz


def test_dashboard_takes_the_token_once_and_keeps_it(service, monkeypatch):
    wait_for_events(service.url)
    monkeypatch.setattr(service.config, "token", "t0ken-for-the-page")
    dom = chromium(service.url, "--dump-dom").stdout
    assert "edge-sdk serve</title>" not in dom and "this server needs a token" in dom  # 401 for the page itself
    dom = chromium(service.url + "?token=t0ken-for-the-page", "--dump-dom").stdout
    for name in ("door", "yard"):  # the <img> tags carry the token the page kept, the fetches send it as a header
        box = dom[dom.index(f'id="cam-{name}"') :].split("</div></div>")[0]
        assert 'data-size="320x240"' in box and "token=t0ken-for-the-page" in box, box
    assert "door: enter zone mid" in dom and '<div id="err"></div>' in dom


def test_dashboard_screenshot_has_the_streams_in_it(service, tmp_path):
    import cv2

    wait_for_events(service.url)
    shot = tmp_path / "dashboard.png"
    r = chromium(service.url, f"--screenshot={shot}")
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (WINDOW[1], WINDOW[0])
    # the two stream tiles: the left and right halves of the first row (12 px margins, 10 px gap, 4:3 pictures)
    for x0, x1 in ((40, 460), (540, 960)):
        area = img[80:330, x0:x1].astype(np.int16)
        assert area.std() > 20, (x0, area.std())  # a picture, not a flat box
        assert (np.abs(area - PAGE).max(axis=2) > 25).mean() > 0.8  # and not the page's background
        assert len(np.unique(area.reshape(-1, 3) // 16, axis=0)) > 20  # the gradient's many colours


def test_a_looping_files_position_keeps_growing_for_clips():
    from edge_sdk.serve.streams import LoopTime
    from edge_sdk.sinks.base import Sink
    from edge_sdk.sources.base import Frame

    class Positions(Sink):
        def __init__(self) -> None:
            self.seen: list[float] = []

        def write(self, frame, result, event, image):
            self.seen.append(frame.meta["pos_ms"])

    inner = Positions()
    sink = LoopTime(inner)
    frames = [Frame(np.zeros((1, 1, 3), np.uint8), 0.0, i, {"pos_ms": p}) for i, p in enumerate([0, 500, 1000, 0, 500])]
    for f in frames:
        sink.write(f, None, {"type": "result"}, None)
    assert inner.seen == [0, 500, 1000, 1001, 1501]
    assert [f.meta["pos_ms"] for f in frames] == [0, 500, 1000, 0, 500]  # the pipeline's frames are not changed
