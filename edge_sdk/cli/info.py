"""``edge-sdk info MODEL``: what is inside a model, without running it."""

from __future__ import annotations

import argparse

from edge_sdk.cli.base import Command, emit_json, format_table, human_bytes, human_count


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
        print(f"parameters    {human_count(s.params)}  ({', '.join(f'{k}: {human_count(v)}' for k, v in s.weight_dtypes.items()) or '-'})")
        print(f"MACs          {human_count(s.macs)}  ({s.macs_note})")
        print()
        rows = []
        for kind, specs in (("input", s.inputs), ("output", s.outputs)):
            for t in specs:
                q = f"scale={float(t.quant.scale if t.quant.axis is None else t.quant.scale[0]):.6g} zp={t.quant.zero_point if t.quant.axis is None else '...'}" if t.quant else ""
                rows.append([kind, t.name, t.shape_str(), t.dtype.name, t.layout or "", q])
        print(format_table(["", "name", "shape", "dtype", "layout", "quantization"], rows))
        print()
        top = s.ops.most_common(args.top)
        rest = sum(s.ops.values()) - sum(n for _, n in top)
        rows = [[op, n] for op, n in top] + ([["(other)", rest]] if rest else [])
        print(format_table(["operator", "count"], rows))
        return 0
