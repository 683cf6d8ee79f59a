"""The HTTP API of ``edge-sdk serve`` (standard library ``ThreadingHTTPServer``).

=============================  ===================================================================================
``GET /healthz``               per stream: up, state, fps, last frame age; 200 when every stream is up, else 503
                               (never needs the token: for probes and load balancers; it names no secret)
``GET /metrics``               Prometheus exposition (prometheus-client, the service's own registry)
``POST /v1/infer``             body: a JPEG or PNG image -> the typed result (``Model.predict``) as JSON;
                               400 for a body that is not an image, 413 past ``max_upload_mb``
``GET /streams/<name>.mjpg``   multipart MJPEG of the stream's annotated frames (``.jpg``: the latest one)
``GET /events``                recent events, oldest first (``?since=<id>``: only newer ones; ``&limit=N``)
``GET /snapshots/<file>``      the JPEG of an event (``snapshot`` in its JSON)
``GET /``                      the dashboard (static page polling the endpoints above)
=============================  ===================================================================================

With a token every endpoint but ``/healthz`` needs ``Authorization: Bearer <token>`` (401 otherwise); a GET may
carry it as ``?token=`` instead, because an ``<img>`` tag cannot send headers (the dashboard does that).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge_sdk.errors import EdgeSDKError, SinkError

log = logging.getLogger("edge_sdk.serve")
#: most MJPEG frames per second sent to one client
MJPEG_MAX_FPS = 15.0
STREAM_PATH = re.compile(r"^/streams/([^/]+)\.(mjpg|jpg)$")
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


class ServeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    service: Any
    closing: threading.Event

    def shutdown_streams(self) -> None:
        """End every MJPEG response (before ``shutdown``, which waits for nothing else)."""
        self.closing.set()


def make_server(service: Any, host: str, port: int) -> ServeHTTPServer:
    """A bound (not yet serving) server for ``service``; a SinkError naming the address when it cannot bind."""

    class Handler(_Handler):
        pass

    cls = ServeHTTPServer
    if ":" in host:  # an IPv6 address (::, ::1, fe80::...)
        cls = type("ServeHTTPServer6", (ServeHTTPServer,), {"address_family": socket.AF_INET6})
    try:
        server = cls((host, port), Handler)
    except OSError as e:
        raise SinkError(f"edge-sdk serve cannot listen on {host}:{port}: {e.strerror or e} (is the port in use? "
                        "change http: in the config, e.g. 127.0.0.1:8091)") from None  # fmt: skip
    server.service = service
    server.closing = threading.Event()
    return server


def dashboard_html() -> bytes:
    return resources.files("edge_sdk.serve").joinpath("dashboard.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: ServeHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet by default
        log.debug("http: " + fmt, *args)

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _send(self, code: int, body: bytes, ctype: str, route: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server.service.metrics.requests.labels(route, str(code)).inc()

    def _json(self, code: int, data: Any, route: str, headers: dict[str, str] | None = None) -> None:
        from edge_sdk.cli.base import finite_json

        body = json.dumps(finite_json(data), default=str, allow_nan=False).encode()
        self._send(code, body, "application/json", route, headers)

    def _error(self, code: int, message: str, route: str, headers: dict[str, str] | None = None) -> None:
        self._json(code, {"error": message}, route, headers)

    def _authorised(self, query: dict[str, list[str]], route: str) -> bool:
        token = self.server.service.config.token
        if not token:
            return True
        given = ""
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif self.command == "GET" and query.get("token"):
            given = query["token"][0]
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True
        why = "wrong token" if given else "this server needs a token"
        self._error(401, f"{why}: send 'Authorization: Bearer <token>' (or ?token= on a GET)", route,
                    {"WWW-Authenticate": 'Bearer realm="edge-sdk"'})  # fmt: skip
        return False

    # -- routes -----------------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's name
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        svc = self.server.service
        if path == "/healthz":
            return self._healthz()
        route = _route(path)
        if not self._authorised(query, route):
            return None
        if path in ("/", "/index.html"):
            return self._send(200, dashboard_html(), "text/html; charset=utf-8", "/")
        if path == "/metrics":
            body, ctype = svc.metrics.exposition(self.headers.get("Accept"))
            return self._send(200, body, ctype, route)
        if path == "/events":
            return self._events(query)
        m = STREAM_PATH.match(path)
        if m:
            return self._stream(m.group(1), m.group(2))
        if path.startswith("/snapshots/"):
            name = path[len("/snapshots/") :]
            jpg = svc.events.snapshot(name)
            if jpg is None:
                return self._error(404, f"no snapshot '{name}' (the newest {len(svc.events.since())} events keep "
                                   "theirs; see /events)", "/snapshots")  # fmt: skip
            return self._send(200, jpg, "image/jpeg", "/snapshots")
        if path == "/v1/infer":
            return self._error(405, "/v1/infer takes POST with the image as the body, e.g. curl --data-binary "
                               "@photo.jpg URL/v1/infer", "/v1/infer", {"Allow": "POST"})  # fmt: skip
        self._error(404, f"no route {path}; try /, /healthz, /metrics, /events, /streams/<name>.mjpg, "
                    "POST /v1/infer", "other")  # fmt: skip
        return None

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        if url.path != "/v1/infer":
            self.close_connection = True
            return self._error(404, f"no route POST {url.path}; POST /v1/infer takes an image", "other")
        if not self._authorised({}, "/v1/infer"):
            self.close_connection = True
            return None
        return self._infer()

    def _healthz(self) -> None:
        svc = self.server.service
        streams = svc.status()
        ok = bool(streams) and all(s["up"] for s in streams)
        keys = ("up", "state", "fps", "last_frame_age_s", "results", "dropped", "error")
        body = {"status": "ok" if ok else "degraded", "model": svc.model_info.get("model"), "task": svc.task,
                "streams": {s["name"]: {k: s[k] for k in keys} for s in streams}}  # fmt: skip
        self._json(200 if ok else 503, body, "/healthz")

    def _events(self, query: dict[str, list[str]]) -> None:
        try:
            since = int(query.get("since", ["0"])[0])
            limit = int(query.get("limit", ["200"])[0])
        except ValueError:
            return self._error(400, "since and limit are whole numbers, e.g. /events?since=12&limit=50", "/events")
        svc = self.server.service
        self._json(200, {"last_id": svc.events.last_id, "events": svc.events.since(since, max(1, limit))}, "/events")
        return None

    def _stream(self, name: str, kind: str) -> None:
        svc = self.server.service
        cam = svc.cameras.get(name)
        if cam is None:
            known = ", ".join(svc.cameras) or "none"
            return self._error(404, f"no stream '{name}'; known streams: {known}", "/streams")
        sink = cam.sink
        if kind == "jpg":
            got = sink.latest_jpeg(-1, 5.0)
            if got is None:
                return self._error(503, f"stream '{name}' has no frame yet", "/streams")
            return self._send(200, got[1], "image/jpeg", "/streams")
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        svc.metrics.requests.labels("/streams", "200").inc()
        if self.command == "HEAD":
            return None
        sink.clients += 1
        seq, gap, last = -1, 1.0 / MJPEG_MAX_FPS, 0.0
        closing = self.server.closing
        try:
            while not closing.is_set():
                got = sink.latest_jpeg(seq, 0.5)
                if got is None:
                    if sink.closed.is_set():
                        break
                    continue
                seq, jpg = got
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpg)).encode()
                                 + b"\r\n\r\n" + jpg + b"\r\n")  # fmt: skip
                self.wfile.flush()
                wait = last + gap - time.monotonic()
                if wait > 0:
                    closing.wait(wait)
                last = time.monotonic()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            sink.clients -= 1
        return None

    def _infer(self) -> None:
        svc = self.server.service
        limit = int(svc.config.max_upload_mb * 1024 * 1024)
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length_text is None:
            self.close_connection = True
            return self._error(411, "send the image with a Content-Length header", "/v1/infer")
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            return self._error(400, f"Content-Length '{length_text}' is not a number", "/v1/infer")
        if length > limit:
            self.close_connection = True  # the body is not read
            return self._error(413, f"image of {length} bytes is over the {limit} byte limit (max_upload_mb: "
                               f"{svc.config.max_upload_mb:g})", "/v1/infer")  # fmt: skip
        body = self.rfile.read(length) if length > 0 else b""
        image, why = _decode(body)
        if image is None:
            return self._error(400, why, "/v1/infer")
        t = time.perf_counter()
        try:
            result = svc.infer(image)
        except EdgeSDKError as e:
            return self._error(400 if "takes images" in str(e) else 500, str(e), "/v1/infer")
        elapsed = time.perf_counter() - t
        answer = {"task": svc.task, "model": svc.model_info.get("model"),
                  "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
                  "inference_ms": round(elapsed * 1000, 2), "result": result.to_dict()}  # fmt: skip
        self._json(200, answer, "/v1/infer")
        return None


def _route(path: str) -> str:
    """The ``path`` label of a request in ``edge_sdk_http_requests_total``: one of a few, whatever a client asks."""
    if path in ("/", "/index.html"):
        return "/"
    if path in ("/metrics", "/events", "/healthz", "/v1/infer"):
        return path
    for prefix in ("/streams/", "/snapshots/"):
        if path.startswith(prefix):
            return prefix.rstrip("/")
    return "other"


def _decode(body: bytes) -> tuple[Any, str]:
    """(RGB image, "") or (None, why) for a request body."""
    import numpy as np

    from edge_sdk.sources._opencv import import_cv2

    if not body:
        return None, "empty body: POST the bytes of a JPEG or PNG image (Content-Type: image/jpeg or image/png)"
    if not body.startswith(IMAGE_MAGIC):
        head = body[:16].decode("latin-1")
        shown = head if head.isprintable() else body[:8].hex(" ")
        return None, f"the body is not a JPEG or PNG image (it starts with {shown!r}); POST the image file's bytes"
    cv2 = import_cv2()
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None, "the body looks like a JPEG or PNG image but does not decode (truncated or corrupt)"
    return np.ascontiguousarray(img[..., ::-1]), ""
