"""``edge-sdk prune SRC --method magnitude|channel --amount 0.5 [--finetune DATA --epochs N] -o OUT``:
prune (and fine-tune), save the pruned model, convert it, and validate it against the original."""

from __future__ import annotations

import argparse
from typing import Any

from edge_sdk.cli.base import (
    Command,
    emit_json,
    format_table,
    human_bytes,
    human_count,
    no_new_folder_on_error,
    require_modules,
)
from edge_sdk.cli.convert import (
    _table,
    add_preprocess_arguments,
    add_unsafe_pickle_argument,
    convert_options,
    converter_modules,
)


class PruneCommand(Command):
    name = "prune"
    help = "prune a model (magnitude or channel), optionally fine-tune it by distillation, convert and validate it"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("source", help="a .pt2, .keras, .h5, SavedModel folder, .onnx, .tflite, or zoo:NAME")
        parser.add_argument("--method", default="magnitude", choices=["magnitude", "channel"])
        parser.add_argument("--amount", default="0.5", help="fraction in (0, 1) of weights/channels to remove")
        parser.add_argument("--scope", default="layer", choices=["layer", "global"], help="per-layer or global")
        parser.add_argument("--skip", action="append", default=[], metavar="LAYER", help="leave this layer alone")
        parser.add_argument("--include", action="append", default=[], metavar="LAYER",
                            help="prune this layer although a default skip applies")  # fmt: skip
        parser.add_argument("--no-default-skips", action="store_true",
                            help="also prune the first conv, classifier, depthwise and tiny layers")  # fmt: skip
        parser.add_argument("--layer-amount", action="append", default=[], metavar="LAYER=AMOUNT")
        parser.add_argument("--importance", default="l1", choices=["l1", "l2"], help="channel importance norm")
        parser.add_argument("--round-to", type=int, default=8, help="keep channel counts a multiple of this")
        parser.add_argument("--min-params", type=int, default=1024, help="skip layers with fewer weights")
        parser.add_argument(
            "--keep-tied", action="store_true", help="channel: keep residual-tied channels, cut expansion channels only"
        )
        ft = parser.add_argument_group("fine-tuning (PyTorch sources)")
        ft.add_argument(
            "--finetune", metavar="DATA", help="images (unlabelled: distillation; class folders: labelled), photos:N"
        )
        ft.add_argument("--epochs", type=int, default=3)
        ft.add_argument("--batch-size", type=int, default=32)
        ft.add_argument("--lr", type=float, default=1e-4)
        ft.add_argument("--temperature", type=float, default=3.0)
        ft.add_argument("--finetune-limit", type=int, default=2000, help="at most this many images")
        ft.add_argument("--mixup", type=float, default=0.0,
                        help="distil on mixup blends + flips (Beta alpha, e.g. 1.0; 0: off)")  # fmt: skip
        parser.add_argument("--to", default="onnx", help="targets, comma-separated: tflite,onnx,openvino")
        parser.add_argument("--precision", default="fp32", help="fp32,fp16,int8-dynamic,int8 (comma-separated)")
        parser.add_argument("--calib", help="calibration data for int8 (see `edge-sdk convert --help`)")
        parser.add_argument("--held-out", help="validation data; default: real crops (zoo) or random inputs")
        parser.add_argument("--validate-samples", type=int, default=200, help="held-out samples for agreement")
        parser.add_argument("--min-agreement", type=float, default=0.0,
                            help="exit 3 below this top-1 agreement with the original (default 0: only a "
                                 "destroyed model, within 5 points of chance, fails)")  # fmt: skip
        parser.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,..", help="fix an input's shape")
        parser.add_argument("--list-layers", action="store_true", help="list the prunable layers and exit")
        parser.add_argument("--bench", action="store_true", help="benchmark each artifact (edge-sdk bench)")
        add_unsafe_pickle_argument(parser)
        parser.add_argument("-o", "--output-dir", default="out", help="output folder (default ./out)")
        add_preprocess_arguments(parser, "preprocessing (for image data: --finetune, --calib)")

    def run(self, args: argparse.Namespace) -> int:
        from converters.prune.spec import PruneSpec
        from edge_sdk.errors import CLIUsageError, ValidationFailedError

        if args.validate_samples < 1:
            raise CLIUsageError("--validate-samples must be >= 1")
        require_modules("prune", *converter_modules(args.source, [t.strip() for t in args.to.split(",")]))
        spec = PruneSpec(
            method=args.method,
            amount=args.amount,
            scope=args.scope,
            skip=tuple(args.skip),
            include=tuple(args.include),
            default_skips=not args.no_default_skips,
            layer_amounts=_layer_amounts(args.layer_amount),
            min_params=args.min_params,
            importance=args.importance,
            round_to=args.round_to,
            keep_tied=args.keep_tied,
            finetune=args.finetune,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            temperature=args.temperature,
            finetune_limit=args.finetune_limit,
            mixup=args.mixup,
            min_agreement=args.min_agreement,
            save_source=True,
        )
        if args.list_layers:
            return _list_layers(args, spec)
        from converters import convert
        from converters.cleanup import exit_cleanly_on_signals

        with exit_cleanly_on_signals(), no_new_folder_on_error(args.output_dir):
            result = convert(args.source, **convert_options(args), prune=spec)
        if args.bench:
            from edge_sdk.cli.convert import _bench

            _bench(result, args.verbose)
        import json

        pruning = json.loads(result.manifest_path.read_text())["pruning"]
        if args.json:
            emit_json({"output_dir": str(result.output_dir), "manifest": str(result.manifest_path),
                       "passed": result.passed, "pruning": pruning, "artifacts": result.report})  # fmt: skip
        else:
            print(format_table(*_layer_table(pruning)))
            print()
            print(_summary(pruning))
            print()
            print(format_table(*_table(result)))
            print(f"\nmanifest: {result.manifest_path}")
        if not result.passed:
            bad = [f"{a.path.name} ({'; '.join(a.failures)})" for a in result.artifacts if not a.passed]
            floor = pruning.get("agreement_floor", args.min_agreement)
            why = (
                f"--min-agreement {args.min_agreement:.0%}"
                if floor <= args.min_agreement
                else f"{floor:.0%}, within 5 points of chance: the pruning destroyed the model (try a smaller "
                "--amount, or --finetune)"
            )
            raise ValidationFailedError(f"{len(bad)} pruned artifact(s) below top-1 agreement {why}: {', '.join(bad)}")
        return 0


def _layer_amounts(items: list[str]) -> dict[str, float]:
    from edge_sdk.errors import CLIUsageError

    out = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            raise CLIUsageError(f"--layer-amount '{item}' is not LAYER=AMOUNT, e.g. features.3.conv=0.3")
        out[name] = value
    return out  # type: ignore[return-value]  # PruneSpec checks the values


def _layer_table(pruning: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["layer", "kind", "params", "sparsity", "channels", "note"]
    rows = []
    for x in pruning["layers"]:
        ch = f"{x['channels_before']} -> {x['channels_after']}" if x["channels_before"] is not None else "-"
        sp = f"{x['sparsity_before']:.0%} -> {x['sparsity_after']:.0%}"
        rows.append([x["name"], x["kind"], str(x["params"]), sp, ch, x["skipped"] or "pruned"])
    return headers, rows


def _summary(p: dict[str, Any]) -> str:
    sparsity = f"; sparsity of pruned layers {p['sparsity']:.1%}" if p["method"] == "magnitude" else ""
    lines = [
        f"{p['method']} pruning, amount {p['amount']:g}: params {human_count(p['params_before'])} -> "
        f"{human_count(p['params_after'])}{sparsity}; weights gzip "
        f"{human_bytes(p['weights_gzip_before'])} -> {human_bytes(p['weights_gzip_after'])}",
    ]
    if p.get("agreement_before_finetune") is not None:
        lines.append(f"top-1 agreement with the original before fine-tuning: {p['agreement_before_finetune']:.1%}")
    if p.get("finetune"):
        f = p["finetune"]
        lines.append(f"fine-tuned: {f['mode']}, {f['data']}, {f['epochs']} epochs, {f['seconds']} s")
    if p.get("agreement_after_finetune") is not None:
        lines.append(f"top-1 agreement with the original after fine-tuning: {p['agreement_after_finetune']:.1%}")
    if p.get("saved"):
        lines.append(f"pruned model: {p['saved']}")
    lines += [f"note: {n}" for n in p.get("notes", [])]
    return "\n".join(lines)


def _list_layers(args: argparse.Namespace, spec: Any) -> int:
    """The candidate layers with the default skip decisions, without pruning anything."""
    from converters.prune import prune

    result = prune(args.source, **{**spec.to_dict(), "finetune": None, "save_source": False},
                   allow_pickle=args.unsafe_allow_pickle)  # fmt: skip
    headers, rows = result.table()
    if args.json:
        emit_json([x.to_dict() for x in result.layers])
    else:
        print(format_table(headers, rows))
    return 0
