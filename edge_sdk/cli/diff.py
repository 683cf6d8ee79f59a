"""``edge-sdk diff ORIGINAL ARTIFACT``: where in the network a converted model parts from its original."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_sdk.cli.base import Command, add_probe_arguments, emit_json, probe_model
from edge_sdk.cli.convert import add_preprocess_arguments, add_unsafe_pickle_argument, preprocess_from_args


class DiffCommand(Command):
    name = "diff"
    help = (
        "run an original model and its converted artifact on the same inputs; per matched intermediate tensor: "
        "cosine and SNR, and the first layer where the error jumps"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("original", help="the original: .onnx, .tflite, .pt2, .keras, .h5, SavedModel or zoo:NAME")
        parser.add_argument("artifact", help="the converted model: .onnx, .xml (OpenVINO IR) or .tflite")
        parser.add_argument(
            "--inputs",
            "--calib",
            dest="inputs",
            metavar="PATH",
            help="inputs: image folder, .npy/.npz, WAV folder (default: the held-out inputs convert validates "
            "with: real photo crops for image models, else seeded random)",
        )
        parser.add_argument("--samples", type=int, default=8, help="how many inputs to run (default 8)")
        parser.add_argument(
            "--threshold",
            type=float,
            default=0.99,
            help="a layer diverges when its cosine is below this (default 0.99)",
        )
        parser.add_argument(
            "--snr-jump",
            type=float,
            default=20.0,
            metavar="DB",
            help="a layer also diverges when its SNR is this many dB below its inputs' and under 40 dB (default 20)",
        )
        parser.add_argument(
            "--exit-code", action="store_true", help="exit 3 when a layer diverges (for scripts), else 0"
        )
        parser.add_argument(
            "--unsafe-allow-lambda",
            action="store_true",
            help="load a Keras original's Lambda layers (runs their code)",
        )
        add_unsafe_pickle_argument(parser)
        add_probe_arguments(parser)
        add_preprocess_arguments(parser, "preprocessing of image --inputs (default: the model's manifest or zoo)")

    def run(self, args: argparse.Namespace) -> int:
        from converters.cleanup import exit_cleanly_on_signals
        from converters.diff import diff
        from edge_sdk.errors import CLIUsageError

        if args.samples < 1:
            raise CLIUsageError("--samples must be >= 1")
        if not 0 < args.threshold <= 1:
            raise CLIUsageError(f"--threshold {args.threshold} is not a cosine in (0, 1]; e.g. 0.99")
        for path in (args.original, args.artifact):
            if Path(path).suffix.lower() in (".onnx", ".tflite", ".xml") and Path(path).is_file():
                probe_model(args, path)  # a file that crashes its runtime: one error line, not a dead edge-sdk
        with exit_cleanly_on_signals():
            report = diff(
                args.original,
                args.artifact,
                inputs=args.inputs,
                samples=args.samples,
                threshold=args.threshold,
                snr_jump_db=args.snr_jump,
                preprocess=preprocess_from_args(args),
                allow_lambda=args.unsafe_allow_lambda,
                allow_pickle=args.unsafe_allow_pickle,
                verbose=args.verbose,
            )
        if args.json:
            emit_json(report.to_dict())
        else:
            print(report.table())
        return 3 if args.exit_code and report.first_divergence is not None else 0
