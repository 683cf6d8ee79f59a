"""``edge-sdk convert SRC --to ... --precision ...``: convert, quantize, validate, write a manifest."""

from __future__ import annotations

import argparse
from typing import Any

from edge_sdk.cli.base import (
    Command,
    emit_json,
    format_table,
    human_bytes,
    no_new_folder_on_error,
    parse_shapes,
    require_modules,
)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(t) for t in _csv(text))


def add_preprocess_arguments(parser: argparse.ArgumentParser, title: str) -> None:
    """The image preprocessing flags shared by ``convert`` and ``prune`` (read by :func:`preprocess_from_args`)."""
    pre = parser.add_argument_group(title)
    pre.add_argument("--size", help="input image size HxW, e.g. 224x224")
    pre.add_argument("--mean", help="per-channel mean in pixel units, e.g. 123.7,116.3,103.5 or 127")
    pre.add_argument("--std", help="per-channel std in pixel units, e.g. 58.4,57.1,57.4 or 128")
    pre.add_argument("--resize", default="stretch", choices=["stretch", "letterbox", "center_crop"])
    pre.add_argument("--channel-order", default="RGB", choices=["RGB", "BGR"])
    pre.add_argument("--layout", default="NCHW", choices=["NCHW", "NHWC"])
    pre.add_argument("--task", choices=("classify", "detect", "vad"), help="stored in every artifact (run needs none)")
    pre.add_argument("--labels", metavar="FILE", help="class names, one a line, stored in every artifact")


def add_unsafe_pickle_argument(parser: argparse.ArgumentParser) -> None:
    """``--unsafe-allow-pickle``, shared by ``convert`` and ``prune`` (read by :func:`convert_options`)."""
    parser.add_argument(
        "--unsafe-allow-pickle",
        action="store_true",
        help="load a .pt2 unchecked, as torch does: its pickles and program code run (only for files you trust)",
    )


def convert_options(args: argparse.Namespace) -> dict[str, Any]:
    """``convert()`` keywords from the flags ``convert`` and ``prune`` share; validation is reported, the
    exit code is decided by the verb (``--allow-degraded`` / ``--min-agreement``)."""
    return {
        "to": _csv(args.to),
        "precision": _csv(args.precision),
        "calibration": args.calib,
        "input_shapes": parse_shapes(args.input_shape) or None,
        "output_dir": args.output_dir,
        "preprocess": preprocess_from_args(args),
        "task": args.task,
        "labels": _labels(args.labels),
        "held_out": args.held_out,
        "validate_samples": args.validate_samples,
        "allow_degraded": True,
        "allow_pickle": args.unsafe_allow_pickle,
        "verbose": args.verbose,
    }


def _labels(path: str | None) -> list[str] | None:
    from edge_sdk.labels import load_labels

    return load_labels(path) if path else None


def preprocess_from_args(args: argparse.Namespace) -> Any:
    """A PreprocessSpec from --size/--mean/--std/... or None when no flag was given."""
    if args.mean is None and args.std is None and args.size is None:
        return None
    from edge_sdk.errors import CLIUsageError
    from edge_sdk.preprocess import PreprocessSpec

    if args.size is None:
        raise CLIUsageError("--mean/--std need --size HxW too (the input image size the model expects)")
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise CLIUsageError(f"--size '{args.size}' is not HxW, e.g. 224x224") from None
    return PreprocessSpec(
        size=(h, w),
        resize=args.resize,
        mean=_floats(args.mean) if args.mean else (0.0,),
        std=_floats(args.std) if args.std else (1.0,),
        channels=args.channel_order,
        layout=args.layout,
    )


class ConvertCommand(Command):
    name = "convert"
    help = "convert a model to TFLite / ONNX / OpenVINO, quantize it, and validate it against the original"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("source", help="a .pt2, .keras, .h5, SavedModel folder, .onnx, .tflite, or zoo:NAME")
        parser.add_argument("--to", default="onnx", help="targets, comma-separated: tflite,onnx,openvino")
        parser.add_argument("--precision", default="fp32", help="fp32,fp16,int8-dynamic,int8 (comma-separated)")
        parser.add_argument("--calib", help="calibration data: image folder, .npy/.npz, WAV folder, or 'synthetic'")
        parser.add_argument(
            "--held-out",
            help="validation data (same kinds as --calib); default: 20%% of --calib, else realistic inputs",
        )
        parser.add_argument("--validate-samples", type=int, default=64, help="held-out samples to validate on")
        parser.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,..", help="fix an input's shape")
        parser.add_argument("--opset", type=int, default=17, help="ONNX opset for exports (default 17)")
        parser.add_argument("--int8-io", action="store_true", help="TFLite int8: integer inputs/outputs too")
        parser.add_argument(
            "--tflite-sparse", action="store_true", help="TFLite: store pruned weights sparse (TF/ONNX sources)"
        )
        parser.add_argument(
            "--tf-select-ops",
            action="store_true",
            help="TFLite fp32: keep ops with no TFLite builtin as TensorFlow ops (the device then needs the Flex "
            "delegate)",
        )
        parser.add_argument(
            "--static", action="store_true", help="fix dynamic input dims (--input-shape, else 1) for NPUs/delegates"
        )
        parser.add_argument(
            "--qat-epochs",
            type=int,
            default=0,
            help="int8 of a PyTorch model: quantization-aware fine-tuning epochs, one run for all targets (0: off)",
        )
        parser.add_argument(
            "--qat-data",
            default="photos:1600",
            help="unlabelled images for QAT distillation: folder or photos:N (default photos:1600)",
        )
        parser.add_argument("--qat-lr", type=float, default=1e-5, help="QAT learning rate (default 1e-5)")
        parser.add_argument("--qat-loss", default="kl", help="QAT distillation: kl (probabilities) or mse (logits)")
        parser.add_argument(
            "--int8-rounding",
            default="nearest",
            help="int8 of a PyTorch model: nearest (default) or gptq (error-compensating weight rounding, once)",
        )
        parser.add_argument(
            "--no-fallback",
            action="store_true",
            help="static int8: keep plain int8 when it misses its tolerance (default: keep its worst layers float)",
        )
        parser.add_argument(
            "--fallback-budget",
            type=float,
            metavar="FRACTION",
            help="int8 fallback: the fraction of int8 layers it may keep float (default 0.4, at most 7 rounds); "
            "less keeps more of int8's speed",
        )
        parser.add_argument(
            "--target-isa",
            help="CPU the int8 artifacts will run on: x86-avx2, x86-avx512, x86-vnni, arm64, arm64-dotprod, "
            "arm64-i8mm (default: this machine's)",
        )
        parser.add_argument("--allow-degraded", action="store_true", help="exit 0 even if validation fails")
        parser.add_argument(
            "--unsafe-allow-lambda",
            action="store_true",
            help="load Keras Lambda layers (runs their code); all else Keras's safe mode refuses stays refused",
        )
        add_unsafe_pickle_argument(parser)
        parser.add_argument("--bench", action="store_true", help="benchmark each artifact (edge-sdk bench)")
        parser.add_argument(
            "--prune", metavar="METHOD:AMOUNT", help="prune first: channel:0.25, magnitude:0.5 (checked vs original)"
        )
        parser.add_argument("-o", "--output-dir", default="out", help="output folder (default ./out)")
        add_preprocess_arguments(parser, "preprocessing (stored in the manifest; needed for image calibration)")

    def run(self, args: argparse.Namespace) -> int:
        from converters.cleanup import exit_cleanly_on_signals
        from converters.plan import ConversionOptions, ConversionPlan
        from edge_sdk.errors import CLIUsageError

        if args.validate_samples < 1:
            raise CLIUsageError("--validate-samples must be >= 1")
        if args.fallback_budget is not None and not 0 < args.fallback_budget <= 1:
            raise CLIUsageError(
                f"--fallback-budget must be a fraction of the int8 layers in (0, 1], got {args.fallback_budget:g} "
                "(e.g. 0.25); --no-fallback turns the fallback off"
            )
        require_modules("convert", *converter_modules(args.source, _csv(args.to)))
        # a stopped run leaves no temp files, no manifest, no tool running; a refused one no empty folder
        with exit_cleanly_on_signals(), no_new_folder_on_error(args.output_dir):
            keywords = dict(
                convert_options(args),
                opset=args.opset,
                int8_io=args.int8_io,
                tflite_sparse=args.tflite_sparse,
                tf_select_ops=args.tf_select_ops,
                static=args.static,
                allow_lambda=args.unsafe_allow_lambda,
                prune=args.prune,
                qat=_qat_options(args),
                weight_rounding=args.int8_rounding,
                fallback=not args.no_fallback,
                fallback_budget=args.fallback_budget,
                target_isa=args.target_isa,
            )
            targets, precisions = keywords.pop("to"), keywords.pop("precision")
            options = ConversionOptions.from_keywords(**keywords)  # the objects convert() builds, too
            result = ConversionPlan(args.source, targets, precisions, options).run()
        if args.bench:
            _bench(result, args.verbose)
        if args.json:
            emit_json({"output_dir": str(result.output_dir), "manifest": str(result.manifest_path),
                       "passed": result.passed, "validation": result.validation,
                       "artifacts": result.report})  # fmt: skip
        else:
            print(format_table(*_table(result)))
            for a in result.artifacts:
                if a.fallback:
                    fb = a.fallback
                    print(f"{a.path.name}: int8 fallback kept {fb['kept']} float of {fb['quantized_layers']} int8 "
                          f"layers; latency {fb['latency']}")  # fmt: skip
            print(f"\n{result.validation_line()}\nmanifest: {result.manifest_path}")
        if not result.passed and not args.allow_degraded:
            from edge_sdk.errors import ValidationFailedError

            bad = [a.path.name for a in result.artifacts if not a.passed]
            raise ValidationFailedError(
                f"{len(bad)} artifact(s) outside tolerance: {', '.join(bad)}; pass --allow-degraded to accept"
            )
        return 0


def converter_modules(source: str, targets: list[str]) -> list[str]:
    """The packages a conversion of ``source`` to ``targets`` cannot do without (checked before any work):
    ONNX always (every route and the validation read it), TensorFlow for TFLite or a Keras source, torch
    for a PyTorch program."""
    suffix = source.lower().rpartition(".")[2] if "." in source and not source.startswith("zoo:") else ""
    modules = ["onnx"]
    if "tflite" in targets or suffix in ("keras", "h5"):
        modules.append("tensorflow")
    if suffix in ("pt2", "pt"):
        modules.append("torch")
    return modules


def _qat_options(args: argparse.Namespace) -> dict | None:
    """``convert``'s ``qat=`` from the --qat-* flags, or None when --qat-epochs is 0."""
    if not args.qat_epochs:
        return None
    return {"finetune": args.qat_data, "epochs": args.qat_epochs, "lr": args.qat_lr, "loss": args.qat_loss}


def _bench(result: Any, verbose: bool) -> None:
    from edge_sdk.bench import benchmark_isolated

    for a in result.artifacts:
        r = benchmark_isolated(str(a.path), runs=50, warmup=5, verbose=verbose)
        a.latency = {"backend": r.backend, "p50_ms": round(r.p50_ms, 3), "p90_ms": round(r.p90_ms, 3)}


def _table(result: Any) -> tuple[list[str], list[list[str]]]:
    headers = ["artifact", "size", "cosine", "SNR dB", "max abs err", "top-1 agree (confident)", "p50 ms", "status"]
    rows = []
    for a in result.artifacts:
        worst = min(a.metrics, key=lambda m: m.cosine)
        top1 = [m for m in a.metrics if m.top1_agreement is not None]
        rows.append([
            a.path.name,
            human_bytes(a.size_bytes),
            f"{worst.cosine:.5f}",
            f"{worst.snr_db:.1f}",
            f"{worst.max_abs_error:.3g}",
            _top1_text(top1[0]) if top1 else "-",
            f"{a.latency['p50_ms']:.2f}" if a.latency else "-",
            "ok" if a.passed else "FAILED: " + "; ".join(a.failures),
        ])  # fmt: skip
    return headers, rows


def _top1_text(m: Any) -> str:
    if m.top1_agreement_confident is None:
        return f"{m.top1_agreement:.1%}"
    return f"{m.top1_agreement:.1%} ({m.top1_agreement_confident:.1%})"
