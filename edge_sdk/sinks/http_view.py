"""HTTP live view for headless devices: a page with the annotated MJPEG stream and live metrics.

``http://:8080`` serves on this machine only (127.0.0.1); to let other machines watch, say so:
``http://0.0.0.0:8080`` (every interface) or the address of one interface. Port 0 picks a free one
(see ``.url``). Routes: ``/`` the page (model, source and task in its title; the picture scaled to the
window), ``/stream.mjpg`` the MJPEG stream, ``/frame.jpg`` the latest frame, ``/metrics`` (with
``view_fps``: results per second as this view received them, right below 1 fps too), ``/info`` and
``/events`` as JSON. JPEG encoding happens only while someone watches, at most once per new frame, in
the server's threads (never in the pipeline's).
"""

from __future__ import annotations

import collections
import html
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from edge_sdk.errors import SinkError
from edge_sdk.pipeline.metrics import rate
from edge_sdk.sinks.base import Sink

log = logging.getLogger("edge_sdk.sinks")

#: default bind address: this machine only, unless the spec names one (http://0.0.0.0:8080 for every interface)
DEFAULT_HOST = "127.0.0.1"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>edge-sdk: __TITLE__</title>
<style>body{font-family:sans-serif;background:#111;color:#eee;margin:1em}
#v{display:block;width:100%;height:calc(100vh - 9em);object-fit:contain;border:1px solid #444}
#m{font-family:monospace;white-space:pre;margin-top:.5em}</style>
</head><body><h3 id="t">__HEADING__</h3>
<img id="v" src="/stream.mjpg" alt="live stream">
<div id="s">stream: waiting for the first frame...</div>
<div id="m">waiting for metrics...</div>
<script>
async function tick(){
  const v = document.getElementById('v');
  if (v.naturalWidth > 0) document.getElementById('s').textContent = 'stream ' + v.naturalWidth + 'x' + v.naturalHeight;
  try{
    const m = await (await fetch('/metrics', {cache:'no-store'})).json();
    const l = m.latency_ms || {};
    const f = m.view_fps ?? m.fps_recent ?? m.fps ?? 0;
    const fps = f >= 1 || f == 0 ? f.toFixed(1) : f.toPrecision(2) + ' (one every ' + (1 / f).toFixed(1) + ' s)';
    document.getElementById('m').textContent =
      'fps ' + fps + '  latency p50 ' + l.p50 + ' ms  p99 ' + l.p99 + ' ms' +
      '  results ' + (m.results ?? 0) + '  dropped ' + ((m.frames||{}).dropped ?? 0) + '  updated ' +
      new Date().toISOString();
  }catch(e){ document.getElementById('m').textContent = 'metrics unavailable: ' + e; }
}
tick(); setInterval(tick, 1000);
</script></body></html>
"""


class HttpViewSink(Sink):
    kind = "http"
    needs_image = True

    def __init__(self, target: str = "http://:8080", *, quality: int = 80, max_fps: float = 15.0) -> None:
        u = urlsplit(target if "//" in target else f"http://{target}")
        self.host = u.hostname or DEFAULT_HOST
        try:
            self.port = 8080 if u.port is None else int(u.port)
        except ValueError:
            raise SinkError(f"http sink '{target}': the port is not a number; e.g. http://:8080") from None
        self.quality = int(quality)
        self.max_fps = float(max_fps)
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] = (-1, b"")
        self._metrics: dict[str, Any] = {}
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)
        self._server: ThreadingHTTPServer | None = None
        self._closed = threading.Event()
        self.clients = 0
        self.frames_sent = 0
        self._info: dict[str, Any] = {}
        self._result_ts: collections.deque[float] = collections.deque(maxlen=64)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/"

    # -- Sink --------------------------------------------------------------------------------
    def open(self, info: dict[str, Any]) -> None:
        from edge_sdk.sources._opencv import import_cv2

        self._cv2 = import_cv2()
        sink = self

        class Handler(_Handler):
            owner = sink

        try:
            self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as e:
            raise SinkError(
                f"http live view cannot listen on {self.host}:{self.port}: {e.strerror or e} "
                "(is the port in use? pick another, e.g. http://:8081, or :0 for any free port)"
            ) from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._info = info
        threading.Thread(target=self._server.serve_forever, name="http-view", daemon=True).start()
        shared = self.host in ("0.0.0.0", "::")
        hint = "every interface" if shared else f"this machine only; http://0.0.0.0:{self.port} shares it"
        log.warning("live view on %s (%s)", self.url, hint)

    def write(self, frame: Any, result: Any, event: dict[str, Any], image: np.ndarray | None) -> None:
        if image is None:
            return
        self._result_ts.append(time.monotonic())
        with self._cond:
            self._image = image
            self._seq += 1
            self._events.append(event)
            self._cond.notify_all()

    def write_event(self, event: dict[str, Any]) -> None:
        self._events.append(event)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        self._metrics = metrics

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __repr__(self) -> str:
        return f"<HttpViewSink {self.url}>"

    # -- serving helpers -----------------------------------------------------------------------
    def latest_jpeg(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The JPEG of the newest frame with sequence > ``after`` (encoded once), or None on timeout."""
        with self._cond:
            if self._seq <= after and not self._cond.wait_for(
                lambda: self._seq > after or self._closed.is_set(), timeout
            ):
                return None
            if self._closed.is_set() or self._image is None:
                return None
            seq, image = self._seq, self._image
            if self._jpeg[0] == seq:
                return self._jpeg
        cv2 = self._cv2
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        self._jpeg = (seq, buf.tobytes())
        return self._jpeg

    def live_metrics(self) -> dict[str, Any]:
        """The pipeline's last metrics, with ``view_fps``: the rate of results this view received lately."""
        return {**self._metrics, "view_fps": rate(list(self._result_ts), time.monotonic(), span=5.0)}

    def page(self) -> str:
        """The HTML page, titled with the model, source and task."""
        info = self._info
        model = str(info.get("model") or "?").replace("\\", "/").rsplit("/", 1)[-1]
        source, task = info.get("source") or "?", info.get("task") or "?"
        heading = html.escape(f"model {model}  |  source {source}  |  task {task}")
        return PAGE.replace("__TITLE__", html.escape(f"{task}, {model} on {source}")).replace("__HEADING__", heading)


class _Handler(BaseHTTPRequestHandler):
    owner: HttpViewSink
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet by default
        log.debug("http view: " + fmt, *args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path = self.path.split("?", 1)[0]
        o = self.owner
        if path in ("/", "/index.html"):
            self._send(200, o.page().encode(), "text/html; charset=utf-8")
        elif path == "/metrics":
            self._send(200, json.dumps(o.live_metrics(), default=str).encode(), "application/json")
        elif path == "/info":
            self._send(200, json.dumps(o._info, default=str).encode(), "application/json")
        elif path == "/events":
            self._send(200, json.dumps(list(o._events), default=str).encode(), "application/json")
        elif path == "/frame.jpg":
            got = o.latest_jpeg(-1, 5.0)
            if got is None:
                self._send(503, b"no frame yet", "text/plain")
            else:
                self._send(200, got[1], "image/jpeg")
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self._send(404, b"not found: try / or /stream.mjpg or /metrics or /info", "text/plain")

    def _stream(self) -> None:
        import time

        o = self.owner
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        o.clients += 1
        seq, min_gap, last = -1, 1.0 / max(o.max_fps, 0.1), 0.0
        try:
            while not o._closed.is_set():
                got = o.latest_jpeg(seq, 1.0)
                if got is None:
                    continue
                seq, jpg = got
                self.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                    + str(len(jpg)).encode()
                    + b"\r\n\r\n"
                    + jpg
                    + b"\r\n"
                )
                self.wfile.flush()
                o.frames_sent += 1
                wait = last + min_gap - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                last = time.monotonic()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            o.clients -= 1
            self.close_connection = True
