"""The converter's must-show figures on the real models, in one run.

EfficientNet-Lite0 -> TFLite/ONNX/OpenVINO at fp32/fp16/int8 (calibrated on sample-photo crops,
validated on >= 200 held-out crops), each artifact checked on `chelsea` (cat, 281-285) and `coffee`
(espresso, 967), latency via `edge-sdk bench`; and CenterFace at 480x640 -> TFLite, OpenVINO, int8 ONNX,
each artifact's face box on `astronaut` compared with the original's (IoU).

    .venv/bin/python benchmarks/zoo_report.py [--out .cache/zoo_report] [--samples 200] [--qat-epochs N]
                                              [--int8-rounding gptq] [--skip-effnet] [--skip-centerface]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import edge_sdk as es
from converters import convert, datasets, zoo
from edge_sdk.bench import benchmark_isolated
from edge_sdk.postprocess.boxes import iou
from edge_sdk.postprocess.centerface import decode


def effnet(out: Path, samples: int, qat_epochs: int = 0, rounding: str = "nearest") -> list[dict]:
    qat = {"finetune": "photos:1600", "epochs": qat_epochs} if qat_epochs else None
    result = convert(
        "zoo:efficientnet-lite0", to=["tflite", "onnx", "openvino"], precision=["fp32", "fp16", "int8"],
        calibration="photos:300", validate_samples=samples, output_dir=out, allow_degraded=True, progress=True,
        qat=qat, weight_rounding=rounding,
    )  # fmt: skip
    spec = zoo.get("efficientnet-lite0").preprocess()
    cat, coffee = (spec.apply(datasets.named_image(n)) for n in ("chelsea", "coffee"))
    rows = []
    for a in result.artifacts:
        with es.load(a.path, dequantize=True) as m:
            from converters.layout import adapt_array

            preds = [int(np.argmax(m(adapt_array(x, m.inputs[0])))) for x in (cat, coffee)]
        bench = benchmark_isolated(str(a.path), runs=100, warmup=10)
        rows.append({
            "artifact": a.path.name, "size_mb": a.size_bytes / 2**20, "top1": a.metrics[0].top1_agreement,
            "cosine": a.metrics[0].cosine, "chelsea": preds[0], "coffee": preds[1], "p50_ms": bench.p50_ms,
            "backend": bench.backend, "ok": 281 <= preds[0] <= 285 and preds[1] == 967, "quantizer": a.quantizer,
            "confident": a.metrics[0].top1_agreement_confident,
        })  # fmt: skip
    return rows


def centerface(out: Path) -> list[dict]:
    shape = {"input": (1, 3, 480, 640)}
    result = convert(
        "zoo:centerface", to=["onnx", "openvino", "tflite"], precision=["fp32", "int8"], calibration="photos:100",
        input_shapes=shape, validate_samples=16, output_dir=out, allow_degraded=True, progress=True,
    )  # fmt: skip
    entry = zoo.get("centerface")
    spec = entry.preprocess(input_shape=(1, 3, 480, 640))
    x = spec.apply(datasets.named_image("astronaut"))
    original = entry.materialize(input_shape=(1, 3, 480, 640))
    reference = _outputs(original, x)
    ref_box = _face(original, x)[0]
    rows = []
    for a in result.artifacts:
        boxes = _face(a.path, x, reference)
        best = float(iou(ref_box[None], boxes).max()) if len(boxes) else 0.0
        rows.append({"artifact": a.path.name, "faces": len(boxes), "iou": best, "ok": best >= 0.8,
                     "snr_db": min(m.snr_db for m in a.metrics)})  # fmt: skip
    return rows


def _outputs(path: Path, x: np.ndarray) -> list[np.ndarray]:
    from converters.layout import adapt_array

    with es.load(path, dequantize=True) as m:
        return list(m.run([adapt_array(x, m.inputs[0])], dequantize=True).values())


def _face(path: Path, x: np.ndarray, reference: list[np.ndarray] | None = None) -> np.ndarray:
    """Face boxes from a CenterFace artifact; outputs are matched to the original's (names and order differ)."""
    from converters.layout import align_output, pair_outputs

    outs = _outputs(path, x)
    if reference is not None:
        order = pair_outputs(reference, outs)
        outs = [align_output(outs[j], r) for j, r in zip(order, reference)]
    heat, scale, offset, lms = outs
    return decode(heat, scale, offset, lms, (480, 640)).boxes


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".cache/zoo_report")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--skip-effnet", action="store_true")
    ap.add_argument("--skip-centerface", action="store_true")
    ap.add_argument("--qat-epochs", type=int, default=0, help="int8 through quantization-aware fine-tuning (0: PTQ)")
    ap.add_argument("--int8-rounding", default="nearest", help="int8 weight rounding: nearest or gptq")
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.time()
    report = {}
    if not args.skip_effnet:
        report["efficientnet-lite0"] = effnet(out / "effnet", args.samples, args.qat_epochs, args.int8_rounding)
    if not args.skip_centerface:
        report["centerface"] = centerface(out / "centerface")
    print(json.dumps(report, indent=1))
    print(f"total {time.time() - t0:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
