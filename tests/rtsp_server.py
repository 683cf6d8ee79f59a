"""A real RTSP server for the stream tests: GStreamer's rtsp-server (``GstRtspServer``) on 127.0.0.1.

Run as a script with the system Python, which has PyGObject (``gi``); the project's venv does not::

    /usr/bin/python3 tests/rtsp_server.py --port 0 --path /live

It serves a live H.264 stream (``videotestsrc is-live=true ! x264enc ! rtph264pay``: what an IP
camera serves, endless, 320x240 at 30 fps by default) at ``rtsp://127.0.0.1:PORT/live`` and prints
``READY <port>`` once it listens (``--port 0``: the kernel picks a free port). SIGTERM / SIGINT stop
it cleanly; SIGKILL is the server dying; SIGSTOP is a server that hangs with its connections open.

Debian packages: ``gir1.2-gst-rtsp-server-1.0`` (the server and its typelib), ``gstreamer1.0-plugins-base``
(videotestsrc), ``gstreamer1.0-plugins-ugly`` (x264enc), ``gstreamer1.0-plugins-good`` (rtph264pay),
``python3-gi`` (``make sysdeps`` installs them).

The tests (run by the venv's Python, no ``gi`` there) use :class:`RtspServer`, which starts, stops,
kills, pauses and restarts this script as a child process and waits for it to really serve the stream
(an RTSP DESCRIBE answered with an SDP that has a video track), with generous timeouts.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER_PYTHON = os.environ.get("EDGE_SDK_TEST_GST_PYTHON", "/usr/bin/python3")
ELEMENTS = ("videotestsrc", "x264enc", "rtph264pay")
PACKAGES = " ".join(
    ("gir1.2-gst-rtsp-server-1.0", "gstreamer1.0-plugins-base", "gstreamer1.0-plugins-good",
     "gstreamer1.0-plugins-ugly", "python3-gi")
)  # fmt: skip
READY_TIMEOUT = 90.0  # a loaded 2-core machine can take long to start Python + GStreamer

_CHECK = f"""
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in {ELEMENTS!r} if Gst.ElementFactory.find(e) is None]
print("missing GStreamer elements: " + ", ".join(missing) if missing else "ok")
"""
_unavailable: list[str | None] = []


def unavailable() -> str | None:
    """Why the server cannot run here (a skip reason), or None when it can."""
    if not _unavailable:
        why = None
        if not Path(SERVER_PYTHON).exists():
            why = f"{SERVER_PYTHON} not found"
        else:
            try:
                r = subprocess.run([SERVER_PYTHON, "-c", _CHECK], capture_output=True, text=True, timeout=120)
                out = (r.stdout.strip().splitlines() or [""])[-1]
                if r.returncode != 0:
                    why = (r.stderr.strip().splitlines() or ["failed"])[-1]
                elif out != "ok":
                    why = out
            except subprocess.TimeoutExpired:
                why = "checking GStreamer took over 120 s"
        if why is not None:
            why = (
                f"GStreamer RTSP server not available under {SERVER_PYTHON} ({why}); "
                f"apt-get install {PACKAGES} (make sysdeps)"
            )
        _unavailable.append(why)
    return _unavailable[0]


def describe(port: int, path: str = "/live", timeout: float = 10.0) -> tuple[int, str]:
    """One RTSP DESCRIBE: (status code, SDP body). Raises OSError when nothing answers."""
    url = f"rtsp://127.0.0.1:{port}{path}"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"{url}: connection closed before an answer")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        code = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return code, body.decode("latin-1")


class RtspServer:
    """This script as a child process: ``start()``, ``stop()``, ``kill()``, ``pause()``/``resume()``, ``restart()``.

    The first start binds a free port (``port=0``); restarts reuse it, so a client's URL stays valid.
    """

    def __init__(self, port: int = 0, path: str = "/live", size: tuple[int, int] = (320, 240), rate: int = 30,
                 ready_timeout: float = READY_TIMEOUT) -> None:  # fmt: skip
        self.port, self.path, self.size, self.rate = port, path, size, rate
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="rtsp-server-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def start(self) -> RtspServer:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the RTSP server is already running")
        cmd = [SERVER_PYTHON, __file__, "--port", str(self.port), "--path", self.path,
               "--size", f"{self.size[0]}x{self.size[1]}", "--rate", str(self.rate)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log)
        deadline = time.monotonic() + self.ready_timeout
        self.port = self._read_port(deadline)
        self._wait_serving(deadline)
        return self

    def _read_port(self, deadline: float) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self._fail("did not print READY")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
            if ready:
                ch = os.read(self.proc.stdout.fileno(), 1)
                if not ch:
                    self._fail("closed its stdout before READY")
                line += ch
        self.proc.stdout.close()
        word, _, port = line.decode().strip().partition(" ")
        if word != "READY":
            self._fail(f"printed {line!r}")
        return int(port)

    def _wait_serving(self, deadline: float) -> None:
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                self._fail("exited")
            try:
                code, sdp = describe(self.port, self.path, timeout=max(1.0, min(15.0, deadline - time.monotonic())))
                if code == 200 and "m=video" in sdp:
                    return
                last = f"DESCRIBE answered {code}"
            except (OSError, ValueError, IndexError) as e:
                last = f"DESCRIBE failed: {e}"
            time.sleep(0.2)
        self._fail(f"not serving {self.url} after {self.ready_timeout:g} s ({last})")

    def _fail(self, what: str) -> None:
        self.kill()
        raise RuntimeError(f"RTSP server {what}; its log:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait (SIGKILL if it does not exit within ``timeout``)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the server dies; the kernel closes its connections."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the server hangs; its connections stay open but no data flows."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> RtspServer:
        self.kill()
        return self.start()

    def close(self) -> None:
        self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    ap = argparse.ArgumentParser(description="Serve a live H.264 test stream over RTSP on 127.0.0.1.")
    ap.add_argument("--port", type=int, default=8554, help="0: a free port")
    ap.add_argument("--path", default="/live")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--rate", type=int, default=30)
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true ! video/x-raw,width={w},height={h},framerate={args.rate}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={max(1, args.rate // 2)} bframes=0 threads=1 "
        "! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
