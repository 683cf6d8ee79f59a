"""Freshness under overload: a 30 fps live-paced source and a model slower than 33 ms.

The frame age at result (capture -> result) should stay <= one frame period + the model's
inference p50 and not grow over the run; frames the model cannot keep up with are dropped and
counted instead of queueing.

    python benchmarks/pipeline_latency.py [--model zoo:centerface] [--seconds 120] [--json]

Default model: CenterFace at 480x640 (about 100-160 ms a frame on 2 CPU cores). The source is
``synthetic:?fps=30&image=astronaut&size=640x480`` (a live camera stand-in: latest frame wins).
Reports the age p50/p99 per 10-second window, so growth would show.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="zoo:centerface")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=1, help="inference threads (1 keeps CenterFace above 33 ms here)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import numpy as np

    import edge_sdk as es
    from edge_sdk.zoo_models import resolve_model

    rm = resolve_model(args.model)
    ages: list[tuple[float, float]] = []  # (capture wall ts, age ms)
    with es.load(rm.path, threads=args.threads) as model:
        p = es.Pipeline(f"synthetic:?fps={args.fps:g}&image=astronaut&size=640x480", model,
                        task=rm.task or "detect", preprocess=rm.preprocess, labels=rm.labels, metrics_every=0,
                        on_result=lambda e: ages.append((e["capture_ts"], e["latency_ms"])))  # fmt: skip
        m = p.run(duration=args.seconds)
    t0 = ages[0][0]
    windows = []
    for start in np.arange(0, args.seconds, 10.0):
        a = [age for ts, age in ages if start <= ts - t0 < start + 10]
        if a:
            windows.append({"from_s": float(start), "n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1),
                            "p99_ms": round(float(np.percentile(a, 99)), 1)})  # fmt: skip
    period = 1000.0 / args.fps
    infer = m["stages"]["infer"]["p50_ms"]
    budget = period + infer
    first, last = windows[0]["p50_ms"], windows[-1]["p50_ms"]
    out = {
        "model": rm.path.name,
        "seconds": args.seconds,
        "source_fps": args.fps,
        "inference_p50_ms": infer,
        "inference_p99_ms": m["stages"]["infer"]["p99_ms"],
        "budget_ms": round(budget, 1),
        "age_p50_ms": m["latency_ms"]["p50"],
        "age_p99_ms": m["latency_ms"]["p99"],
        "results": m["results"],
        "captured": m["frames"]["captured"],
        "dropped": m["frames"]["dropped"],
        "windows": windows,
        "p50_within_budget": m["latency_ms"]["p50"] <= budget,
        "p99_within_budget": m["latency_ms"]["p99"] <= budget,
        "growth_ms_first_to_last_window_p50": round(last - first, 1),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['model']}: source {args.fps:g} fps for {args.seconds:g} s; inference p50 {infer} ms "
          f"(p99 {out['inference_p99_ms']} ms); "
          f"budget (1 period + inference p50) {out['budget_ms']} ms")  # fmt: skip
    print(f"frame age at result: p50 {out['age_p50_ms']} ms, p99 {out['age_p99_ms']} ms; "
          f"{out['results']} results, {out['captured']} captured, {out['dropped']} dropped")  # fmt: skip
    for w in windows:
        span = f"{w['from_s']:5.0f}-{w['from_s'] + 10:.0f} s"
        print(f"  {span}: n={w['n']:4d}  p50 {w['p50_ms']} ms  p99 {w['p99_ms']} ms")
    print(f"growth of the window p50, first -> last: {out['growth_ms_first_to_last_window_p50']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
