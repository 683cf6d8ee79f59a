"""Benchmark one model on one backend: load, first inference, latency percentiles, throughput, RSS.

``benchmark`` measures in the current process. The CLI runs each (model, backend)
pair in a fresh child process (``python -m edge_sdk.bench``) so that load time
and peak memory of one do not leak into the next.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edge_sdk.errors import InputMismatchError, ModelLoadError, error_from_dict, error_to_dict
from edge_sdk.progress import Progress
from edge_sdk.tensor_spec import TensorSpec


@dataclass
class BenchResult:
    model: str
    format: str
    backend: str
    threads: int | None
    runs: int
    warmup: int
    load_ms: float
    first_inference_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    throughput_ips: float
    peak_rss_mb: float
    details: dict[str, Any] = field(default_factory=dict)
    input_shapes: dict[str, list[int]] = field(default_factory=dict)  # the shape each input was timed at

    def shape_text(self) -> str:
        """``x[1,16]`` (several inputs joined by a space): the shapes timed, for tables."""
        return " ".join(f"{k}[{','.join(map(str, v))}]" for k, v in self.input_shapes.items())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_inputs(
    specs: list[TensorSpec],
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = 0,
    *,
    fill_dynamic: bool = True,
):
    """Random inputs that fit ``specs``, each of the shape ``shapes`` names for it.

    A dynamic dim that ``shapes`` does not fix becomes 1 when ``fill_dynamic``; else only a dynamic
    batch (dim 0) does, and any other is an InputMismatchError naming the dims and the ``--input-shape``
    to give. A given shape must keep
    the input's rank and its static dims.
    """
    rng = np.random.default_rng(seed)
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - {s.name for s in specs})
    if unknown:
        raise InputMismatchError(f"--input-shape names unknown input(s) {unknown}; inputs: {[s.name for s in specs]}")
    feeds = {}
    for s in specs:
        shape = _input_shape(s, shapes.get(s.name), fill_dynamic)
        if s.dtype.kind == "f":
            feeds[s.name] = rng.standard_normal(shape).astype(s.dtype)
        elif s.dtype.kind in "iu":
            info = np.iinfo(s.dtype)
            lo, hi = max(info.min, -128), min(info.max, 127)
            feeds[s.name] = rng.integers(lo, hi + 1, size=shape).astype(s.dtype)
        elif s.dtype.kind == "b":
            feeds[s.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise InputMismatchError(f"cannot make benchmark input for '{s.name}' of dtype {s.dtype}")
    return feeds


def _input_shape(spec: TensorSpec, given: tuple[int, ...] | None, fill_dynamic: bool) -> tuple[int, ...]:
    names = spec.dim_names or (None,) * len(spec.shape)
    # dynamic dims shown as <name> to fill in, a dynamic batch as 1
    example = ",".join(
        str(d) if d is not None else ("1" if i == 0 and len(names) > 1 else f"<{n or f'dim{i}'}>")
        for i, (d, n) in enumerate(zip(spec.shape, names))
    )
    if given is None:
        # a dynamic batch (dim 0 of a rank >= 2 input) is timed at 1, shown with the result; others are refused
        dyn = [n or f"#{i}" for i, (d, n) in enumerate(zip(spec.shape, names)) if d is None and (i or len(names) < 2)]
        if dyn and not fill_dynamic:
            raise InputMismatchError(
                f"input '{spec.name}' has dynamic dim(s) {', '.join(dyn)} (shape {spec.shape_str()}); "
                f"give the shape to time: --input-shape {spec.name}={example}"
            )
        return spec.concrete_shape()
    given = tuple(int(d) for d in given)
    clash = len(given) != len(spec.shape) or any(d is not None and d != g for d, g in zip(spec.shape, given))
    if clash:
        raise InputMismatchError(
            f"--input-shape {spec.name}={','.join(map(str, given))} does not fit input '{spec.name}' of shape "
            f"{spec.shape_str()}; e.g. --input-shape {spec.name}={example}"
        )
    return given


def benchmark(
    path: str,
    *,
    backend: str | None = None,
    threads: int | None = None,
    runs: int = 100,
    warmup: int = 10,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    fill_dynamic: bool = True,
    progress: bool | None = None,
    **options: Any,
) -> BenchResult:
    """Load ``path`` and time it; see :class:`BenchResult` for what is measured.

    Dynamic input dims take ``input_shapes``, else 1 (``fill_dynamic``) or an InputMismatchError
    naming them; the shapes used are in the result's ``input_shapes``.
    """
    from edge_sdk.loader import load

    t0 = time.perf_counter()
    model = load(path, backend=backend, threads=threads, **options)
    load_ms = (time.perf_counter() - t0) * 1e3
    try:
        feeds = make_inputs(model.inputs, input_shapes, fill_dynamic=fill_dynamic)
        t0 = time.perf_counter()
        model.run(feeds)
        first_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(warmup):
            model.run(feeds)
        times = np.empty(runs, dtype=np.float64)
        clock = time.perf_counter_ns
        for i in Progress(range(runs), runs, f"bench {os.path.basename(path)} [{model.backend}]", progress):
            t = clock()
            model.run(feeds)
            times[i] = clock() - t
        times /= 1e6
        details = model.describe()
        details.pop("inputs", None)
        details.pop("outputs", None)
        return BenchResult(
            model=path,
            format=model.format,
            backend=model.backend,
            threads=threads,
            runs=runs,
            warmup=warmup,
            load_ms=load_ms,
            first_inference_ms=first_ms,
            p50_ms=float(np.percentile(times, 50)),
            p90_ms=float(np.percentile(times, 90)),
            p99_ms=float(np.percentile(times, 99)),
            mean_ms=float(times.mean()),
            min_ms=float(times.min()),
            throughput_ips=float(1e3 / times.mean()),
            peak_rss_mb=_peak_rss_mb(),
            details=details,
            input_shapes={k: list(v.shape) for k, v in feeds.items()},
        )
    finally:
        model.close()


def benchmark_isolated(path: str, *, timeout_s: float = 1800, **kwargs: Any) -> BenchResult:
    """:func:`benchmark` in a fresh child process (clean load time and peak memory)."""
    request = json.dumps({"path": path, **kwargs})
    proc = subprocess.run(
        [sys.executable, "-m", "edge_sdk.bench"],
        input=request,
        stdout=subprocess.PIPE,
        stderr=None,  # progress bar and runtime messages pass through
        text=True,
        timeout=timeout_s,
    )
    if proc.returncode < 0:
        raise ModelLoadError(f"benchmark of {path} crashed the runtime (signal {-proc.returncode})")
    reply = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    if not reply.get("ok"):
        raise error_from_dict(reply, f"benchmark child exited with {proc.returncode}")
    return BenchResult(**reply["result"])


@dataclass
class StartResult:
    """Cold vs warm start: a fresh process with an empty compiled-model cache, then with the cache it filled."""

    model: str
    backend: str
    cold_load_ms: float
    cold_first_inference_ms: float
    warm_load_ms: float
    warm_first_inference_ms: float
    cache_bytes: int
    note: str = ""

    @property
    def cold_ms(self) -> float:
        return self.cold_load_ms + self.cold_first_inference_ms

    @property
    def warm_ms(self) -> float:
        return self.warm_load_ms + self.warm_first_inference_ms

    @property
    def speedup(self) -> float:
        return self.cold_ms / self.warm_ms if self.warm_ms > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cold_ms": self.cold_ms, "warm_ms": self.warm_ms, "speedup": self.speedup}


def cold_warm(path: str, *, backend: str | None = None, threads: int | None = None, **options: Any) -> StartResult:
    """Time to first result (load + first inference) with an empty cache, then with the cache it filled.

    Each start is a fresh child process, so nothing but the cache folder carries over. Backends
    without a compiled-model cache (LiteRT, ONNX Runtime's CPU EP) show a ratio near 1, with a note.
    """
    import tempfile

    from edge_sdk.formats import inspect_file
    from edge_sdk.placement import plan_attempts

    name = plan_attempts(inspect_file(path).format, backend, "auto", options)[0].backend_cls.name
    note = ""
    if name == "litert":
        note = "LiteRT has no compiled-model cache: both starts do the same work"
    elif name == "onnxruntime" and "providers" not in options:
        note = "ONNX Runtime's CPU EP compiles nothing, so it has nothing to cache"
    with tempfile.TemporaryDirectory(prefix="edge_sdk_cold_warm_") as folder:
        extra = {} if name == "litert" else {"cache_dir": folder}
        runs = [
            benchmark_isolated(
                path, backend=name, threads=threads, runs=1, warmup=0, progress=False, **extra, **options
            )
            for _ in range(2)
        ]
        size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
    cold, warm = runs
    return StartResult(
        path, name, cold.load_ms, cold.first_inference_ms, warm.load_ms, warm.first_inference_ms, size, note
    )


def _child() -> int:
    request = json.loads(sys.stdin.read())
    path = request.pop("path")
    shapes = request.pop("input_shapes", None)
    if shapes:
        request["input_shapes"] = {k: tuple(v) for k, v in shapes.items()}
    try:
        result = benchmark(path, **request)
    except Exception as e:
        print(json.dumps({"ok": False, **error_to_dict(e)}))
        return 0
    print(json.dumps({"ok": True, "result": result.to_dict()}))
    return 0


if __name__ == "__main__":
    from edge_sdk._stop_signals import unblock_stop_signals

    unblock_stop_signals()  # started during a conversion, which blocks them: a stop must still end this child
    sys.exit(_child())
