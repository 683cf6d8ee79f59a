"""``edge_sdk.load``: check the file, pick the backend, optionally prove the load in a child process."""

from __future__ import annotations

import os
from typing import Any

from edge_sdk._quiet import native_stderr, quiet_third_party
from edge_sdk.formats import MAX_MODEL_BYTES, inspect_file
from edge_sdk.model import Model
from edge_sdk.placement import construct, deferred_logs, plan_attempts


def load(
    path: str | os.PathLike[str],
    *,
    backend: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    dequantize: bool = False,
    warmup: int = 0,
    safe: bool = False,
    max_bytes: int = MAX_MODEL_BYTES,
    **options: Any,
) -> Model:
    """Load a ``.onnx``, ``.tflite`` or OpenVINO ``.xml`` model and return a :class:`Model`.

    The file is checked by content before any runtime sees it (see ``edge_sdk.formats``).
    ``backend`` forces a runtime (``"onnxruntime"``, ``"litert"``, ``"openvino"``);
    by default the device plan picks it (see ``edge_sdk.placement``). ``device`` is ``"auto"``
    (this machine's plan, falling back with a logged warning), a named profile (``"cpu"``,
    ``"jetson-orin"``, ``"pi5"``, ... from ``devices.profiles()``) or a backend device
    (``"NPU"``); an explicit choice is an error if what it needs is missing. ``safe=True``
    first loads the model in a child process, so a native crash in the runtime becomes a
    :class:`ModelLoadError` instead of killing the caller. Backend-specific ``options`` are
    documented in each backend module.
    """
    verbose = bool(options.get("verbose"))
    quiet_third_party(verbose)
    model_file = inspect_file(path, max_bytes=max_bytes)
    attempts = plan_attempts(model_file.format, backend, device, options)
    if safe:
        from edge_sdk.isolation import probe_load

        probe_load(model_file, attempts[0].backend_cls.name, device=device, threads=threads, options=options)
    with deferred_logs(), native_stderr(verbose):
        impl = construct(attempts, model_file, threads)
    model = Model(impl, model_file, dequantize=dequantize)
    if warmup:
        model.warmup(warmup)
    return model
