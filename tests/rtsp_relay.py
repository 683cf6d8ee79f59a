"""A minimal RTSP relay (the role mediamtx plays in production), for tests on 127.0.0.1.

``ffmpeg -re -i clip.mp4 -c copy -f rtsp -rtsp_transport tcp rtsp://127.0.0.1:PORT/live`` publishes
(ANNOUNCE/RECORD, RTP interleaved over TCP); readers DESCRIBE/SETUP/PLAY the same path and get
the publisher's RTP packets. When the publisher (ffmpeg) dies, every reader is disconnected and
DESCRIBE answers 404 until a publisher is back: ffmpeg is the stream's server process, killed and
restarted by the tests. Run as ``python rtsp_relay.py PORT`` or use :class:`Relay` in-process.
"""

from __future__ import annotations

import socket
import sys
import threading


class Relay:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.sdp: bytes | None = None
        self.publisher: socket.socket | None = None
        self.readers: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = False

    def serve(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def start(self) -> Relay:
        threading.Thread(target=self.serve, daemon=True).start()
        return self

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        with self.lock:
            for r in list(self.readers) + ([self.publisher] if self.publisher else []):
                _close(r)

    # -- one connection ------------------------------------------------------------------------
    def _conn(self, conn: socket.socket) -> None:
        buf = b""
        role = None
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                while buf:
                    if buf[:1] == b"$":
                        if len(buf) < 4:
                            break
                        n = int.from_bytes(buf[2:4], "big")
                        if len(buf) < 4 + n:
                            break
                        packet, buf = buf[: 4 + n], buf[4 + n :]
                        if role == "publisher":
                            self._fanout(packet)
                        continue
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = buf[:end].decode("latin-1")
                    headers = _headers(head)
                    clen = int(headers.get("content-length", "0"))
                    if len(buf) < end + 4 + clen:
                        break
                    body, buf = buf[end + 4 : end + 4 + clen], buf[end + 4 + clen :]
                    role = self._request(conn, head, headers, body, role) or role
        except OSError:
            pass
        finally:
            with self.lock:
                self.readers.discard(conn)
                if role == "publisher" and self.publisher is conn:
                    self.publisher, self.sdp = None, None
                    for r in list(self.readers):
                        _close(r)
                    self.readers.clear()
            _close(conn)

    def _request(self, conn: socket.socket, head: str, h: dict[str, str], body: bytes, role: str | None) -> str | None:
        method, url = head.split(" ", 2)[:2]
        cseq = h.get("cseq", "0")
        extra = ""
        new_role = None
        if method == "OPTIONS":
            extra = "Public: OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN, GET_PARAMETER\r\n"
        elif method == "ANNOUNCE":
            with self.lock:
                self.sdp, self.publisher = body, conn
            new_role = "publisher"
        elif method == "DESCRIBE":
            with self.lock:
                sdp = self.sdp
            if sdp is None:
                conn.sendall(f"RTSP/1.0 404 Not Found\r\nCSeq: {cseq}\r\n\r\n".encode())
                return None
            base = url.rstrip("/") + "/"
            conn.sendall(
                (f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Base: {base}\r\nContent-Type: application/sdp\r\n"
                 f"Content-Length: {len(sdp)}\r\n\r\n").encode() + sdp
            )  # fmt: skip
            return None
        elif method == "SETUP":
            extra = f"Transport: {h.get('transport', 'RTP/AVP/TCP;unicast;interleaved=0-1')}\r\nSession: 12345678\r\n"
        elif method in ("PLAY", "RECORD"):
            extra = "Session: 12345678\r\n"
            if method == "PLAY":
                with self.lock:
                    if self.sdp is None:
                        conn.sendall(f"RTSP/1.0 404 Not Found\r\nCSeq: {cseq}\r\n\r\n".encode())
                        return None
                    self.readers.add(conn)
                new_role = "reader"
        conn.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}\r\n".encode())
        if method == "TEARDOWN":
            _close(conn)
        return new_role

    def _fanout(self, packet: bytes) -> None:
        with self.lock:
            readers = list(self.readers)
        for r in readers:
            try:
                r.sendall(packet)
            except OSError:
                with self.lock:
                    self.readers.discard(r)


def _headers(head: str) -> dict[str, str]:
    out = {}
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        out[k.strip().lower()] = v.strip()
    return out


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


if __name__ == "__main__":
    relay = Relay(int(sys.argv[1]))
    print(relay.port, flush=True)
    relay.serve()
