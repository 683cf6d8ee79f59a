"""Continuous running: resident memory stays flat (within 10% after warm-up) over a long run.

    python benchmarks/pipeline_memory.py [--minutes 10] [--model zoo:efficientnet-lite0] [--json]

Runs EfficientNet-Lite0 on a 30 fps live source (a real photo) with the JSON-lines, video-file
and HTTP live-view sinks attached, samples this process's RSS every 10 s, and compares the
largest sample after the warm-up minute with the sample at the end of warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="zoo:efficientnet-lite0")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before the reference sample")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import edge_sdk as es
    from edge_sdk.zoo_models import resolve_model

    rm = resolve_model(args.model)
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp, es.load(rm.path) as model:
        sinks = [f"{tmp}/events.jsonl", f"{tmp}/annotated.avi", "http://127.0.0.1:0"]
        p = es.Pipeline("synthetic:?fps=30&image=chelsea&size=640x480", model, task=rm.task or "classify",
                        preprocess=rm.preprocess, labels=rm.labels, sinks=sinks, metrics_every=5)  # fmt: skip
        p.start()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < args.minutes * 60:
                time.sleep(10)
                samples.append((round(time.monotonic() - t0, 1), round(rss_mib(), 1)))
                if not args.json:
                    print(f"  t={samples[-1][0]:6.0f} s  RSS {samples[-1][1]:7.1f} MiB  results {p.stats.results}",
                          flush=True)  # fmt: skip
        finally:
            p.stop()
        m = p.metrics()
    warm = next((r for t, r in samples if t >= args.warmup), samples[-1][1])
    after = [r for t, r in samples if t >= args.warmup]
    growth = (max(after) / warm - 1) if after else 0.0
    out = {"minutes": args.minutes, "rss_at_warmup_mib": warm, "rss_max_after_mib": max(after or [warm]),
           "rss_end_mib": samples[-1][1], "growth": round(growth, 4), "passed": growth <= 0.10,
           "results": m["results"], "fps": m["fps"], "samples": samples}  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"RSS at {args.warmup:g} s {warm} MiB, max after {out['rss_max_after_mib']} MiB, end "
              f"{out['rss_end_mib']} MiB: growth {growth:+.1%} ({'PASS' if out['passed'] else 'MISS'}, target <= 10%); "
              f"{m['results']} results at {m['fps']} fps")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
