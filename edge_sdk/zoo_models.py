"""``zoo:NAME`` model references, resolved to a runnable file for ``edge_sdk.load``, pipelines and the CLI.

A zoo entry whose source is ONNX (CenterFace, Silero VAD) is materialized from its pip package; any other is
converted to ONNX once and cached. This is the one place ``edge_sdk`` reaches into ``converters`` outside a
conversion verb: the zoo lives there, and it is imported only when a ``zoo:`` name is asked for.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("edge_sdk")

#: zoo task names -> pipeline task
ZOO_TASKS = {"classify": "classify", "classification": "classify", "detect-faces": "detect", "vad": "vad"}
ZOO_PREFIX = "zoo:"


@dataclass
class RunnableModel:
    """A model file ready for ``edge_sdk.load``, with what the zoo knows about it (task, preprocessing, labels)."""

    path: Path
    task: str | None
    preprocess: Any = None
    labels: list[str] | None = None


def is_zoo_ref(ref: Any) -> bool:
    """True for a ``zoo:NAME`` string (not for a path)."""
    return isinstance(ref, str) and ref.startswith(ZOO_PREFIX)


def resolve_model(
    ref: str | os.PathLike[str], cache_dir: str | Path | None = None, trusted_keys: Any = None
) -> RunnableModel:
    """A model file path as is (a signed ``.edgebundle`` verified and extracted, see ``edge_sdk.fleet``; with
    trusted keys a plain file must be signed), or ``zoo:NAME`` materialized (converted to ONNX once, then cached)."""
    if not is_zoo_ref(ref):
        from edge_sdk.loader import trusted_path

        return RunnableModel(Path(trusted_path(ref, trusted_keys)), None)
    from converters import zoo
    from converters.zoo.base import default_cache_dir

    entry = zoo.get(str(ref))
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    task = ZOO_TASKS.get(entry.task, entry.task)
    labels = entry.labels() if hasattr(entry, "labels") else None
    if entry.source_format == "onnx":
        return RunnableModel(Path(entry.materialize(folder)), task, entry.preprocess(), labels)
    out = folder / "run" / entry.name
    found = sorted(out.glob("*.onnx"))
    if not found:
        from converters import convert

        log.warning("converting %s to ONNX once (cached in %s)...", ref, out)
        result = convert(str(ref), to="onnx", output_dir=out, validate_samples=4, allow_degraded=True)
        found = [a.path for a in result.artifacts]
    return RunnableModel(found[0], task, entry.preprocess(), labels)
