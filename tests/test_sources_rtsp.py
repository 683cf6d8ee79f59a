"""A real RTSP stream (ffmpeg publishing through a relay on 127.0.0.1) killed mid-run and restarted."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from realtime_helpers import have, make_clip
from rtsp_relay import Relay

from edge_sdk.sources import SourceEvent, open_source

pytestmark = pytest.mark.skipif(not have("ffmpeg"), reason="ffmpeg not installed (make sysdeps)")
READ_TIMEOUT = 2.0


def _publish(clip: Path, url: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", url],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_event(src, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        src.read(timeout=0.1)
        if not src.events.empty():
            return src.events.get_nowait(), time.monotonic()
    return None, time.monotonic()


@pytest.mark.slow
def test_rtsp_server_killed_then_back(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", seconds=2.0)
    relay = Relay(0).start()
    url = f"rtsp://127.0.0.1:{relay.port}/live"
    ffmpeg = _publish(clip, url)
    src = None
    try:
        time.sleep(1.0)
        src = open_source(url, read_timeout=READ_TIMEOUT, backoff=(0.2, 1.0)).start()
        assert src.read(timeout=5) is not None
        frames = sum(src.read(timeout=1) is not None for _ in range(15))
        assert frames >= 10

        ffmpeg.kill()
        ffmpeg.wait()
        killed = time.monotonic()
        ev, t = _wait_event(src, READ_TIMEOUT + 1.0)
        assert ev is not None and ev.kind is SourceEvent.DISCONNECTED, ev
        assert t - killed <= READ_TIMEOUT + 0.5

        time.sleep(1.0)  # the server stays away for a while: reconnect attempts back off
        ffmpeg = _publish(clip, url)
        ev, _ = _wait_event(src, 15)
        assert ev is not None and ev.kind is SourceEvent.RECONNECTED, ev
        assert src.reconnects >= 1
        assert sum(src.read(timeout=1) is not None for _ in range(10)) >= 5  # frames flow again
    finally:
        if src is not None:
            src.stop()
        ffmpeg.kill()
        relay.close()
