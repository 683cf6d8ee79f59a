"""``edge-sdk info MODEL``: what is inside a model, without running it."""

from __future__ import annotations

import argparse
from typing import Any

from edge_sdk.cli.base import (
    Command,
    add_probe_arguments,
    emit_json,
    format_table,
    human_bytes,
    human_count,
    probe_model,
)
from edge_sdk.tensor_spec import QuantParams


class InfoCommand(Command):
    name = "info"
    help = "show a model's format, tensors, quantization, operators, parameters and MACs"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", help="path to a .onnx, .tflite or OpenVINO .xml file")
        parser.add_argument("--top", type=int, default=15, help="operator types to list (default 15)")
        parser.add_argument(
            "--device",
            default=None,
            help="operator coverage on a target: cpu, NPU, GPU (OpenVINO), cuda, tensorrt, qnn (ONNX Runtime), "
            "edgetpu, gpu (TFLite delegates) or a profile (intel-npu, jetson-orin, ...)",
        )
        parser.add_argument(
            "--backend", default=None, help="runtime for --device (default: natural one for the format)"
        )
        parser.add_argument(
            "--strict", action="store_true", help="with --device: any CPU fallback is an error (exit 3)"
        )
        add_probe_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        from edge_sdk.summary import summarize

        if args.strict and not args.device:
            from edge_sdk.errors import CLIUsageError

            raise CLIUsageError("--strict needs --device D (the accelerator whose coverage must be complete)")
        probe_model(args, args.model, kind="info", backend=args.backend, device=args.device or "auto")
        s = summarize(args.model)
        report = None
        if args.device:
            from edge_sdk.coverage import coverage

            report = coverage(args.model, args.device, backend=args.backend)
        if args.json:
            emit_json({**s.to_dict(), "coverage": report.to_dict()} if report else s.to_dict())
            return _strict(report, args.strict)
        print(f"model         {s.path}")
        print(f"format        {s.format}")
        print(f"size          {human_bytes(s.size_bytes)}")
        print(f"quantization  {s.quantization}")
        by_dtype = ", ".join(f"{k}: {human_count(v)}" for k, v in s.weight_dtypes.items()) or "-"
        print(f"parameters    {human_count(s.params)}  ({by_dtype})")
        print(f"MACs          {human_count(s.macs)}  ({s.macs_note})")
        print()
        rows = []
        for kind, specs in (("input", s.inputs), ("output", s.outputs)):
            for t in specs:
                q = _quant_text(t.quant) if t.quant else ""
                rows.append([kind, t.name, t.shape_str(), t.dtype.name, t.layout or "", q])
        print(format_table(["", "name", "shape", "dtype", "layout", "quantization"], rows))
        print()
        top = s.ops.most_common(args.top)
        rest = sum(s.ops.values()) - sum(n for _, n in top)
        rows = [[op, n] for op, n in top] + ([["(other)", rest]] if rest else [])
        print(format_table(["operator", "count"], rows))
        if report is not None:
            _print_coverage(report)
        return _strict(report, args.strict)


def _print_coverage(report: Any) -> None:
    print(f"\ncoverage on {report.target} ({report.backend}): {report.summary()}")
    off = report.off_target
    if off:
        rows = [[n.name, n.op, n.placed_on or "-", n.status] for n in off[:50]]
        print(format_table(["node", "operator", "runs on", "status"], rows))
        if len(off) > 50:
            print(f"... and {len(off) - 50} more")
    for note in report.notes:
        print(f"note: {note}")


def _strict(report: Any, strict: bool) -> int:
    if strict and report is not None:
        report.check_strict()
    return 0


def _quant_text(q: QuantParams) -> str:
    if q.axis is None:
        return f"scale={float(q.scale):.6g} zp={int(q.zero_point)}"
    return f"per-channel (axis {q.axis}, {len(q.scale)} scales)"
