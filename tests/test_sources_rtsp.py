"""A real RTSP server (GStreamer's rtsp-server on 127.0.0.1) read, killed mid-run, hung, and restarted.

The server runs as a child process under the system Python (``tests/rtsp_server.py``); the client is the
SDK's stream source (OpenCV's FFmpeg backend, RTSP over TCP). Waits are generous and nothing asserts a
measured duration: the tests run on loaded 2-core machines.
"""

from __future__ import annotations

import queue
import re
import time

import pytest
from rtsp_server import RtspServer, unavailable

from edge_sdk.errors import SourceError
from edge_sdk.sources import SourceEvent, open_source

_why = unavailable()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

READ_TIMEOUT = 3.0  # the source's read timeout: a server silent this long counts as disconnected
OPEN_TIMEOUT = 30.0  # generous: the first open on a loaded machine
EVENT_WAIT = 25.0  # below FFmpeg's own 30 s default, so an event in time is the SDK's timeout / the TCP close
RECONNECT_WAIT = 90.0


@pytest.fixture
def server():
    srv = RtspServer().start()
    yield srv
    srv.close()


def _open(url: str):
    return open_source(url, read_timeout=READ_TIMEOUT, open_timeout=OPEN_TIMEOUT, backoff=(0.2, 1.0)).start()


def _frames(src, n: int) -> int:
    return sum(src.read(timeout=READ_TIMEOUT) is not None for _ in range(n))


def _drain(src) -> list:
    out = []
    while True:
        try:
            out.append(src.events.get_nowait())
        except queue.Empty:
            return out


def _wait_event(src, timeout: float):
    """The next event, reading meanwhile (the reader drives the read-timeout watchdog); None if none came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        src.read(timeout=0.1)
        if not src.events.empty():
            return src.events.get_nowait()
    return None


def test_reads_a_live_rtsp_stream(server):
    src = _open(server.url)
    try:
        first = src.read(timeout=OPEN_TIMEOUT)
        assert first is not None
        assert first.data.shape == (240, 320, 3)
        assert _frames(src, 15) >= 10
        assert src.produced >= 11
        assert _drain(src) == []  # no DISCONNECTED while the server serves
    finally:
        src.stop()


@pytest.mark.slow
def test_rtsp_server_killed_then_back(server):
    src = _open(server.url)
    try:
        assert src.read(timeout=OPEN_TIMEOUT) is not None
        assert _frames(src, 15) >= 10
        _drain(src)

        server.kill()  # SIGKILL: the kernel closes the TCP connection
        ev = _wait_event(src, EVENT_WAIT)
        assert ev is not None and ev.kind is SourceEvent.DISCONNECTED, ev

        time.sleep(1.0)  # the server stays away for a while: reconnect attempts back off (connection refused)
        server.start()  # same port, same URL
        ev = _wait_event(src, RECONNECT_WAIT)
        assert ev is not None and ev.kind is SourceEvent.RECONNECTED, ev
        assert src.reconnects >= 1
        assert _frames(src, 10) >= 5  # frames flow again
    finally:
        src.stop()


@pytest.mark.slow
def test_rtsp_server_that_hangs_is_caught_by_the_read_timeout(server):
    """SIGSTOP: the connection stays open but nothing comes; only the read timeout can tell."""
    src = _open(server.url)
    try:
        assert src.read(timeout=OPEN_TIMEOUT) is not None
        assert _frames(src, 10) >= 5
        _drain(src)

        server.pause()
        ev = _wait_event(src, EVENT_WAIT)
        assert ev is not None and ev.kind is SourceEvent.DISCONNECTED, ev

        server.resume()  # frames come again: on the old connection or on a reconnect attempt, whichever races first
        ev = _wait_event(src, RECONNECT_WAIT)
        assert ev is not None and ev.kind is SourceEvent.RECONNECTED, ev
        assert _frames(src, 10) >= 5
    finally:
        src.stop()


@pytest.mark.parametrize("creds", ["", "user:secret@"])
def test_path_the_server_does_not_serve_is_a_named_error(server, creds):
    url = f"rtsp://{creds}127.0.0.1:{server.port}/nothing"
    shown = url.replace("secret", "***")
    with pytest.raises(SourceError, match="cannot open stream " + re.escape(shown)) as e:
        open_source(url, open_timeout=OPEN_TIMEOUT).start()
    assert "secret" not in str(e.value)


def test_a_camera_offline_when_the_service_starts_is_retried_until_it_comes_up(tmp_path):
    """A service that boots before its camera (or while it reboots): the camera was 'failed' for good after its
    first open; now it is 'reconnecting' (no error), and it runs once the server answers."""
    pytest.importorskip("yaml")
    from realtime_helpers import free_port, make_clip

    from edge_sdk.serve.config import load_config
    from edge_sdk.serve.service import Service

    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    with pytest.raises(SourceError, match="cannot open stream"):  # without retry_open: an error at once
        open_source(url, open_timeout=OPEN_TIMEOUT).start()
    make_clip(tmp_path / "door.mp4", seconds=2.0, size="160x120", rate=10)
    cfg = tmp_path / "boot.yaml"
    cfg.write_text(f"model: zoo:centerface\nhttp: 127.0.0.1:0\nloop: true\n"
                   f"cameras: {{door: door.mp4, gate: '{url}'}}\n")  # fmt: skip
    svc = Service(load_config(cfg)).start()
    srv = None
    try:
        states = _wait_state(svc, "gate", {"reconnecting"}, EVENT_WAIT)
        assert states["gate"]["error"] is None and states["door"]["state"] in ("starting", "running")
        srv = RtspServer(port=port).start()
        gate = _wait_state(svc, "gate", {"running"}, RECONNECT_WAIT)["gate"]
        assert gate["up"] is True and gate["results"] >= 1
    finally:
        svc.stop()
        if srv is not None:
            srv.close()


def _wait_state(svc, name: str, want: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        states = {s["name"]: s for s in svc.status()}
        if states[name]["state"] in want or time.monotonic() > deadline:
            assert states[name]["state"] in want, states
            return states
        time.sleep(0.2)
