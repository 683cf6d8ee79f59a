"""Pruning's must-show figures on the real EfficientNet-Lite0, in one run.

Channel pruning at 25% / 50% with distillation fine-tuning on calibration-split crops (never the held-out
split), magnitude pruning at 50% / 80%, each converted to ONNX + OpenVINO through ``converters.convert``
(validated against the *unpruned* original on held-out real crops): MACs, params, file size and gzip size,
latency via ``edge-sdk bench`` (best p50 of interleaved rounds, each in a fresh process), top-1 agreement
before/after fine-tuning; and prune + int8 + export in one ``edge-sdk convert`` call.

    .venv/bin/python benchmarks/prune_report.py [--out .cache/prune_report] [--samples 200] [--finetune 1000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from converters import convert
from converters.prune import PruneSpec
from edge_sdk.bench import benchmark_isolated
from edge_sdk.summary import summarize

ZOO = "zoo:efficientnet-lite0"
BACKENDS = {".onnx": "onnxruntime", ".xml": "openvino"}


def gz_size(path: Path) -> int:
    files = [path.with_suffix(".bin"), path] if path.suffix == ".xml" else [path]
    return sum(len(gzip.compress(f.read_bytes(), 6)) for f in files)


def run_variant(label: str, out: Path, args: argparse.Namespace, spec: PruneSpec | None) -> list[dict[str, Any]]:
    start = time.monotonic()
    precisions = ["fp32", "int8"] if spec is not None and spec.method == "channel" and args.int8 else ["fp32"]
    result = convert(ZOO, to=["onnx", "openvino"], precision=precisions, calibration="photos:300",
                     validate_samples=args.samples, output_dir=out / label, prune=spec, allow_degraded=True,
                     progress=True)  # fmt: skip
    manifest = json.loads(result.manifest_path.read_text())
    pruning = manifest.get("pruning") or {}
    rows = []
    for a in result.artifacts:
        summary = summarize(a.path.with_suffix(".xml"))  # OpenVINO IR has static shapes: MACs of every conv
        rows.append({
            "variant": label, "artifact": a.path.name, "path": str(a.path), "precision": a.precision,
            "backend": BACKENDS[a.path.suffix], "macs": summary.macs, "params": summary.params,
            "size_bytes": a.size_bytes, "gzip_bytes": gz_size(a.path), "top1": a.metrics[0].top1_agreement,
            "cosine": a.metrics[0].cosine,
            "top1_before_finetune": pruning.get("agreement_before_finetune"),
            "top1_after_finetune": pruning.get("agreement_after_finetune"),
            "finetune": pruning.get("finetune"), "sparsity": pruning.get("sparsity"),
            "seconds": round(time.monotonic() - start, 1),
        })  # fmt: skip
    print(f"{label}: {time.monotonic() - start:.0f} s", flush=True)
    return rows


def bench_all(rows: list[dict[str, Any]], rounds: int, runs: int, threads: int) -> None:
    """Best p50 over ``rounds`` interleaved passes (each model in a fresh process): robust to a busy machine."""
    for r in rows:
        r["p50_ms"] = float("inf")
    for _ in range(rounds):
        for r in rows:
            b = benchmark_isolated(r["path"], backend=r["backend"], threads=threads, runs=runs, warmup=10)
            r["p50_ms"] = min(r["p50_ms"], b.p50_ms)


def one_call_int8(out: Path, samples: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "edge_sdk.cli.main", "convert", ZOO, "--prune", "magnitude:0.5", "--to",
           "onnx,openvino", "--precision", "int8", "--calib", "photos:300", "--validate-samples", str(samples),
           "-o", str(out / "one_call_int8"), "--json"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"command": " ".join(cmd[2:]), "error": proc.stderr.strip()[-500:]}
    data = json.loads(proc.stdout)
    return {
        "command": "edge-sdk " + " ".join(cmd[4:]),
        "passed": data["passed"],
        "artifacts": [
            {"artifact": a["path"], "top1": a["metrics"][0]["top1_agreement"], "size": a["size_bytes"]}
            for a in data["artifacts"]
        ],  # fmt: skip
    }


def table(rows: list[dict[str, Any]]) -> str:
    base = {r["backend"]: r for r in rows if r["variant"] == "original" and r["precision"] == "fp32"}
    head = ("| variant | artifact | runtime | MACs (M) | params (M) | size MB | gzip MB | p50 ms | lat/MAC ratio "
            "| top-1 agree (before -> after FT) |")  # fmt: skip
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        b = base[r["backend"]]
        ratio = (r["p50_ms"] / b["p50_ms"]) / (r["macs"] / b["macs"]) if r["precision"] == "fp32" else float("nan")
        agree = f"{r['top1']:.1%}"
        if r["top1_before_finetune"] is not None and r["top1_after_finetune"] is not None and r["precision"] == "fp32":
            agree = f"{r['top1_before_finetune']:.1%} -> {r['top1_after_finetune']:.1%} (artifact {r['top1']:.1%})"
        lines.append(
            f"| {r['variant']} | {r['artifact']} | {r['backend']} | {r['macs'] / 1e6:.0f} | {r['params'] / 1e6:.2f} "
            f"| {r['size_bytes'] / 2**20:.2f} | {r['gzip_bytes'] / 2**20:.2f} | {r['p50_ms']:.2f} | {ratio:.2f} "
            f"| {agree} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(".cache/prune_report"))
    p.add_argument("--samples", type=int, default=200, help="held-out crops for agreement (>= 200)")
    p.add_argument("--finetune", type=int, default=800, help="calibration-split crops for distillation")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--prune-tied", dest="keep_tied", action="store_false", help="also cut residual-tied channels")
    p.add_argument("--channel", default="0.25,0.5")
    p.add_argument("--magnitude", default="0.5,0.8")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="inference threads when timing (1: steadiest)")
    p.add_argument("--no-int8", dest="int8", action="store_false")
    p.add_argument("--retable", action="store_true", help="recompute MACs and the table from an earlier run")
    args = p.parse_args()
    if args.retable:
        report = json.loads((args.out / "prune_report.json").read_text())
        for r in report["rows"]:
            r["macs"] = summarize(Path(r["path"]).with_suffix(".xml")).macs
        (args.out / "prune_report.json").write_text(json.dumps(report, indent=2, default=str))
        (args.out / "prune_report.md").write_text(table(report["rows"]) + "\n")
        print(table(report["rows"]))
        return 0
    import torch

    torch.set_num_threads(2)
    rows = run_variant("original", args.out, args, None)
    for a in [float(v) for v in args.channel.split(",") if v]:
        spec = PruneSpec(method="channel", amount=a, finetune=f"photos:{args.finetune}", epochs=args.epochs,
                         lr=args.lr, finetune_limit=args.finetune, keep_tied=args.keep_tied)  # fmt: skip
        rows += run_variant(f"channel {a:.0%}", args.out, args, spec)
    for a in [float(v) for v in args.magnitude.split(",") if v]:
        rows += run_variant(f"magnitude {a:.0%}", args.out, args, PruneSpec(method="magnitude", amount=a))
    bench_all(rows, args.rounds, args.runs, args.threads)
    one_call = one_call_int8(args.out, args.samples)
    report = {"rows": rows, "one_call_int8": one_call, "threads": args.threads, "args": vars(args)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prune_report.json").write_text(json.dumps(report, indent=2, default=str))
    md = table(rows)
    (args.out / "prune_report.md").write_text(md + "\n")
    print(md)
    print(json.dumps(one_call, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
