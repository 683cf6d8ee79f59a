"""How the cameras of ``edge-sdk serve`` (and ``POST /v1/infer``) share one loaded model.

:func:`shared_model` is the one place that decides it: :class:`edge_sdk.multistream.BatchingModel` (requests of
several streams batched into one call when the model takes a batch, else served round-robin, under an inference
watchdog that abandons a stalled call and reloads the backend), or, where that package is missing, one call at a
time behind a lock (:class:`LockedModel`). Each camera's Pipeline gets a handle (:meth:`LockedModel.handle`)
whose calls are timed into the ``edge_sdk_inference_seconds`` histogram under the camera's name.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

Observe = Callable[[str, float], None]


class LockedModel:
    """One loaded :class:`~edge_sdk.Model`, one call at a time (a Model is safe from one thread at a time); the
    time of each call (inside the lock) is observed under its stream's name."""

    kind = "lock"

    def __init__(self, model: Any, observe: Observe | None = None) -> None:
        self._model = model
        self.lock = threading.Lock()
        self.observe = observe or (lambda stream, seconds: None)

    @property
    def model(self) -> Any:
        """The model serving now."""
        return self._model

    def run(self, feeds: Any, stream: str, **kw: Any) -> Any:
        with self.lock:
            t = time.perf_counter()
            out = self._model.run(feeds, **kw)
        self.observe(stream, time.perf_counter() - t)
        return out

    def warmup(self, runs: int, stream: str) -> None:
        with self.lock:
            self._model.warmup(runs)

    def handle(self, stream: str) -> StreamModel:
        """What one camera's Pipeline gets in place of the model (closing it leaves the shared model open)."""
        return StreamModel(self, stream)

    def stats(self) -> dict[str, Any]:
        return {"shared_by": self.kind}

    def close(self) -> None:
        self._model.close()


class BatchedModel(LockedModel):
    """The shared model behind :class:`edge_sdk.multistream.BatchingModel`; a call's observed time includes its
    wait for the other streams' calls (what the stream sees)."""

    kind = "BatchingModel"

    def __init__(self, model: Any, observe: Observe | None = None, on_event: Callable[[dict], None] | None = None):
        from edge_sdk.multistream import BatchingModel

        super().__init__(model, observe)
        self.batching = BatchingModel(model, owns_model=True, on_event=on_event)

    @property
    def model(self) -> Any:
        return self.batching.model  # a replacement after a watchdog restart

    @property
    def lanes(self) -> int:
        """Calls the shared model runs at once (see :mod:`edge_sdk.multistream.lanes`)."""
        return self.batching.lanes

    def run(self, feeds: Any, stream: str, **kw: Any) -> Any:
        t = time.perf_counter()
        out = self.batching.run(feeds, stream=stream, **kw)
        self.observe(stream, time.perf_counter() - t)
        return out

    def warmup(self, runs: int, stream: str) -> None:
        self.batching.warmup(runs, stream=stream)

    def stats(self) -> dict[str, Any]:
        return {"shared_by": self.kind, **self.batching.stats()}

    def close(self) -> None:
        self.batching.close()


class StreamModel:
    """A camera's handle on the shared model: ``run`` and ``warmup`` go through it; the rest is the model's."""

    def __init__(self, shared: LockedModel, stream: str) -> None:
        self._shared, self._stream = shared, stream

    def run(self, feeds: Any, **kw: Any) -> Any:
        return self._shared.run(feeds, self._stream, **kw)

    def __call__(self, x: Any) -> Any:
        outs = self.run(x)
        return next(iter(outs.values())) if len(outs) == 1 else outs

    def warmup(self, runs: int = 1) -> None:
        self._shared.warmup(runs, self._stream)

    def close(self) -> None:  # the service closes the shared model once every camera has stopped
        pass

    def __getattr__(self, name: str) -> Any:  # inputs, outputs, path, metadata, backend, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._shared.model, name)


def shared_model(model: Any, observe: Observe | None = None, on_event: Callable[[dict], None] | None = None) -> Any:
    """The object every camera and ``/v1/infer`` share the loaded ``model`` through (the one place that decides)."""
    try:
        import edge_sdk.multistream  # noqa: F401
    except ImportError:
        return LockedModel(model, observe)
    return BatchedModel(model, observe, on_event)
