"""``edge_sdk.load``: check the file, pick the backend, optionally prove the load in a child process."""

from __future__ import annotations

import os
from typing import Any, Sequence

from edge_sdk._quiet import native_stderr, quiet_third_party
from edge_sdk.formats import MAX_MODEL_BYTES, inspect_file
from edge_sdk.model import Model
from edge_sdk.placement import construct, plan_attempts
from edge_sdk.zoo_models import is_zoo_ref


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
    max_memory: int | None = None,
    trusted_keys: Sequence[Any] | None = None,
    **options: Any,
) -> Model:
    """Load a ``.onnx``, ``.tflite`` or OpenVINO ``.xml`` model (or a ``zoo:NAME``) and return a :class:`Model`.

    The file is checked by content before any runtime sees it (see ``edge_sdk.formats``).
    ``backend`` forces a runtime (``"onnxruntime"``, ``"litert"``, ``"openvino"``);
    by default the device plan picks it (see ``edge_sdk.placement``). ``device`` is ``"auto"``
    (this machine's plan, falling back with a logged warning), a named profile (``"cpu"``,
    ``"jetson-orin"``, ``"pi5"``, ... from ``devices.profiles()``) or a backend device
    (``"NPU"``); an explicit choice is an error if what it needs is missing. Backend-specific
    ``options`` are documented in each backend module. ``max_bytes`` bounds the file's size and
    ``max_memory`` what it declares (tensor shapes, weights; default ``$EDGE_SDK_MAX_MODEL_MEMORY`` or
    half this machine's memory, see ``edge_sdk.formats.budget``), checked before any runtime sees it.

    A signed bundle (``.edgebundle``, see ``edge_sdk.fleet.bundle``) is verified against ``trusted_keys``
    (public key files; default ``$EDGE_SDK_TRUSTED_KEYS``), extracted once into the cache (keyed by its
    sha256) and its model loaded. When trusted keys are given or set, a plain model file is refused
    (:class:`~edge_sdk.errors.UnsignedModelError`) unless it sits in a verified extracted bundle (a slot).

    ``safe=True`` is for files from elsewhere: it first loads the model and runs one warm-up
    inference in a child process under a timeout (``EDGE_SDK_PROBE_TIMEOUT``, default 300 s) and an
    address-space limit (``EDGE_SDK_PROBE_MEMORY``, see ``edge_sdk.isolation``), so a native crash,
    a hang or a memory blow-up in the runtime becomes a :class:`ModelLoadError` (or its subclass
    ``ResourceLimitError``) instead of killing the caller. A file that passed is remembered by its
    hash (``edge_sdk.probe_cache``; ``EDGE_SDK_CACHE=0`` turns that off). The default is ``False``
    because the first probe costs a process start and a second load (seconds); the CLI's ``info``,
    ``bench`` and ``run`` always probe unless given ``--no-probe``.
    """
    verbose = bool(options.get("verbose"))
    quiet_third_party(verbose)
    if is_zoo_ref(path):  # ``zoo:NAME``: materialized (or converted once) and cached, as the CLI does
        from edge_sdk.zoo_models import resolve_model

        path = resolve_model(path).path
    path = trusted_path(path, trusted_keys)
    model_file = inspect_file(path, max_bytes=max_bytes, max_memory=max_memory)
    attempts = plan_attempts(model_file.format, backend, device, options)
    if safe:
        from edge_sdk.probe_cache import cached_probe, plan_text

        runtime, plan = attempts[0].backend_cls.name, plan_text(attempts)
        child_options = options if max_memory is None else {**options, "max_memory": max_memory}
        cached_probe(model_file, backend, runtime=runtime, plan=plan, device=device, threads=threads,
                     options=child_options, budget=max_memory)  # fmt: skip
    with native_stderr(verbose):  # the SDK's own warnings are held and emitted after
        impl = construct(attempts, model_file, threads)
    model = Model(impl, model_file, dequantize=dequantize)
    if warmup:
        model.warmup(warmup)
    return model


def trusted_path(path: str | os.PathLike[str], trusted_keys: Sequence[Any] | None) -> str | os.PathLike[str]:
    """The model file to load: a bundle's, once verified and extracted; a plain file as is, unless trusted keys
    are set and it is not part of a verified bundle. ``cryptography`` is imported only when keys or a bundle
    are involved, so a plain load without keys is unchanged."""
    from edge_sdk.fleet.keys import TRUSTED_KEYS_ENV

    keys_set = trusted_keys is not None or bool(os.environ.get(TRUSTED_KEYS_ENV, "").strip())
    if not keys_set and not str(path).lower().endswith(".edgebundle") and _head(path) != b"PK\x03\x04":
        return path
    from edge_sdk.fleet.trust import trusted_model_path

    return trusted_model_path(path, trusted_keys)


def _head(path: str | os.PathLike[str]) -> bytes:
    """The first 4 bytes of a file (a zip's magic marks a bundle), or b"" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError:
        return b""
