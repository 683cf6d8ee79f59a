"""``edge-sdk reshape MODEL -o OUT --input-shape NAME=D1,D2,..``: fix dynamic input dims for NPUs and delegates."""

from __future__ import annotations

import argparse

from edge_sdk.cli.base import Command, emit_json, parse_shapes


class ReshapeCommand(Command):
    name = "reshape"
    help = "write a copy of an ONNX or OpenVINO model with static input shapes (NPUs, Edge TPU, QNN need them)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", help="a .onnx or OpenVINO .xml model")
        parser.add_argument("-o", "--output", default=None, help="output file (default: <stem>_static<ext>)")
        parser.add_argument(
            "--input-shape", action="append", metavar="NAME=D1,D2,..", help="static shape of an input (default: 1s)"
        )

    def run(self, args: argparse.Namespace) -> int:
        import edge_sdk
        from edge_sdk.reshape import reshape

        out = reshape(args.model, parse_shapes(args.input_shape) or None, args.output)
        inputs = {s.name: list(s.shape) for s in edge_sdk.load(out).inputs}
        if args.json:
            emit_json({"output": str(out), "inputs": inputs})
        else:
            print(f"wrote {out}: " + ", ".join(f"{k}{v}" for k, v in inputs.items()))
        return 0
