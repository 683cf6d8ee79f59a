"""What every sink is: it receives each result (with the annotated image when it asks for one),
the sources' lifecycle events and the periodic metrics. Sinks must be quick: slow work (encoding,
network) belongs in the sink's own thread with latest-wins, never in the pipeline's post stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import SinkError


class Sink:
    kind: str = "sink"
    #: True when the sink wants ``image`` (the annotated frame) in :meth:`write`
    needs_image: bool = False

    def open(self, info: dict[str, Any]) -> None:
        """Called once before the first frame; ``info`` has task, model and source names."""

    def write(self, frame: Any, result: Any, event: dict[str, Any], image: np.ndarray | None) -> None:
        """One result: ``event`` is its JSON-ready dict, ``image`` the annotated RGB frame (or None)."""

    def write_event(self, event: dict[str, Any]) -> None:
        """A source lifecycle event (DISCONNECTED, RECONNECTED, EOS) as a dict."""

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """The pipeline's periodic metrics line."""

    def close(self) -> None:
        """Flush and release; called once."""

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def require_folder(path: Path, what: str) -> None:
    """A sink writes into an existing folder only: a mistyped path must not create folders anywhere."""
    parent = path.absolute().parent
    if not parent.is_dir():
        raise SinkError(
            f"cannot write {what} {path}: the folder {parent} does not exist (sinks create no folders; "
            "create it first or fix the path)"
        )
