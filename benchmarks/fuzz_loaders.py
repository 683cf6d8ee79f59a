"""Fuzz the device-side loaders with mutated ONNX, TFLite and OpenVINO IR files.

Each case is a seed model (built in code, cached: ``benchmarks/fuzz/seeds.py``) with one to a few
mutations, structure-aware (ONNX fields through ``onnx``, TFLite flatbuffer offsets/lengths/shape
ints, OpenVINO XML attributes/ports/edges and its ``.bin``) and/or raw bytes. It runs the user path
(``edge_sdk.load``, ``model.run`` on zeros, ``edge_sdk.summary.summarize``) in a persistent worker
child under an address-space cap and a per-case timeout, and each outcome is classified:

    ok / typed (EdgeSDKError) / untyped (any other exception) / crash (signal) / hang (timeout) /
    memory (allocation failed under the cap or peak RSS past the budget) / bad_spec

Reproducers of every finding (all but ok/typed) are written under ``--out``. The same ``--seed``
(with the same cached seed models) makes the same cases; ``--list`` prints them without running.
Why not atheris: its wheel installs for CPython 3.11, but libFuzzer runs cases in-process (a native
crash ends the campaign instead of being counted), its coverage guidance does not reach into the
uninstrumented runtimes, and its runs are not reproducible from a seed number.

    python benchmarks/fuzz_loaders.py --cases 2000 --seed 1 --out /tmp/fuzz_findings
    python benchmarks/fuzz_loaders.py --cases 200 --formats onnx --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

from case import Case  # noqa: E402
from runner import REPO, SEVERITY, make_case, run_campaign  # noqa: E402
from seeds import FORMATS, default_cache_dir, ensure_seeds, main_file  # noqa: E402

MiB = 1 << 20
PARENT_ADDRESS_SPACE = 8 << 30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=1000, help="cases per format (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="campaign seed: the same seed gives the same cases")
    p.add_argument("--formats", default=",".join(FORMATS), help="comma-separated: onnx,tflite,openvino")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per case before it counts as a hang")
    p.add_argument("--memory", type=int, default=1024,
                   help="MiB a case may add to the worker (address space cap and peak RSS); the product is told "
                        "half of it (EDGE_SDK_MAX_MODEL_MEMORY), the rest is runtime overhead")  # fmt: skip
    p.add_argument("--out", type=Path, default=REPO / ".cache" / "fuzz_findings", help="folder for reproducers")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--safe", action="store_true", help="load with safe=True (the product's own isolated probe)")
    p.add_argument("--cache", type=Path, default=default_cache_dir(), help="where seed models are cached")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--list", action="store_true", help="print each case's digest and mutations; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p.parse_args(argv)


def report(results: list, formats: list[str], seconds: dict[str, float]) -> dict:
    """Counts per format and outcome, typed error classes, and one row per distinct finding."""
    per: dict[str, dict] = {}
    findings: dict[tuple, dict] = {}
    for fmt in formats:
        rows = [(r, w) for r, w in results if r.case.fmt == fmt]
        outcomes = Counter(r.kind for r, _ in rows)
        per[fmt] = {
            "cases": len(rows),
            "outcomes": {k: outcomes.get(k, 0) for k in reversed(SEVERITY)},
            "typed_errors": dict(Counter(r.signature for r, _ in rows if r.kind == "typed").most_common()),
            "skipped_runs": sum(1 for r, _ in rows for s in r.detail.get("steps", []) if s["outcome"] == "skipped"),
            "seconds": round(seconds.get(fmt, 0.0), 1),
        }
        for r, where in rows:
            if r.kind in ("ok", "typed"):
                continue
            f = findings.setdefault((fmt, r.kind, r.signature), {
                "format": fmt, "kind": r.kind, "signature": r.signature, "count": 0, "reproducers": where,
                "example_case": r.case.index, "example_mutations": r.case.mutations,
            })  # fmt: skip
            f["count"] += 1
    return {
        "formats": per,
        "findings": sorted(findings.values(), key=lambda f: (SEVERITY.index(f["kind"]), -f["count"])),
    }


def markdown(rep: dict, args: argparse.Namespace) -> str:
    cols = list(reversed(SEVERITY))
    lines = [f"Fuzz campaign: seed {args.seed}, {args.cases} cases per format, timeout {args.timeout:g} s, "
             f"memory {args.memory} MiB, jobs {args.jobs}", "",
             "| format | cases | " + " | ".join(cols) + " | run skipped | seconds |",
             "|---" * (len(cols) + 4) + "|"]  # fmt: skip
    for fmt, row in rep["formats"].items():
        counts = " | ".join(str(row["outcomes"][c]) for c in cols)
        lines.append(f"| {fmt} | {row['cases']} | {counts} | {row['skipped_runs']} | {row['seconds']} |")
    lines += ["", "Typed errors by class:", ""]
    for fmt, row in rep["formats"].items():
        lines.append(f"- {fmt}: " + (", ".join(f"{k} {v}" for k, v in row["typed_errors"].items()) or "none"))
    lines += ["", f"Findings ({len(rep['findings'])} distinct):", ""]
    if rep["findings"]:
        lines += ["| format | kind | count | signature | reproducers |", "|---|---|---|---|---|"]
        for f in rep["findings"]:
            sig = f["signature"].replace("|", "\\|")
            lines.append(f"| {f['format']} | {f['kind']} | {f['count']} | {sig} | {f['reproducers']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        print(f"unknown format(s) {unknown}; choose from {list(FORMATS)}", file=sys.stderr)
        return 2
    seeds = ensure_seeds(args.cache, tuple(formats))
    # case generation must stay small: a mutator that tries to allocate gigabytes fails (and is reported)
    resource.setrlimit(resource.RLIMIT_AS, (PARENT_ADDRESS_SPACE, resource.getrlimit(resource.RLIMIT_AS)[1]))
    if args.list:
        for fmt in formats:
            for i in range(args.cases):
                c = make_case(fmt, i, args.seed, seeds)
                print(json.dumps({"format": fmt, "index": i, "seed_model": c.seed_name, "digest": c.digest(),
                                  "mutations": c.mutations}))  # fmt: skip
        return 0
    work = Path(tempfile.mkdtemp(prefix="edge_sdk_fuzz_"))
    out = args.out
    memory = args.memory * MiB
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "TF_CPP_MIN_LOG_LEVEL": "3", "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "EDGE_SDK_MAX_MODEL_MEMORY": str(memory // 2),
           "TMPDIR": str(work)}  # fmt: skip
    warmup = []
    for fmt in formats:  # one unmutated seed per format, so runtimes' one-time allocations precede the cap
        files = {k: v for k, v in seeds[fmt][0].items() if k != "__name__"}
        warmup.append(str(Case(fmt, -1, "", main_file(files, fmt), files).write(work / "warmup" / fmt)))
    cfg = {"warmup": warmup, "address_space": memory, "safe": args.safe, "timeout": args.timeout,
           "max_input_bytes": 64 * MiB, "startup_timeout": 300}  # fmt: skip
    results, seconds = [], {}
    done = Counter()

    def progress(res) -> None:
        done[res.kind] += 1
        n = sum(done.values())
        if not args.quiet and (n % 100 == 0 or res.kind not in ("ok", "typed")):
            note = f" {res.kind}: {res.signature[:150]}" if res.kind not in ("ok", "typed") else ""
            print(f"[{res.case.fmt} {n}] {dict(done)}{note}", file=sys.stderr, flush=True)

    try:
        for fmt in formats:
            cases = [make_case(fmt, i, args.seed, seeds) for i in range(args.cases)]
            t0 = time.monotonic()
            results += run_campaign(cases, cfg, jobs=args.jobs, workdir=work, out=out, env=env, rss_budget=memory,
                                    progress=progress)  # fmt: skip
            seconds[fmt] = time.monotonic() - t0
            done.clear()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rep = report(results, formats, seconds)
    rep["command"] = "python benchmarks/fuzz_loaders.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rep["out"] = str(out)
    print(json.dumps(rep, indent=1) if args.json else markdown(rep, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
