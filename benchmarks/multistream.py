"""Many streams, one model: aggregate fps of 1, 2, 4 and 8 file sources against the model's own throughput.

    python benchmarks/multistream.py [--model zoo:efficientnet-lite0] [--streams 1,2,4,8] [--frames 600]
                                     [--modes fair,batched] [--max-batch 8] [--source file|memory] [--json]

Each stream is an MP4 of a real photo moving (``synthetic:?image=chelsea``, 640x480), written once per run;
every frame of every file is processed (file sources block, they never drop; each decodes ``--source-queue`` = 2
frames ahead, not the SDK's 8, so that the frame age shows the pipeline rather than a read-ahead). Two modes:

- ``fair``: the model as it is (the zoo's EfficientNet-Lite0 ONNX has batch fixed at 1): the streams'
  calls are served one at a time, round-robin;
- ``batched``: a copy of the model with a dynamic batch axis (the batch dimension and the ``Reshape`` before
  the classifier made dynamic; checked equal to the original at batch 2): up to ``--max-batch`` streams'
  frames stacked into one call.

The model's own throughput is measured like ``edge-sdk bench`` (a fresh process, random inputs, the same
default threads) at batch 1 and at each batch used (images/s = calls/s x batch), right before each row, and
in this process (``model.run`` in a loop on the preprocessed photo, same loaded model: "alone"), side by side
with the streams in each of ``--rounds`` rounds per row (this machine's speed drifts by a third within minutes).
``ratio``: the median over the rounds of aggregate fps / the bench at the row's batch (``min(streams,
max_batch)`` when batched, else 1); ``ratio to alone``: the same against "alone". The streams run on
``BatchingModel``'s default lanes (two calls at once on a 2+-core CPU, see ``edge_sdk.multistream.lanes``);
the bench and "alone" use the model as ``edge-sdk bench`` does (one call at a time, the runtime's threads).
Frame age is capture -> result per stream (p50 / p99 in ms, last round; the table shows the worst stream).

The bench gives the model every core; the streams must also decode, convert, pre- and post-process each frame on
the same cores. ``path ms``: that stream path's CPU per frame (the process's CPU minus what the lanes spent in the
model, ``BatchingModel.stats()["infer_cpu_s"]``); ``ceiling``: what the cores can give at the bench's cost per
image once that path is paid (cores / (cores / bench + path)); its ``ratio``: what the scheduling loses beyond
that cost. ``--source memory`` replays the files' frames decoded once, to take decoding out of the path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_sdk.multistream.lanes import usable_cores  # noqa: E402


def write_clip(path: Path, frames: int, size: str, image: str) -> Path:
    """An MP4 (OpenCV mp4v) of ``frames`` frames of a real photo moving."""
    import cv2

    from edge_sdk.sources import open_source

    w, h = (int(v) for v in size.split("x"))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    with open_source(f"synthetic:?fps=0&image={image}&size={size}&frames={frames}") as src:
        for frame in src:
            out.write(frame.data[..., ::-1])
    out.release()
    return path


def dynamic_batch_copy(path: Path, out: Path) -> Path | None:
    """``path`` with its batch axis dynamic (input/output dim 0; a ``Reshape`` to ``[1, ...]`` keeps dim 0 instead),
    or None when the copy does not run at batch 2 with the original's results."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    consts = {n.output[0]: n.attribute[0].t for n in g.node if n.op_type == "Constant" and n.attribute}
    consts.update({i.name: i for i in g.initializer})
    for node in (n for n in g.node if n.op_type == "Reshape"):
        tensor = consts.get(node.input[1])
        if tensor is None:
            continue
        dims = numpy_helper.to_array(tensor).copy()
        if dims.ndim == 1 and len(dims) >= 2 and dims[0] == 1:  # [1, -1]: flatten one sample -> [0, -1]: keep dim 0
            dims[0] = 0
            tensor.CopyFrom(numpy_helper.from_array(dims.astype(np.int64), tensor.name))
    for vi in (*g.input, *g.output):
        d = vi.type.tensor_type.shape.dim[0]
        d.ClearField("dim_value")
        d.dim_param = "N"
    onnx.save(m, str(out))
    try:
        a = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        b = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        name, shape = a.get_inputs()[0].name, [d if isinstance(d, int) else 1 for d in a.get_inputs()[0].shape]
        x = np.random.default_rng(0).standard_normal([2, *shape[1:]]).astype(np.float32)
        ref = np.concatenate([a.run(None, {name: x[i : i + 1]})[0] for i in range(2)])
        ok = np.allclose(b.run(None, {name: x})[0], ref, rtol=1e-4, atol=1e-4)
    except Exception:
        ok = False
    return out if ok else None


def bench_ips(path: Path, batch: int, runs: int) -> float:
    """Images/s at ``batch`` like ``edge-sdk bench`` (fresh process)."""
    from edge_sdk.bench import benchmark_isolated
    from edge_sdk.loader import load

    with load(path) as m:
        spec = m.inputs[0]
        shape = (batch, *spec.concrete_shape()[1:])
    r = benchmark_isolated(str(path), runs=max(10, runs // batch), warmup=5, input_shapes={spec.name: shape},
                           progress=False)  # fmt: skip
    return r.throughput_ips * batch


def alone_ips(model: Any, rm: Any, batch: int, seconds: float) -> float:
    """Images/s of ``model.run`` in a loop on the preprocessed photo stacked ``batch`` times (this process)."""
    import numpy as np

    from converters.datasets import named_image

    x = rm.preprocess.apply(named_image("chelsea"))
    x = np.repeat(x, batch, axis=0)
    model.run(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.run(x)
        n += batch
    return n / (time.perf_counter() - t0)


def ceiling_fps(bench_ips: float, r: dict[str, Any]) -> float | None:
    """What the cores can give the streams at the bench's cost per image once the stream path's own CPU per frame
    (decoding, colour, pre/post-processing, hand-overs) is paid on the same cores: cores / (cores / bench +
    path). None when a lane runs the runtime's own threads (their CPU is not in the lanes' count)."""
    if r["threads_per_lane"] != 1:
        return None
    cores = usable_cores()
    return round(cores / (cores / bench_ips + r["path_cpu_ms_per_frame"] / 1000), 2)


def per_stream(m: dict[str, Any]) -> dict[str, Any]:
    lat = m["latency_ms"]
    return {"fps": m["fps"], "frame_age_p50_ms": lat["p50"], "frame_age_p99_ms": lat["p99"]}


def decoded(path: Path) -> list[Any]:
    """Every frame of ``path`` as RGB arrays (decoded once, for ``--source memory``)."""
    from edge_sdk.sources import open_source

    with open_source(str(path)) as src:
        return [frame.data for frame in src]


def memory_source(frames: list[Any], queue_size: int) -> Any:
    """A file-like source (every frame, blocking) that replays decoded frames: the stream path without decoding."""
    from edge_sdk.sources.capture import CaptureSource

    class MemorySource(CaptureSource):
        kind = "memory"
        is_live = False

        def _open(self) -> None:
            self._next = iter(frames)

        def _grab(self) -> Any:
            return next(self._next, None)

    return MemorySource("memory", policy="queue", queue_size=queue_size)


def run_streams(
    model: Any, clips: list[Any], rm: Any, max_batch: int, source_queue: int, window_ms: float | None
) -> dict[str, Any]:
    """One MultiStream over ``clips`` sharing ``model``; aggregate fps, per-stream ages, scheduler numbers."""
    from edge_sdk.multistream import BatchingModel, MultiStream

    bm = BatchingModel(model, max_batch=max_batch, window_ms=window_ms)
    bm.warmup(2)
    from edge_sdk.sources.video_file import VideoFileSource

    sources = {f"cam{i}": VideoFileSource(p, queue_size=source_queue) if isinstance(p, Path)
               else memory_source(p, source_queue) for i, p in enumerate(clips)}  # fmt: skip
    ms = MultiStream(sources, bm, task=rm.task or "classify",
                     preprocess=rm.preprocess, labels=rm.labels, metrics_every=0)  # fmt: skip
    try:
        cpu0 = os.times()
        final = ms.run()
        cpu1 = os.times()
        t0 = min(p.stats.t0 for p in ms.pipelines.values())
        t1 = max(p.stats.result_ts[-1] for p in ms.pipelines.values())
        counters = bm.stats()
    finally:
        bm.close()
    results = sum(m["results"] for m in final.values())
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return {
        "process_cpu_ms_per_frame": round(cpu * 1000 / max(1, results), 3),
        # everything but the lanes' model calls: decoding, colour, pre/post-processing, hand-overs, batching
        "path_cpu_ms_per_frame": round((cpu - counters["infer_cpu_s"]) * 1000 / max(1, results), 3),
        "model_cpu_ms_per_image": round(counters["infer_cpu_s"] * 1000 / max(1, results), 3),
        "results": results,
        "dropped": sum(m["frames"]["dropped"] for m in final.values()),
        "seconds": round(t1 - t0, 2),
        "aggregate_fps": round(results / (t1 - t0), 2),
        "mean_batch": counters["mean_batch"],
        "lanes": counters["lanes"],
        "threads_per_lane": counters["threads_per_lane"],
        "per_stream": {n: per_stream(m) for n, m in final.items()},
    }


def fmt(v: float | None, width: int, digits: int) -> str:
    return "-".rjust(width) if v is None else f"{v:{width}.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="zoo:efficientnet-lite0")
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--frames", type=int, default=600, help="frames per configuration, split over its streams")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of model alone / streams per row")
    ap.add_argument("--modes", default="fair,batched")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--runs", type=int, default=120, help="images timed per bench point")
    ap.add_argument("--alone-seconds", type=float, default=3.0, help="model alone in this process, before each row")
    ap.add_argument("--source-queue", type=int, default=2, help="frames a file source decodes ahead (SDK default 8)")
    ap.add_argument("--source", choices=("file", "memory"), default="file",
                    help="memory: the files' frames decoded once and replayed (the stream path without decoding)")
    ap.add_argument("--window-ms", type=float, default=None, help="batch window (default: BatchingModel's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import numpy as np

    from edge_sdk.loader import load
    from edge_sdk.zoo_models import resolve_model

    counts = [int(s) for s in args.streams.split(",")]
    modes = args.modes.split(",")
    rm = resolve_model(args.model)
    load_before = round(os.getloadavg()[0], 1)
    work = Path(tempfile.mkdtemp(prefix="multistream_bench_"))
    paths = {"fair": rm.path}
    if "batched" in modes:
        dyn = dynamic_batch_copy(rm.path, work / f"{rm.path.stem}_dynbatch.onnx")
        if dyn is None:
            print("batched: the model's batch axis could not be made dynamic; skipped", file=sys.stderr)
            modes.remove("batched")
        else:
            paths["batched"] = dyn
    clips = {n: [write_clip(work / f"s{n}_{i}.mp4", -(-args.frames // n), args.size, "chelsea") for i in range(n)]
             for n in counts}  # fmt: skip
    if args.source == "memory":
        clips = {n: [decoded(p) for p in paths_n] for n, paths_n in clips.items()}
    bench: dict[str, list[float]] = {}  # measured after each row: the load of a shared machine moves
    rows = []
    for mode in modes:
        with load(paths[mode]) as model:
            for n in counts:
                batch = min(n, args.max_batch) if mode == "batched" else 1
                mb = args.max_batch if mode == "batched" else 1
                rounds = []
                for _ in range(args.rounds):  # bench, alone and the streams side by side; the median of the rounds
                    ips = bench_ips(paths[mode], batch, args.runs)
                    alone = alone_ips(model, rm, batch, args.alone_seconds)
                    r = run_streams(model, clips[n], rm, mb, args.source_queue, args.window_ms)
                    ceiling = ceiling_fps(ips, r)
                    rounds.append(
                        {
                            "bench_ips": round(ips, 2),
                            "alone_ips": round(alone, 2),
                            "aggregate_fps": r["aggregate_fps"],
                            "ratio": round(r["aggregate_fps"] / ips, 3),
                            "ratio_alone": round(r["aggregate_fps"] / alone, 3),
                            "mean_batch": r["mean_batch"],
                            "lanes": r["lanes"],
                            "path_cpu_ms": r["path_cpu_ms_per_frame"],
                            "model_cpu_ms": r["model_cpu_ms_per_image"],
                            "ceiling_fps": ceiling,
                            "ratio_ceiling": None if ceiling is None else round(r["aggregate_fps"] / ceiling, 3),
                        }
                    )
                bench.setdefault(f"{mode}@{batch}", []).extend(x["bench_ips"] for x in rounds)
                med = {k: None if any(x[k] is None for x in rounds) else float(np.median([x[k] for x in rounds]))
                       for k in rounds[0]}  # fmt: skip
                r.update(mode=mode, streams=n, batch=batch, model_ips=round(med["bench_ips"], 2), rounds=rounds,
                         aggregate_fps=round(med["aggregate_fps"], 2), alone_ips=round(med["alone_ips"], 2),
                         mean_batch=med["mean_batch"], ratio=round(med["ratio"], 3),
                         ratio_alone=round(med["ratio_alone"], 3), path_cpu_ms=med["path_cpu_ms"],
                         ceiling_fps=med["ceiling_fps"], ratio_ceiling=med["ratio_ceiling"])  # fmt: skip
                rows.append(r)
    out = {"model": rm.path.name, "video": f"{args.size} mp4 (chelsea moving)", "source": args.source,
           "frames_per_config": args.frames,
           "bench_ips": bench, "target": "ratio >= 0.90", "rows": rows,
           "passed": all(r["ratio"] >= 0.9 for r in rows), "when": time.strftime("%Y-%m-%d %H:%M"),
           "cpus": os.cpu_count(), "load_avg_1min": [load_before, round(os.getloadavg()[0], 1)]}  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"model {out['model']}; source {args.source}; edge-sdk bench (images/s): "
          + ", ".join(f"{k}: {v}" for k, v in bench.items()))  # fmt: skip
    head = f"{'mode':8s} {'streams':>7s} {'lanes':>5s} {'batch':>5s} {'mean b':>6s} {'agg fps':>8s}"
    head += f" {'bench/s':>8s} {'ratio':>6s}"
    head += f" {'alone/s':>8s} {'ratio':>6s} {'path ms':>7s} {'ceiling':>7s} {'ratio':>6s}"
    print(head + f" {'age p50 ms':>10s} {'age p99 ms':>10s} {'drops':>5s}")
    for r in rows:
        ages = r["per_stream"].values()
        p50 = max(a["frame_age_p50_ms"] or 0 for a in ages)
        p99 = max(a["frame_age_p99_ms"] or 0 for a in ages)
        print(f"{r['mode']:8s} {r['streams']:7d} {r['lanes']:5.0f} {r['batch']:5d} {r['mean_batch']:6.2f} "
              f"{r['aggregate_fps']:8.1f} "
              f"{r['model_ips']:8.1f} {r['ratio']:6.2f} {r['alone_ips']:8.1f} {r['ratio_alone']:6.2f} "
              f"{fmt(r['path_cpu_ms'], 7, 2)} {fmt(r['ceiling_fps'], 7, 1)} {fmt(r['ratio_ceiling'], 6, 2)} "
              f"{p50:10.1f} {p99:10.1f} {r['dropped']:5d}")  # fmt: skip
    print(
        f"target ratio >= 0.90: {'PASS' if out['passed'] else 'MISS'} (frame age: the worst stream of each row); "
        f"{out['cpus']} CPUs, load average {out['load_avg_1min'][0]} -> {out['load_avg_1min'][1]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
