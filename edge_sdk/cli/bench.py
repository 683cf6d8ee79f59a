"""``edge-sdk bench MODEL... [--backend B,...]``: latency, throughput and memory, one row per run."""

from __future__ import annotations

import argparse
from typing import Any

from edge_sdk.cli.base import (
    Command,
    add_probe_arguments,
    emit_json,
    format_table,
    human_bytes,
    parse_shapes,
    probe_model,
)


class BenchCommand(Command):
    name = "bench"
    help = "time models on backends: load, first inference, p50/p90/p99 latency, throughput, peak RSS"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("models", nargs="+", help="one or more model files")
        parser.add_argument(
            "--backend", default=None, help="backend(s), comma-separated: onnxruntime, litert, openvino (default: best)"
        )
        parser.add_argument("--threads", type=int, default=None, help="inference threads (default: runtime's)")
        parser.add_argument("--runs", type=int, default=100, help="timed runs (default 100)")
        parser.add_argument("--warmup", type=int, default=10, help="untimed runs before timing (default 10)")
        parser.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,..", help="fix a dynamic input shape")
        parser.add_argument(
            "--cold-warm",
            action="store_true",
            help="also time the start (load + first inference) with an empty compiled-model cache and a filled one",
        )
        add_probe_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        from edge_sdk.bench import benchmark_isolated
        from edge_sdk.errors import CLIUsageError

        if args.runs < 1 or args.warmup < 0:
            raise CLIUsageError("--runs must be >= 1 and --warmup >= 0")
        backends = [b.strip() for b in args.backend.split(",")] if args.backend else [None]
        shapes = parse_shapes(args.input_shape)
        pairs, skipped = readable_pairs(args.models, backends)
        for model, backend in pairs:
            probe_model(args, model, backend=backend, threads=args.threads, input_shapes=shapes)
        results = []
        for model, backend in pairs:
            results.append(
                benchmark_isolated(
                    model,
                    backend=backend,
                    threads=args.threads,
                    runs=args.runs,
                    warmup=args.warmup,
                    input_shapes=shapes or None,
                    fill_dynamic=False,
                    verbose=args.verbose,
                )
            )
        starts = []
        if args.cold_warm:
            from edge_sdk.bench import cold_warm

            starts = [
                cold_warm(m, backend=b, threads=args.threads, input_shapes=shapes or None, fill_dynamic=False)
                for m, b in pairs
            ]
        if args.json:
            emit_json(_json_rows(results, starts, skipped))
            return 0
        _print_results(results)
        if starts:
            _print_starts(starts)
        for s in skipped:
            print(f"skipped: {s['model']} on {s['backend']}: {s['reason']}")
        return 0


def readable_pairs(models: list[str], backends: list[str | None]) -> tuple[list[tuple[str, str | None]], list[dict]]:
    """The (model, backend) pairs to time, and the ones skipped because the backend cannot read that format.

    A backend that cannot read any given model, or a model no given backend reads, is a CLIUsageError.
    """
    from edge_sdk.backends import canonical_name, get_backend_class
    from edge_sdk.errors import CLIUsageError
    from edge_sdk.formats import inspect_file

    formats = {m: inspect_file(m).format for m in models}
    pairs, skipped = [], []
    for model in models:
        for backend in backends:
            if backend is not None:
                cls = get_backend_class(canonical_name(backend))
                if formats[model] not in cls.formats:
                    reason = f"{cls.name} cannot read {formats[model]} files (it reads {', '.join(cls.formats)})"
                    skipped.append({"model": model, "backend": cls.name, "status": "skipped", "reason": reason})
                    continue
            pairs.append((model, backend))
    unread = [m for m in models if all(p[0] != m for p in pairs)]
    if unread:
        raise CLIUsageError(
            f"no backend given can read {', '.join(unread)}: "
            + "; ".join(s["reason"] for s in skipped if s["model"] in unread)
        )
    return pairs, skipped


def _json_rows(results: list[Any], starts: list[Any], skipped: list[dict]) -> list[dict]:
    """One list, whatever was asked: a row per timed pair (with its start times under ``cold_warm``
    when measured), then a row per skipped pair (``status: skipped``, ``reason``)."""
    rows = []
    for i, r in enumerate(results):
        row = {"status": "ok", **r.to_dict()}
        if starts:
            row["cold_warm"] = starts[i].to_dict()
        rows.append(row)
    return rows + skipped


def _print_results(results: list[Any]) -> None:
    rows = [
        [
            r.model,
            r.backend,
            r.shape_text(),
            f"{r.load_ms:.1f}",
            f"{r.first_inference_ms:.2f}",
            f"{r.p50_ms:.3f}",
            f"{r.p90_ms:.3f}",
            f"{r.p99_ms:.3f}",
            f"{r.throughput_ips:.1f}",
            f"{r.peak_rss_mb:.0f}",
        ]
        for r in results
    ]
    headers = ["model", "backend", "input shape", "load ms", "first ms", "p50 ms", "p90 ms", "p99 ms", "inf/s",
               "peak RSS MB"]  # fmt: skip
    print(format_table(headers, rows))
    if len(results) > 1:
        best = min(results, key=lambda r: r.p50_ms)
        print(f"\nfastest p50: {best.model} on {best.backend}; others relative to it:")
        for r in results:
            print(f"  {r.model} [{r.backend}]: {r.p50_ms / best.p50_ms:.2f}x")


def _print_starts(starts: list[Any]) -> None:
    rows = [
        [
            s.model,
            s.backend,
            f"{s.cold_load_ms:.1f}",
            f"{s.cold_first_inference_ms:.2f}",
            f"{s.warm_load_ms:.1f}",
            f"{s.warm_first_inference_ms:.2f}",
            f"{s.speedup:.2f}x",
            human_bytes(s.cache_bytes),
        ]
        for s in starts
    ]
    headers = ["model", "backend", "cold load ms", "cold first ms", "warm load ms", "warm first ms", "speedup", "cache"]
    print("\nstart time (fresh process each; warm = compiled-model cache from the cold start):")
    print(format_table(headers, rows))
    for s in starts:
        if s.note:
            print(f"note: {s.model} [{s.backend}]: {s.note}")
