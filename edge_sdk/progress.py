"""A dependency-free progress bar for long steps (shown only on a terminal, on stderr)."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class Progress:
    """``for x in Progress(items, total, "bench"):`` draws ``label [####    ] 40/100 1.2s`` on stderr."""

    def __init__(self, items: Iterable[T], total: int | None = None, label: str = "", enabled: bool | None = None):
        self._items = items
        self._total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
        self._label = label
        self._enabled = sys.stderr.isatty() if enabled is None else enabled
        self._last_draw = 0.0

    def __iter__(self) -> Iterator[T]:
        start = time.monotonic()
        done = 0
        for item in self._items:
            yield item
            done += 1
            now = time.monotonic()
            if self._enabled and (now - self._last_draw > 0.1 or done == self._total):
                self._last_draw = now
                self._draw(done, now - start)
        if self._enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    def _draw(self, done: int, elapsed: float) -> None:
        if self._total:
            width = 30
            filled = int(width * done / self._total)
            bar = "#" * filled + " " * (width - filled)
            text = f"\r{self._label} [{bar}] {done}/{self._total} {elapsed:.1f}s"
        else:
            text = f"\r{self._label} {done} {elapsed:.1f}s"
        sys.stderr.write(text)
        sys.stderr.flush()
