"""``StreamView``: a shared model as one stream sees it (give one to each Pipeline)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_sdk.multistream.batching import BatchingModel


class StreamView:
    """``BatchingModel`` as one stream sees it: a model-like object whose calls are queued as stream ``name``.

    ``close()`` does nothing (the shared model is closed by its owner), so a Pipeline may be given a view.
    """

    def __init__(self, shared: BatchingModel, name: Hashable) -> None:
        self.shared = shared
        self.name = name

    def run(self, feeds: Any, *, dequantize: bool | None = None) -> dict[str, Any]:
        return self.shared.run(feeds, dequantize=dequantize, stream=self.name)

    def __call__(self, x: Any) -> Any:
        outs = self.run(x)
        return next(iter(outs.values())) if len(outs) == 1 else outs

    def warmup(self, runs: int = 1) -> None:
        self.shared.warmup(runs, stream=self.name)

    def close(self) -> None:
        """No-op: the shared model outlives one stream."""

    def __getattr__(self, name: str) -> Any:  # inputs, outputs, path, metadata, backend, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.shared, name)

    def __repr__(self) -> str:
        return f"<StreamView {self.name!r} of {self.shared!r}>"
