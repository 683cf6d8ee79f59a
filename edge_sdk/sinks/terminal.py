"""What ``edge-sdk run`` shows in a terminal: task events as lines, and one status line that keeps updating.

- Task events (the VAD's ``SPEECH_START`` / ``SPEECH_END``) are printed one a line on ``events_stream``
  (stdout by default), e.g. ``    3.52 s  SPEECH_END  speech 1.20-3.52 s (2.32 s)``.
- The status line (``status_stream``, stderr by default) says how many results, at what rate, how old
  they are, how many frames were dropped, and the last result. On a terminal it is redrawn in place
  (``\\r``) at most every ``interval`` seconds (default 0.25); elsewhere (a log file, the journal)
  it is a new line every ``interval`` seconds (default 5), so logs do not fill up.
- Zone and line events (``--zone``/``--line``: ``enter``, ``leave``, ``cross`` with track id and label) are
  lines on ``events_stream`` too, e.g. ``    1.37 s  cross  line gate in  person #3``.
- Source events (``DISCONNECTED``, ``RECONNECTED``, ``EOS``) are lines on the status stream.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from typing import IO, Any

from edge_sdk.pipeline.metrics import rate
from edge_sdk.sinks.base import Sink

CLEAR = "\r\033[K"


def describe_result(event: dict[str, Any]) -> str:
    """A result event in a few words: top classes, detections, or speech / silence."""
    if "top" in event:
        return ", ".join(f"{t['label']} {t['score']:.0%}" for t in event["top"][:3])
    if "detections" in event:
        return f"{event['count']} detection(s) " + " ".join(str(d["box"]) for d in event["detections"][:5])
    if "speech_prob" in event:
        return f"{'speech' if event.get('speech') else 'silence'} {event['speech_prob']:.0%} at {event['t_s']:.2f} s"
    return str({k: v for k, v in event.items() if k not in ("type", "capture_ts")})


def describe_event(ev: dict[str, Any]) -> str:
    """A task event (``{"event": "SPEECH_END", "t_s": 3.52, "segment": {...}}``) or an analytics event
    (``{"event": "enter", "zone": "door", "track_id": 3, "label": "person", "pos_ms": 1366.7}``) as one line."""
    t = ev.get("t_s", (ev.get("pos_ms") or 0.0) / 1000.0)
    text = f"{float(t):8.2f} s  {ev.get('event', '?')}"
    where = (f"zone {ev['zone']}" if ev.get("zone") else f"line {ev['line']}" if ev.get("line") else "")
    if where:
        direction = f" {ev['direction']}" if ev.get("direction") and ev.get("event") == "cross" else ""
        track = f" #{ev['track_id']}" if ev.get("track_id") is not None else ""
        text += f"  {where}{direction}  {ev.get('label', '')}{track}".rstrip()
    elif ev.get("event") == "watchdog" and ev.get("detail"):
        text += f"  {ev['detail']}"
    seg = ev.get("segment")
    if isinstance(seg, dict) and seg.get("end_s") is not None:
        start, end = float(seg["start_s"]), float(seg["end_s"])
        text += f"  speech {start:.2f}-{end:.2f} s ({end - start:.2f} s)"
    if ev.get("stopped_by"):
        text += f"  (stopped: {ev['stopped_by']})"
    if ev.get("file"):
        text += f"  {ev['file']}"
    return text


def _fmt_ms(v: Any) -> str:
    return "-" if v is None else f"{float(v):.0f}"


class TerminalSink(Sink):
    """Events and an updating status line for a person at a terminal (see the module docstring)."""

    kind = "terminal"

    def __init__(
        self, target: str = "", *, status: bool = True, events: bool = True, events_stream: IO[str] | None = None,
        status_stream: IO[str] | None = None, interval: float | None = None, tty: bool | None = None,
    ) -> None:  # fmt: skip
        self.show_status, self.show_events = status, events
        self.events_stream = events_stream or sys.stdout
        self.status_stream = status_stream or sys.stderr
        if tty is None:
            isatty = getattr(self.status_stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.interval = float(interval if interval is not None else (0.25 if tty else 5.0))
        self._lock = threading.Lock()
        self._ts: collections.deque[float] = collections.deque(maxlen=64)
        self._results = 0
        self._last: dict[str, Any] | None = None
        self._metrics: dict[str, Any] = {}
        self._drawn = False
        self._next = 0.0
        self.events_printed = 0
        self.status_lines = 0

    def open(self, info: dict[str, Any]) -> None:
        self._next = time.monotonic() + (self.interval if not self.tty else 0.0)

    def write(self, frame: Any, result: Any, event: dict[str, Any], image: Any) -> None:
        if event.get("type") == "event":
            self._print_events([event])
            return
        with self._lock:
            if not event.get("final"):
                self._results += 1
                self._ts.append(time.monotonic())
                self._last = event
        if event.get("events"):
            stop = {"stopped_by": event["stopped_by"]} if event.get("final") and event.get("stopped_by") else {}
            self._print_events([{**ev, **stop} for ev in event["events"]])
        self._status()

    def write_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "source":
            self._line(self.status_stream, f"source {event.get('event', '?')}: {event.get('detail', '')}".rstrip(": "))
        else:  # zone / line events of the analytics, the watchdog's: lines like the task's events
            self._print_events([event])

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        self._metrics = metrics
        if not metrics.get("final"):
            self._status(force=True)

    def close(self) -> None:
        with self._lock:
            if self.tty and self._drawn:
                self.status_stream.write(CLEAR)
                self.status_stream.flush()
                self._drawn = False

    # -- drawing ---------------------------------------------------------------------------------
    def status_text(self) -> str:
        """The status line's text now."""
        with self._lock:
            fps = rate(list(self._ts), time.monotonic())
            results, last = self._results, self._last
        m = self._metrics
        text = f"{results} results  {fps:g} fps"
        if last is not None:
            text += f"  latency {_fmt_ms(last.get('latency_ms'))} ms"
            if last.get("processing_ms") is not None:
                text += f" (processing {_fmt_ms(last['processing_ms'])} ms)"
        dropped = (m.get("frames") or {}).get("dropped")
        if dropped:
            text += f"  dropped {dropped}"
        if last is not None:
            text += f"  last: {describe_result(last)}"
        return text

    def _status(self, force: bool = False) -> None:
        if not self.show_status:
            return
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.interval
        text = self.status_text()
        with self._lock:
            if self.tty:
                self.status_stream.write(CLEAR + text[:200])
                self._drawn = True
            else:
                self.status_stream.write(f"status: {text}\n")
            self.status_stream.flush()
            self.status_lines += 1

    def _print_events(self, events: list[dict[str, Any]]) -> None:
        if not self.show_events:
            return
        for ev in events:
            self._line(self.events_stream, describe_event(ev))
            self.events_printed += 1

    def _line(self, stream: IO[str], text: str) -> None:
        with self._lock:
            if self.tty and self._drawn:  # the status line gives way, and is redrawn by the next update
                self.status_stream.write(CLEAR)
                self.status_stream.flush()
                self._drawn = False
            stream.write(text + "\n")
            stream.flush()
