"""JSON lines: one line per result, source event and metrics report, to a file or stdout."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import IO, Any

from edge_sdk.errors import SinkError
from edge_sdk.sinks.base import Sink, require_folder


class JsonLinesSink(Sink):
    kind = "jsonl"

    def __init__(self, target: str = "-", *, results: bool = True, metrics: bool = True, events: bool = True) -> None:
        self.target = target or "-"
        self.flags = {"result": results, "metrics": metrics, "source": events}
        self._fh: IO[str] | None = None
        self._lock = threading.Lock()
        self.lines = 0

    def open(self, info: dict[str, Any]) -> None:
        if self.target == "-":
            self._fh = sys.stdout
            return
        path = Path(self.target)
        require_folder(path, "JSON lines to")
        try:
            self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise SinkError(f"cannot write JSON lines to {path}: {e.strerror or e}") from None

    def _line(self, d: dict[str, Any]) -> None:
        if self._fh is None or not self.flags.get(str(d.get("type")), True):
            return
        with self._lock:
            self._fh.write(json.dumps(d, default=str) + "\n")
            self._fh.flush()
            self.lines += 1

    def write(self, frame: Any, result: Any, event: dict[str, Any], image: Any) -> None:
        self._line(event)

    def write_event(self, event: dict[str, Any]) -> None:
        self._line(event)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        self._line(metrics)

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None and fh is not sys.stdout:
            fh.close()

    def __repr__(self) -> str:
        return f"<JsonLinesSink {self.target}>"
