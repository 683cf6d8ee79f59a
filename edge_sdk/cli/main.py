"""``edge-sdk`` entry point: builds the parser from the verb registry and maps errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from edge_sdk.cli.base import Command

#: verb -> "module:Class"; modules are imported only when building the parser (they import little), and only the
#: named verb's when the command line starts with one (``edge-sdk run ...`` does not import ``convert``'s module).
COMMANDS: dict[str, str] = {
    "info": "edge_sdk.cli.info:InfoCommand",
    "bench": "edge_sdk.cli.bench:BenchCommand",
    "zoo": "edge_sdk.cli.zoo:ZooCommand",
    "convert": "edge_sdk.cli.convert:ConvertCommand",
    "diff": "edge_sdk.cli.diff:DiffCommand",
    "prune": "edge_sdk.cli.prune:PruneCommand",
    "demo": "edge_sdk.cli.demo:DemoCommand",
    "devices": "edge_sdk.cli.devices:DevicesCommand",
    "reshape": "edge_sdk.cli.reshape:ReshapeCommand",
    "run": "edge_sdk.cli.run:RunCommand",
    "keygen": "edge_sdk.cli.bundle:KeygenCommand",
    "bundle": "edge_sdk.cli.bundle:BundleCommand",
    "verify": "edge_sdk.cli.bundle:VerifyCommand",
    "serve": "edge_sdk.cli.serve:ServeCommand",
    "agent": "edge_sdk.cli.agent:AgentCommand",
    "rollout": "edge_sdk.cli.rollout:RolloutCommand",
}


def _load(spec: str) -> Command:
    module, _, cls = spec.partition(":")
    return getattr(importlib.import_module(module), cls)()


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    """The ``edge-sdk`` parser with every verb, or with the verb ``only`` alone (what ``main`` builds for a command
    line that starts with a verb: that verb's parser and usage are the same, and no other verb's module is imported).
    """
    from edge_sdk import __version__

    parser = argparse.ArgumentParser(prog="edge-sdk", description="Convert, inspect, benchmark and run edge models.")
    parser.add_argument("--version", action="version", version=f"edge-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {}
    for name, spec in COMMANDS.items():
        if only is not None and name != only:
            continue
        cmd = _load(spec)
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
        p.add_argument("--verbose", "-v", action="store_true", help="show the underlying tools' logs and tracebacks")
        commands[name] = cmd
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    from edge_sdk._quiet import quiet_third_party
    from edge_sdk.errors import EdgeSDKError

    words = list(sys.argv[1:] if argv is None else argv)
    # a verb first: everything after it is that verb's; anything else (--help, --version, a typo) gets every verb
    parser, commands = build_parser(words[0] if words and words[0] in COMMANDS else None)
    args = parser.parse_args(words)
    if not args.command:
        parser.print_help()
        return 2
    quiet_third_party(args.verbose)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="edge-sdk: %(message)s")
    try:
        return commands[args.command].run(args)
    except EdgeSDKError as e:
        if args.verbose:
            raise
        print(f"edge-sdk {args.command}: error: {e}", file=sys.stderr)
        _json_error(args, e, e.exit_code)
        return e.exit_code
    except ModuleNotFoundError as e:  # an optional package this verb needs: one line naming the extra
        from edge_sdk.cli.base import missing_extra

        typed = missing_extra(args.command, e)
        if typed is None or args.verbose:
            raise
        print(f"edge-sdk {args.command}: error: {typed}", file=sys.stderr)
        _json_error(args, typed, 2)
        return 2
    except BrokenPipeError:  # `edge-sdk info m.onnx --json | head`: the reader left, not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stays open until exit
        return 0
    except KeyboardInterrupt:
        print(f"edge-sdk {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug of ours: one line, the traceback with --verbose
        if args.verbose:
            raise
        print(
            f"edge-sdk {args.command}: internal error: {type(e).__name__}: {e} "
            "(rerun with --verbose for the traceback)",
            file=sys.stderr,
        )
        return 1


def _json_error(args: argparse.Namespace, error: BaseException, code: int) -> None:
    """With ``--json``, the error is machine output too: one JSON object on stdout (the line stays on stderr),
    unless the verb already wrote its JSON document (its report, then a non-zero exit)."""
    from edge_sdk.cli import base

    if getattr(args, "json", False) and not base.DOCUMENT_WRITTEN:
        import json

        print(json.dumps({"command": args.command, "error": str(error), "type": type(error).__name__,
                          "exit_code": code}), flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
