"""``edge-sdk zoo list`` / ``edge-sdk zoo path NAME``: the real pretrained models the installed packages carry.

The file ``zoo path`` prints carries the model's record inside it (task, preprocessing, labels), so
``edge-sdk run $(edge-sdk zoo path centerface) --source photo.jpg`` needs no flags, even on a copy of the file
alone. A PyTorch entry's file is an fp32 ONNX converted once (``--format pt2``: its torch.export program).
"""

from __future__ import annotations

import argparse
from typing import Any

from edge_sdk.cli.base import Command, emit_json, format_table, parse_shapes


class ZooCommand(Command):
    name = "zoo"
    help = "list the real pretrained models (from installed pip packages), or materialize one and print its path"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("action", choices=("list", "path"), help="list: table of models; path: write one, print it")
        parser.add_argument("name", nargs="?", help="zoo model name (for 'path'), e.g. centerface")
        parser.add_argument("--cache-dir", default=None, help="where files are written (default: per-user cache)")
        parser.add_argument(
            "--input-shape", metavar="NAME=D1,D2,..", help="centerface: e.g. input=1,3,480,640 (or dynamic)"
        )
        parser.add_argument("--variant", default=None, help="silero-vad: 16k (static, default) or op16")
        parser.add_argument("--format", choices=("onnx", "pt2"), default=None,
                            help="efficientnet-lite0 (PyTorch): onnx (default: converted once, runs, carries its "
                                 "metadata) or pt2 (the torch.export program, a conversion source)")  # fmt: skip

    def run(self, args: argparse.Namespace) -> int:
        from converters import zoo
        from edge_sdk.errors import CLIUsageError

        if args.action == "list":
            if args.name:
                raise CLIUsageError("`edge-sdk zoo list` takes no model name; use `edge-sdk zoo path NAME`")
            infos = [e.info() for e in zoo.entries()]
            if args.json:
                emit_json(infos)
                return 0
            rows = [[i["name"], i["task"], i["format"], i["package"], "yes" if i["installed"] else "no"] for i in infos]
            print(format_table(["name", "task", "format", "package", "installed"], rows))
            return 0
        if not args.name:
            raise CLIUsageError("`edge-sdk zoo path` needs a model name; see `edge-sdk zoo list`")
        entry = zoo.get(args.name)
        opts = {}
        if args.input_shape is not None:
            opts["input_shape"] = zoo_input_shape(entry, args.input_shape)
        if args.variant is not None:
            opts["variant"] = args.variant
        if entry.source_format == "torch":
            opts["export"] = args.format or "onnx"  # a file to point at: runnable ONNX, or the torch.export .pt2
        elif args.format == "pt2":
            raise CLIUsageError(f"--format pt2: zoo model '{entry.name}' is an ONNX file, not a PyTorch model")
        path = entry.materialize(args.cache_dir, **opts)
        if args.json:
            emit_json({"name": entry.name, "path": str(path), "preprocess": entry.preprocess(**_pre(opts)).to_dict()})
        else:
            print(path)
        return 0


def _pre(opts: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in opts.items() if k != "export"}


def zoo_input_shape(entry: Any, text: str) -> Any:
    """``--input-shape`` of ``zoo path`` in the syntax every verb takes (``input=1,3,480,640``) -> a tuple;
    ``dynamic`` and the older ``1x3x480x640`` pass through to the entry, which checks them."""
    from edge_sdk.errors import CLIUsageError

    if "=" not in text:
        return text
    ((name, shape),) = parse_shapes([text]).items()
    names = tuple(getattr(entry, "input_names", ()) or ())
    if "input_shape" not in getattr(entry, "options", {}):
        raise CLIUsageError(f"zoo model '{entry.name}' takes no --input-shape")
    if names and name not in names:
        raise CLIUsageError(
            f"--input-shape names input '{name}'; {entry.name}'s input is {', '.join(names)}, "
            f"e.g. --input-shape {names[0]}=1,3,480,640"
        )
    return shape
