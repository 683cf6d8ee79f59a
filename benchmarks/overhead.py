"""Per-call overhead of ``edge_sdk`` over the raw runtime, per backend, in one process.

For each backend (onnxruntime on ``.onnx``, litert on ``.tflite``, openvino on ``.xml``) and
each model (``large``: EfficientNet-Lite0; ``tiny``: a 1x16 MatMul+Add+Relu), the script loads
the model twice with the same settings: once with ``edge_sdk.load(path, backend=..., threads=T)``
and once as the plain runtime object a user would write by hand. After a warm-up it runs
interleaved rounds: each round times N calls of one then N calls of the other (the order
alternates every round) and keeps the mean time per call of each. Reported per row:

- ``raw ms`` / ``sdk ms``: the median over rounds of the per-call mean;
- ``ratio``: median(sdk) / median(raw); ``round ratio``: the median of the per-round ratios;
- ``added µs``: median(sdk) - median(raw);
- ``95% CI``: a paired bootstrap over rounds of the metric the target uses (ratio for ``large``,
  added µs for ``tiny``). On a busy machine a miss whose interval still contains the target is
  within noise: an A/A run (the same runtime object type on both sides) moves by a few percent too.

Targets: large model ratio <= 1.03; tiny model added <= 100 µs. The script is a report: it exits
0 when targets are missed (and lists them), 1 only if a measurement could not be made.

    python benchmarks/overhead.py                     # markdown table on stdout
    python benchmarks/overhead.py --json              # machine-readable, on stdout
    python benchmarks/overhead.py --backends onnxruntime --models tiny --rounds 10

Models are built on first use into ``--workdir`` (default ``.cache/bench``) by
``benchmarks/_bench_models.py`` in a child process (log: ``<workdir>/build.log``), then reused.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(HERE), str(REPO)):  # this checkout's edge_sdk, and the sibling _bench_models
    if _p not in sys.path:
        sys.path.insert(0, _p)

import _bench_models as bm  # noqa: E402
import numpy as np  # noqa: E402

#: backend -> model format it is timed on
BACKEND_FORMAT = {"onnxruntime": "onnx", "litert": "tflite", "openvino": "openvino"}
#: model -> (rounds, calls per side per round, warm-up calls per side)
DEFAULT_PLAN = {"large": (30, 20, 5), "tiny": (30, 2000, 500)}
LARGE_MAX_RATIO = 1.03
TINY_MAX_ADDED_US = 100.0
BOOTSTRAP_SAMPLES = 2000

Call = Callable[[], Any]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the raw runtime, set up exactly as the SDK backend sets it up ----------------------------
class RawRunner:
    """A runtime object created without edge_sdk, and the call a user would write for it."""

    call: Call
    input_name: str

    def close(self) -> None:
        for attr in list(vars(self)):
            setattr(self, attr, None)


class RawOnnxRuntime(RawRunner):
    def __init__(self, path: Path, threads: int, x: np.ndarray) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        (inp,) = self.session.get_inputs()
        self.input_name = name = inp.name
        out_names = [o.name for o in self.session.get_outputs()]
        run = self.session.run

        def call() -> Any:
            return run(out_names, {name: x})

        self.call = call


class RawLiteRT(RawRunner):
    def __init__(self, path: Path, threads: int, x: np.ndarray) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from edge_sdk._quiet import native_stderr

        with native_stderr():  # "Created TensorFlow Lite XNNPACK delegate", as the SDK hides it
            self.interp = Interpreter(model_path=str(path), num_threads=threads)
        self.interp.allocate_tensors()
        (inp,) = self.interp.get_input_details()
        self.input_name = inp["name"]
        in_idx = inp["index"]
        out_idx = [d["index"] for d in self.interp.get_output_details()]
        set_tensor, invoke, get_tensor = self.interp.set_tensor, self.interp.invoke, self.interp.get_tensor

        if len(out_idx) == 1:
            (o,) = out_idx

            def call() -> Any:
                set_tensor(in_idx, x)
                invoke()
                return get_tensor(o)

        else:

            def call() -> Any:
                set_tensor(in_idx, x)
                invoke()
                return [get_tensor(i) for i in out_idx]

        self.call = call


class RawOpenVINO(RawRunner):
    def __init__(self, path: Path, threads: int, x: np.ndarray) -> None:
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = request = self.compiled.create_infer_request()
        (inp,) = self.compiled.inputs
        self.input_name = inp.get_any_name()
        n_out = len(self.compiled.outputs)
        infer, get_output_tensor = request.infer, request.get_output_tensor

        if n_out == 1:

            def call() -> Any:
                infer({0: x}, share_inputs=True)
                return get_output_tensor(0).data.copy()

        else:

            def call() -> Any:
                infer({0: x}, share_inputs=True)
                return [get_output_tensor(i).data.copy() for i in range(n_out)]

        self.call = call


RAW: dict[str, type[RawRunner]] = {"onnxruntime": RawOnnxRuntime, "litert": RawLiteRT, "openvino": RawOpenVINO}


# -- timing -----------------------------------------------------------------------------------
def per_call_ns(fn: Call, n: int) -> float:
    """Mean wall time of one ``fn()`` over ``n`` back-to-back calls (both sides use this loop)."""
    calls = range(n)
    clock = time.perf_counter_ns
    start = clock()
    for _ in calls:
        fn()
    return (clock() - start) / n


@dataclass
class Row:
    backend: str
    model: str
    file: str = ""
    rounds: int = 0
    calls: int = 0
    threads: int = 0
    raw_ms: float | None = None
    sdk_ms: float | None = None
    ratio: float | None = None
    round_ratio: float | None = None
    added_us: float | None = None
    paired_added_us: float | None = None
    target: str = ""
    metric: str = ""
    ci95: list[float] = field(default_factory=list)
    passed: bool | None = None
    max_abs_diff: float | None = None
    runtime: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    raw_round_us: list[float] = field(default_factory=list)
    sdk_round_us: list[float] = field(default_factory=list)


def target_for(model: str) -> str:
    return f"ratio ≤ {LARGE_MAX_RATIO:.2f}" if model == "large" else f"added ≤ {TINY_MAX_ADDED_US:.0f} µs"


def measure(backend: str, model: str, path: Path, threads: int, rounds: int, calls: int, warmup: int) -> Row:
    import edge_sdk

    row = Row(backend, model, path.name, rounds, calls, threads, target=target_for(model))
    sdk = edge_sdk.load(path, backend=backend, threads=threads)
    if len(sdk.inputs) != 1:
        sdk.close()
        raise ValueError(f"{path.name}: the benchmark expects one input, the model has {len(sdk.inputs)}")
    spec = sdk.inputs[0]
    x = np.random.default_rng(0).standard_normal(spec.concrete_shape()).astype(spec.dtype)
    row.runtime = {k: v for k, v in sdk.describe().items() if k not in ("path", "inputs", "outputs")}
    raw: RawRunner | None = None
    try:
        raw = RAW[backend](path, threads, x)
        name = spec.name
        if name != raw.input_name:
            raise ValueError(f"input names differ: sdk {name!r}, raw {raw.input_name!r}")
        sdk_run = sdk.run

        def sdk_call() -> Any:
            return sdk_run({name: x})

        raw_call = raw.call
        # same numbers from both (also proves both ran the same model)
        got_sdk = list(sdk_call().values())
        got_raw = raw_call()
        got_raw = got_raw if isinstance(got_raw, list) else [got_raw]
        row.max_abs_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(got_sdk, got_raw))
        if len(got_sdk) != len(got_raw) or not all(
            np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(got_sdk, got_raw)
        ):
            raise ValueError(
                f"SDK and raw outputs differ (max abs diff {row.max_abs_diff:g}): not the same model/settings"
            )
        for _ in range(2):  # warm both, interleaved
            per_call_ns(sdk_call, warmup)
            per_call_ns(raw_call, warmup)
        sdk_ns: list[float] = []
        raw_ns: list[float] = []
        gc_was_enabled = gc.isenabled()
        try:
            for r in range(rounds):
                gc.collect()
                gc.disable()
                if r % 2 == 0:
                    s = per_call_ns(sdk_call, calls)
                    w = per_call_ns(raw_call, calls)
                else:
                    w = per_call_ns(raw_call, calls)
                    s = per_call_ns(sdk_call, calls)
                gc.enable()
                sdk_ns.append(s)
                raw_ns.append(w)
        finally:
            if gc_was_enabled:
                gc.enable()
    finally:
        sdk.close()
        if raw is not None:
            raw.close()
    med_sdk, med_raw = statistics.median(sdk_ns), statistics.median(raw_ns)
    row.raw_ms, row.sdk_ms = med_raw / 1e6, med_sdk / 1e6
    row.ratio = med_sdk / med_raw
    row.round_ratio = statistics.median(s / w for s, w in zip(sdk_ns, raw_ns))
    row.added_us = (med_sdk - med_raw) / 1e3
    row.paired_added_us = statistics.median(s - w for s, w in zip(sdk_ns, raw_ns)) / 1e3
    row.raw_round_us = [round(v / 1e3, 3) for v in raw_ns]
    row.sdk_round_us = [round(v / 1e3, 3) for v in sdk_ns]
    row.metric = "ratio" if model == "large" else "added_us"
    row.ci95 = bootstrap_ci(sdk_ns, raw_ns, row.metric)
    row.passed = row.ratio <= LARGE_MAX_RATIO if model == "large" else row.added_us <= TINY_MAX_ADDED_US
    return row


def bootstrap_ci(sdk_ns: list[float], raw_ns: list[float], metric: str) -> list[float]:
    """95% interval of median(sdk)/median(raw) (or their difference in µs), resampling whole rounds."""
    sdk, raw = np.asarray(sdk_ns), np.asarray(raw_ns)
    idx = np.random.default_rng(12345).integers(0, len(sdk), size=(BOOTSTRAP_SAMPLES, len(sdk)))
    med_s, med_w = np.median(sdk[idx], axis=1), np.median(raw[idx], axis=1)
    values = med_s / med_w if metric == "ratio" else (med_s - med_w) / 1e3
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def within_noise(row: Row) -> bool:
    """A missed target whose bootstrap interval still reaches the target."""
    limit = LARGE_MAX_RATIO if row.metric == "ratio" else TINY_MAX_ADDED_US
    return bool(row.ci95) and row.ci95[0] <= limit


# -- models -----------------------------------------------------------------------------------
def ensure_models(workdir: Path, sizes: list[str]) -> tuple[dict[str, Any], float]:
    """Build missing models in a child process (noise to ``build.log``); return manifest, seconds."""
    todo = bm.missing(workdir, sizes)
    start = time.perf_counter()
    if todo:
        workdir.mkdir(parents=True, exist_ok=True)
        logfile = workdir / "build.log"
        log(f"building {', '.join(todo)} into {workdir} (log: {logfile}) ...")
        cmd = [sys.executable, str(HERE / "_bench_models.py"), "--workdir", str(workdir), "--models", ",".join(sizes)]
        with open(logfile, "w") as fh:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO).returncode
        if rc != 0:
            tail = logfile.read_text(errors="replace").splitlines()[-15:]
            log(f"model build exited {rc}; last lines of {logfile}:\n  " + "\n  ".join(tail))
    return bm.read_manifest(workdir), time.perf_counter() - start


# -- output -----------------------------------------------------------------------------------
def _f(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    lines = [
        f"edge_sdk per-call overhead vs the raw runtime — threads={meta['threads']}, "
        f"{meta['cpu_count']} CPUs, {meta['machine']}",
        "",
        "| backend | model | raw ms | sdk ms | ratio | round ratio | added µs | 95% CI | target | result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        if r.error:
            result = "ERROR"
        else:
            result = "pass" if r.passed else ("**FAIL** (within noise)" if within_noise(r) else "**FAIL**")
        ci = "—"
        if r.ci95:
            spec = ".3f" if r.metric == "ratio" else ".1f"
            ci = f"{r.ci95[0]:{spec}}–{r.ci95[1]:{spec}}"
        lines.append(
            f"| {r.backend} | {r.model} | {_f(r.raw_ms, '.4f')} | {_f(r.sdk_ms, '.4f')} | {_f(r.ratio, '.3f')} "
            f"| {_f(r.round_ratio, '.3f')} | {_f(r.added_us, '.1f')} | {ci} | {r.target} | {result} |"
        )
    lines.append("")
    for r in rows:
        if not r.error:
            lines.append(f"- {r.backend}/{r.model}: {r.rounds} rounds x {r.calls} calls per side")
    for size, entry in meta["models"].items():
        for fmt, info in entry.items():
            lines.append(f"- {size}.{bm.FORMATS[fmt].lstrip('.')}: {info['source']}")
    missed = [
        f"{r.backend}/{r.model} ({r.target}{'; 95% CI reaches the target, within noise' if within_noise(r) else ''})"
        for r in rows
        if r.passed is False
    ]
    errors = [f"{r.backend}/{r.model}: {r.error}" for r in rows if r.error]
    lines.append("")
    lines.append("Missed targets: " + "; ".join(missed) if missed else "All measured rows meet their targets.")
    if errors:
        lines.append("Errors: " + "; ".join(errors))
    lines.append(f"Total time {meta['total_s']:.1f} s (model build {meta['build_s']:.1f} s).")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in ("onnxruntime", "ai-edge-litert", "openvino"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _csv(value: str, allowed: tuple[str, ...] | list[str], what: str, parser: argparse.ArgumentParser) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        parser.error(f"{what}: unknown {bad or value!r}; choose from {', '.join(allowed)}")
    return items


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="runtime threads for both sides (default 2)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per row (default 30)")
    parser.add_argument("--calls-large", type=int, default=DEFAULT_PLAN["large"][1], help="calls per side per round")
    parser.add_argument("--calls-tiny", type=int, default=DEFAULT_PLAN["tiny"][1], help="calls per side per round")
    parser.add_argument("--backends", default=",".join(BACKEND_FORMAT), help="comma list (default: all three)")
    parser.add_argument("--models", default="large,tiny", help="comma list of large, tiny")
    parser.add_argument("--workdir", type=Path, default=REPO / ".cache" / "bench", help="where models are built")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the markdown table")
    args = parser.parse_args(argv)
    backends = _csv(args.backends, list(BACKEND_FORMAT), "--backends", parser)
    sizes = _csv(args.models, list(bm.SIZES), "--models", parser)
    if args.threads < 1 or (args.rounds is not None and args.rounds < 1):
        parser.error("--threads and --rounds must be >= 1")
    workdir = args.workdir.resolve()

    manifest, build_s = ensure_models(workdir, sizes)
    rows: list[Row] = []
    for size in sizes:
        rounds, _, warmup = DEFAULT_PLAN[size]
        rounds = args.rounds or rounds
        calls = args.calls_large if size == "large" else args.calls_tiny
        for backend in backends:
            fmt = BACKEND_FORMAT[backend]
            path = bm.cached(workdir, manifest, size, fmt)
            if path is None:
                why = manifest.get("errors", {}).get(f"{size}/{fmt}", "not built")
                rows.append(Row(backend, size, target=target_for(size), error=f"no {size} {fmt} model: {why}"))
                continue
            log(f"timing {backend}/{size}: {rounds} rounds x {calls} calls per side ...")
            try:
                row = measure(backend, size, path, args.threads, rounds, calls, min(warmup, calls))
            except Exception as e:  # report it and go on with the other rows
                row = Row(backend, size, path.name, target=target_for(size), error=f"{type(e).__name__}: {e}")
            gc.collect()
            rows.append(row)
            if not row.error:
                log(
                    f"  raw {row.raw_ms:.4f} ms, sdk {row.sdk_ms:.4f} ms, ratio {row.ratio:.3f}, "
                    f"added {row.added_us:.1f} µs"
                )
            else:
                log(f"  ERROR {row.error}")

    meta = {
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}".strip(),
        "versions": versions(),
        "workdir": str(workdir),
        "models": {s: manifest["models"].get(s, {}) for s in sizes},
        "targets": {"large_max_ratio": LARGE_MAX_RATIO, "tiny_max_added_us": TINY_MAX_ADDED_US},
        "build_s": round(build_s, 2),
        "total_s": round(time.perf_counter() - t_start, 2),
    }
    if args.json:
        results = [{**asdict(r), "within_noise": r.passed is False and within_noise(r)} for r in rows]
        print(json.dumps({"meta": meta, "results": results}, indent=2))
    else:
        print(markdown(rows, meta))
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
