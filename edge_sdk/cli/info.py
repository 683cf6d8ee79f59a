"""``edge-sdk info MODEL``: what is inside a model, without running it."""

from __future__ import annotations

import argparse

from edge_sdk.cli.base import Command, emit_json, format_table, human_bytes, human_count
from edge_sdk.tensor_spec import QuantParams


class InfoCommand(Command):
    name = "info"
    help = "show a model's format, tensors, quantization, operators, parameters and MACs"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", help="path to a .onnx, .tflite or OpenVINO .xml file")
        parser.add_argument("--top", type=int, default=15, help="operator types to list (default 15)")

    def run(self, args: argparse.Namespace) -> int:
        from edge_sdk.summary import summarize

        s = summarize(args.model)
        if args.json:
            emit_json(s.to_dict())
            return 0
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
        return 0


def _quant_text(q: QuantParams) -> str:
    if q.axis is None:
        return f"scale={float(q.scale):.6g} zp={int(q.zero_point)}"
    return f"per-channel (axis {q.axis}, {len(q.scale)} scales)"
