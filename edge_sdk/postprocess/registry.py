"""Post-processors by task: one registry, each entry in its own module, imported only when used.

A post-processor is built with ``factory(model, **opts)`` (it checks the model's outputs fit and
raises :class:`~edge_sdk.errors.OutputMismatchError` naming the output otherwise) and is called as
``post(outputs, frame) -> Result``; a Result has ``to_event() -> dict`` (JSON-ready) and
``annotate(image) -> image`` (draws on a copy, or returns the image unchanged, e.g. for audio).
Optional hooks the pipeline uses when present (audio uses both):

- ``prepare(frame) -> feeds``: build the model input from the frame (pre stage; else the model's
  image PreprocessSpec is applied to ``frame.data``);
- ``infer(model, feeds, frame) -> outputs``: run the model yourself (infer stage), e.g. to carry a
  recurrent state from one window's outputs into the next window's inputs.

A factory that declares ``preprocess=`` / ``labels=`` keywords (or ``**opts``) receives the
model's PreprocessSpec (None when the input is not an image) and class names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from edge_sdk.errors import EdgeSDKError, TaskError, TaskOptionError

if TYPE_CHECKING:
    from edge_sdk.sources.base import Frame

#: task -> "module:factory"
POSTPROCESSORS: dict[str, str] = {
    "classify": "edge_sdk.postprocess.classify:Classifier",
    "detect": "edge_sdk.postprocess.detect:make_detector",
    "vad": "edge_sdk.postprocess.vad:VoiceActivityDetector",
}


class Result(Protocol):
    def to_event(self) -> dict[str, Any]: ...

    def annotate(self, image: np.ndarray) -> np.ndarray: ...


class PostProcessor(Protocol):
    def __call__(self, outputs: dict[str, np.ndarray], frame: Frame) -> Result: ...


def register_postprocessor(task: str, factory: str | Callable[..., PostProcessor]) -> None:
    """Add or replace the post-processor for ``task`` ("module:factory" string or a callable)."""
    if callable(factory):
        _CALLABLES[task] = factory
        POSTPROCESSORS[task] = f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', '?')}"
    else:
        _CALLABLES.pop(task, None)
        POSTPROCESSORS[task] = factory


def tasks() -> list[str]:
    return list(POSTPROCESSORS)


def get_postprocessor(task: str, model: Any, **opts: Any) -> PostProcessor:
    """The post-processor for ``task`` built for ``model``; TaskError listing the tasks if unknown."""
    if task not in POSTPROCESSORS:
        raise TaskError(f"unknown task '{task}'; known tasks: {', '.join(POSTPROCESSORS)}")
    factory = _CALLABLES.get(task)
    if factory is None:
        module, _, name = POSTPROCESSORS[task].partition(":")
        factory = getattr(importlib.import_module(module), name)
    _check_options(task, factory, opts)
    return factory(model, **opts)


def _check_options(task: str, factory: Callable[..., Any], opts: dict[str, Any]) -> None:
    """An option the factory does not name is a TaskError listing the ones it takes (a typo is not ignored).

    Not checked for a factory that passes ``**kwargs`` on (only a ``**_`` catch-all counts as swallowing).
    """
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD and n != "_" for n, p in params.items()):
        return
    named = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    valid = [n for n in named if n not in ("model", "preprocess", "labels")]
    unknown = [k for k in opts if k not in named and k not in ("preprocess", "labels")]  # those the pipeline gives
    if unknown:
        raise TaskOptionError(
            f"task '{task}': unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid) or 'none'}", unknown
        )


_CALLABLES: dict[str, Callable[..., PostProcessor]] = {}


def build_postprocessor(task: str, model: Any, preprocess: Any, labels: Any, opts: dict[str, Any]) -> PostProcessor:
    """The task's post-processor for ``model``; ``preprocess``/``labels`` are passed when its factory takes them
    (the Pipeline and ``Model.predict`` both build theirs here)."""
    import inspect

    if task not in POSTPROCESSORS:
        raise TaskError(f"unknown task '{task}'; known tasks: {', '.join(POSTPROCESSORS)}")
    module, _, name = POSTPROCESSORS[task].partition(":")
    try:
        factory = _CALLABLES.get(task) or getattr(importlib.import_module(module), name)
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD and n != "_" for n, p in params.items())  # `**_` swallows, not takes
    except (ImportError, AttributeError, ValueError, TypeError):
        params, takes_any = {}, True
    extra = {}
    for key, value in (("preprocess", preprocess), ("labels", labels)):
        if value is not None and (key in params or takes_any):
            extra[key] = value
    try:
        return get_postprocessor(task, model, **extra, **opts)
    except TypeError as e:
        if isinstance(e, EdgeSDKError):
            raise
        raise TaskError(f"task '{task}': bad option: {e}") from None
