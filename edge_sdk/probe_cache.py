"""Isolated probes with a memory: a file that passed once costs nothing the next time.

The CLI's device verbs (``info``, ``bench``, ``run``) and ``edge_sdk.load(safe=True)`` probe an
untrusted file in a child process first (``edge_sdk.isolation``). A probe that passes leaves a
small JSON verdict in ``<cache root>/probes/<key>.json`` (``edge_sdk.cache.cache_root``), where
the key is the SHA-256 of: the model file and its companions (``edge_sdk.cache.model_hash``),
what the probe did (kind, backend, device, threads, options, input shapes), the edge_sdk version
and the installed runtimes' versions. A changed byte, another backend or an upgraded runtime
means a new probe. Failures are not kept: the message depends on the limits, which a user may
raise, and a failing file fails again quickly. ``EDGE_SDK_CACHE=0`` turns the verdicts off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edge_sdk.formats import ModelFile

log = logging.getLogger("edge_sdk")

#: distributions whose version is part of every key: upgrading a runtime re-probes
RUNTIME_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-openvino",
    "onnxruntime-directml",
    "onnxruntime-qnn",
    "openvino",
    "ai-edge-litert",
    "tflite-runtime",
    "tensorflow",
    "tensorflow-cpu",
)
#: device words whose drivers reserve huge address ranges (CUDA maps the GPU's memory and more):
#: an address-space limit would make them fail, so such probes run without one
_RESERVING_DEVICES = ("cuda", "tensorrt", "trt", "rocm", "migraphx", "gpu", "npu", "dml", "jetson")


@dataclass
class Verdict:
    """The outcome of a probe that passed: fresh or from the cache, and what it measured."""

    path: Path
    kind: str
    backend: str | None
    cached: bool
    seconds: float
    peak_vm_bytes: int | None = None
    memory_limit: int | None = None
    notes: list[str] = field(default_factory=list)
    cache_file: Path | None = None

    def describe(self) -> str:
        """One line for ``--verbose``: what the probe did and what it cost."""
        from edge_sdk.formats.budget import human

        if self.cached:
            return (
                f"probe: {self.path.name} passed before ({self.kind}, {self.backend}); verdict from {self.cache_file}"
            )
        peak = human(self.peak_vm_bytes) if self.peak_vm_bytes else "?"
        limit = human(self.memory_limit) if self.memory_limit else "no limit"
        kept = f"; verdict kept in {self.cache_file}" if self.cache_file else "; verdict not kept (cache off)"
        text = (
            f"probe: {self.path.name} ({self.kind}, {self.backend}) passed in an isolated process in "
            f"{self.seconds:.2f} s, peak address space {peak} of {limit}{kept}"
        )
        return text + "".join(f"\nprobe note: {n}" for n in self.notes)


def cache_enabled() -> bool:
    return os.environ.get("EDGE_SDK_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def runtime_versions() -> dict[str, str]:
    """Installed versions of the runtime distributions (absent ones left out).

    Read from the ``NAME-VERSION.dist-info`` folder names on ``sys.path`` (one directory listing per entry):
    ``importlib.metadata`` costs about 0.1 s per CLI start, a tenth of a small model's time to first result.
    """
    wanted = {d.replace("-", "_").lower(): d for d in RUNTIME_DISTRIBUTIONS}
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a zip file, a missing folder
            continue
        for n in names:
            stem, dot, kind = n.rpartition(".")
            if not dot or kind not in ("dist-info", "egg-info"):
                continue
            name, _, version = stem.partition("-")
            dist = wanted.get(name.replace("-", "_").replace(".", "_").lower())
            if dist is not None and dist not in found and version:
                found[dist] = version
    return found


def probe_key(model_file: ModelFile, what: Mapping[str, Any]) -> str:
    """The verdict's key: file content + what was probed + edge_sdk, runtime and Python versions."""
    from edge_sdk import __version__
    from edge_sdk.cache import model_hash

    material = {
        "model": model_hash(model_file),
        "what": dict(what),
        "edge_sdk": __version__,
        "runtimes": runtime_versions(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _verdict_file(key: str) -> Path:
    from edge_sdk.cache import cache_root

    return cache_root() / "probes" / f"{key}.json"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("ok") is True else None


def _write(path: Path, data: Mapping[str, Any]) -> bool:
    """Write atomically (temp file in the same folder, then rename); an unwritable cache only costs speed."""
    import tempfile  # here: a start that finds its verdict never writes one

    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".probe-", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
        return True
    except OSError as e:
        log.info("probe verdict not kept: cannot write %s (%s)", path, e.strerror or e)
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        return False


def plan_text(attempts: Any) -> str:
    """The planned targets of ``placement.plan_attempts`` as one lower-case text (devices, labels, providers)."""
    parts = []
    for a in attempts:
        parts += [a.device, a.label, str(a.options.get("providers", "")), str(a.options.get("delegate", ""))]
    return " ".join(parts).lower()


def _reserves_address_space(plan: str) -> bool:
    return any(word in plan.lower() for word in _RESERVING_DEVICES)


def cached_probe(
    model_file: ModelFile,
    backend: str | None,
    *,
    runtime: str | None,
    plan: str = "",
    kind: str = "load",
    device: str = "auto",
    threads: int | None = None,
    options: Mapping[str, Any] | None = None,
    input_shapes: Mapping[str, Any] | None = None,
    timeout_s: float | str | None = None,
    memory: int | str | None = None,
    budget: int | None = None,
) -> Verdict:
    """Probe ``model_file`` in a child process unless a verdict for the same key says it passed.

    ``backend``/``device``/``threads``/``options`` are what the caller will pass to ``load``;
    ``runtime`` is the backend the device plan picks and ``plan`` the planned targets
    (:func:`plan_text`): an accelerator whose driver reserves address space gets no limit.
    ``memory`` is the address-space limit (bytes, ``"8G"``, ``"off"``; default
    :func:`edge_sdk.isolation.probe_memory_limit` from ``budget``).
    Raises the probe's typed error (``ModelLoadError``, ``ResourceLimitError``, or the load's own).
    """
    from edge_sdk.isolation import probe, probe_memory_limit, probe_timeout

    options = dict(options or {})
    what = {
        "kind": kind,
        "backend": backend,
        "runtime": runtime,
        "device": device,
        "threads": threads,
        "options": options,
        "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()},
    }
    timeout = probe_timeout(timeout_s)
    limit = probe_memory_limit(memory, budget=budget)
    target = _verdict_file(probe_key(model_file, what)) if cache_enabled() else None
    if target is not None and (found := _read(target)) is not None:
        return Verdict(model_file.path, kind, runtime, True, 0.0, found.get("peak_vm_bytes"), cache_file=target)
    if limit is not None and _reserves_address_space(plan):
        log.info("probe of %s runs without an address-space limit: the plan uses an accelerator (%s)",
                 model_file.path.name, plan)  # fmt: skip
        limit = None
    result = probe(
        model_file,
        backend,
        kind=kind,
        device=device,
        threads=threads,
        options=options,
        input_shapes=input_shapes,
        timeout_s=timeout,
        memory_limit=limit,
        runtime=runtime,
    )
    kept = None
    if target is not None:
        record = {
            "ok": True,
            "file": model_file.path.name,
            **what,
            "seconds": round(result.seconds, 3),
            "peak_vm_bytes": result.peak_vm_bytes,
            "memory_limit": limit,
            "notes": result.notes,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        kept = target if _write(target, record) else None
    return Verdict(
        model_file.path, kind, runtime, False, result.seconds, result.peak_vm_bytes, limit, result.notes, kept
    )


def probe_file(
    path: str | os.PathLike[str],
    *,
    kind: str = "load",
    backend: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    input_shapes: Mapping[str, Any] | None = None,
    timeout_s: float | str | None = None,
    memory: int | str | None = None,
) -> Verdict:
    """Check ``path`` like ``load`` does, plan the backend the verb will use, then :func:`cached_probe` it.

    For ``kind="info"`` a file no installed runtime can load is still summarised (``info`` never
    loads: the child notes the failed load); for ``kind="load"`` a plan that fails raises the error
    ``load`` would.
    """
    from edge_sdk.errors import EdgeSDKError
    from edge_sdk.formats import inspect_file
    from edge_sdk.placement import plan_attempts

    model_file = inspect_file(path)
    try:
        attempts = plan_attempts(model_file.format, backend, device, {})
        runtime: str | None = attempts[0].backend_cls.name
        plan = plan_text(attempts)
    except EdgeSDKError:
        if kind != "info":
            raise
        runtime, plan = backend, f"{device} {backend}"
    return cached_probe(
        model_file,
        backend,
        runtime=runtime,
        plan=plan,
        kind=kind,
        device=device,
        threads=threads,
        input_shapes=input_shapes,
        timeout_s=timeout_s,
        memory=memory,
    )
