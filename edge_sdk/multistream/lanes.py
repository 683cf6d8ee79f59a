"""How many calls a shared model runs at once ("lanes"), and with how many threads each.

A CPU runtime asked for one call at a time uses every core inside that call, and loses some of them: the
cores wait for each other at every layer, and the streams' decoding and pre-processing threads take cores
away from it in the middle of a layer. Two calls at once on one thread each keep the cores busy with less
waiting (what OpenVINO's THROUGHPUT hint and Triton's instance count do). Measured on the 2-core sandbox,
EfficientNet-Lite0 on ONNX Runtime: 1 call x 2 threads 99-119 images/s, 2 calls x 1 thread 129-137.

Each lane is a model of its own, loaded from the same file with ``cores // lanes`` threads (a runtime's
sessions and interpreters are not all safe to call from two threads at once: LiteRT's is not), so lanes
cost the model's memory once per lane. ``auto`` uses 2 lanes for a loaded :class:`~edge_sdk.Model` that runs
on the CPU through ONNX Runtime or LiteRT (:data:`AUTO_BACKENDS`) of a machine with at least 2 cores and a file
under :data:`AUTO_MAX_BYTES`; otherwise one lane, which is the model as given.
"""

from __future__ import annotations

import os
from typing import Any

from edge_sdk.errors import EdgeSDKError

AUTO_MAX_BYTES = 256 * 1024 * 1024  # a larger model is not duplicated by default (memory)
AUTO_LANES = 2
#: runtimes that gain from lanes, measured on the 2-core sandbox (EfficientNet-Lite0, two file streams,
#: aggregate fps, one lane -> two): LiteRT 63-69 -> 100-114, ONNX Runtime 79 -> 104-118 (with the lanes taking
#: their own calls). OpenVINO lost (85-86 -> 66-72): its CPU plugin already schedules its own threads, and two
#: 1-thread compiled models do worse, so it keeps one lane
AUTO_BACKENDS = ("onnxruntime", "litert")


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, as a container or ``taskset`` sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def on_cpu(model: Any) -> bool:
    """Whether ``model`` runs on the CPU (ONNX Runtime's CPU provider, OpenVINO's CPU, LiteRT without an
    accelerator delegate)."""
    try:
        d = model.describe()
    except Exception:
        return False
    if "providers" in d:
        return list(d["providers"])[:1] == ["CPUExecutionProvider"]
    if "device" in d:
        return str(d["device"]).upper() == "CPU"
    return str(d.get("delegate") or "xnnpack").lower() in ("xnnpack", "none", "cpu")


def resolve_lanes(lanes: int | str | None, model: Any) -> int:
    """The number of lanes for ``model``: ``lanes`` when given as a number, else the ``auto`` rule above."""
    from edge_sdk.model import Model

    if lanes is None or lanes == "auto":
        if not isinstance(model, Model) or model.backend not in AUTO_BACKENDS or usable_cores() < 2:
            return 1
        if not on_cpu(model):
            return 1
        try:
            size = model.path.stat().st_size
        except OSError:
            return 1
        return AUTO_LANES if size <= AUTO_MAX_BYTES else 1
    try:
        n = int(lanes)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise EdgeSDKError(f"lanes must be 'auto' or a whole number >= 1, got {lanes!r}")
    if n > 1 and not hasattr(model, "path"):
        raise EdgeSDKError("lanes > 1 loads the model once per lane from its file; this model has no path")
    return n


def lane_threads(lanes: int) -> int | None:
    """Threads per lane: the cores shared out (None, the runtime's default, for a single lane)."""
    return None if lanes <= 1 else max(1, usable_cores() // lanes)
