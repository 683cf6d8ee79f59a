"""``edge-sdk demo``: the end-to-end tour on real models and real photos, offline.

Converts EfficientNet-Lite0 (PyTorch, ImageNet) to TFLite / ONNX / OpenVINO at fp32 and int8
(GPTQ-rounded weights, calibrated on sample-photo crops, validated on held-out crops), classifies real photos with every
artifact through the one ``edge_sdk`` API, benchmarks each, and finds the face in ``astronaut``
with CenterFace. Then the real-time part: the pipeline runs both models over the embedded demo clip
(made from the real photos) and writes the annotated videos, the events and a metrics summary
(``--pipeline-only`` skips the conversion tour).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_sdk.cli.base import Command, emit_json, format_table

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


class DemoCommand(Command):
    name = "demo"
    help = "convert real models, classify real photos with every artifact, detect a face, benchmark"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-o", "--output-dir", default="out/demo", help="where artifacts go (default out/demo)")
        parser.add_argument("--runs", type=int, default=30, help="benchmark runs per artifact")
        parser.add_argument("--pipeline-only", action="store_true", help="only the real-time pipeline part")

    def run(self, args: argparse.Namespace) -> int:
        import numpy as np

        import edge_sdk as es
        from converters import convert, datasets, zoo
        from converters.layout import adapt_array
        from edge_sdk.bench import benchmark_isolated
        from edge_sdk.cli.demo_pipeline import print_summary, run_pipeline_demo
        from edge_sdk.labels import imagenet_labels

        out = Path(args.output_dir)
        if args.pipeline_only:
            summary = run_pipeline_demo(out / "pipeline")
            if args.json:
                emit_json({"pipeline": summary})
            else:
                print_summary(summary)
            return 0
        result = convert(
            "zoo:efficientnet-lite0", to=["onnx", "tflite", "openvino"], precision=["fp32", "int8"],
            calibration="photos:300", validate_samples=200, output_dir=out / "efficientnet", allow_degraded=True,
            weight_rounding="gptq",  # int8 at ~97% agreement instead of ~93% (README); ~3 minutes on 2 cores
        )  # fmt: skip
        spec = zoo.get("efficientnet-lite0").preprocess()
        labels = imagenet_labels()
        images = {n: spec.apply(datasets.named_image(n)) for n in PHOTOS if n in datasets.available_photos()}
        rows, records = [], []
        for a in result.artifacts:
            with es.load(a.path, dequantize=True) as model:
                top1 = {n: int(np.argmax(model(adapt_array(x, model.inputs[0])))) for n, x in images.items()}
            bench = benchmark_isolated(str(a.path), runs=args.runs, warmup=5)
            agree = a.metrics[0].top1_agreement
            rows.append([a.path.name, bench.backend, f"{a.size_bytes / 2**20:.1f} MiB", f"{agree:.1%}",
                         f"{bench.p50_ms:.2f}", *(labels[top1[n]] for n in images)])  # fmt: skip
            predictions = {n: labels[i] for n, i in top1.items()}
            records.append({"artifact": a.path.name, "backend": bench.backend, "top1_agreement": agree,
                            "p50_ms": bench.p50_ms, "predictions": predictions})  # fmt: skip
        faces = _faces()
        fp32 = next((a.path for a in result.artifacts if a.path.suffix == ".onnx" and "int8" not in a.path.name), None)
        summary = run_pipeline_demo(out / "pipeline", classifier=fp32)
        if args.json:
            emit_json({"classification": records, "faces": faces, "manifest": str(result.manifest_path),
                       "pipeline": summary})  # fmt: skip
            return 0
        print(format_table(["artifact", "backend", "size", "top-1 vs torch", "p50 ms", *images], rows))
        print(f"\nCenterFace on astronaut (480x640): {len(faces)} face(s) at {faces}")
        print(f"manifest: {result.manifest_path}")
        print_summary(summary)
        return 0


def _faces() -> list[list[float]]:
    import edge_sdk as es
    from converters import datasets, zoo
    from edge_sdk.postprocess.centerface import decode

    entry = zoo.get("centerface")
    path = entry.materialize(input_shape=(1, 3, 480, 640))
    x = entry.preprocess(input_shape=(1, 3, 480, 640)).apply(datasets.named_image("astronaut"))
    with es.load(path) as model:
        heat, scale, offset, lms = model(x).values()
    found = decode(heat, scale, offset, lms, (480, 640))
    return [[round(float(v), 1) for v in box] for box in found.boxes]
