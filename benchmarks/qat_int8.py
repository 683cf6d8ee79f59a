"""EfficientNet-Lite0 int8 on every target, post-training vs quantization-aware fine-tuning, through ``convert()``.

Both variants come from the product path (``converters.convert``, the same as ``edge-sdk convert
zoo:efficientnet-lite0 --to tflite,onnx,openvino --precision int8 --calib photos:300 [--qat-epochs N]``)
and are validated on the same held-out crops; the report gives, per target, top-1 agreement with the
PyTorch original (all crops and confident ones), cosine, size and conversion time side by side.

    .venv/bin/python benchmarks/qat_int8.py [--epochs 2] [--qat-data photos:1600] [--to tflite,onnx,openvino]
                                            [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _report import emit


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--qat-data", default="photos:1600")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--loss", default="kl", help="distillation loss: kl or mse")
    ap.add_argument("--clean-fraction", type=float, default=0.0, help="share of each batch left unblended")
    ap.add_argument("--to", default="tflite,onnx,openvino")
    ap.add_argument("--held-out", type=int, default=200)
    ap.add_argument("--out", default=".cache/qat_int8")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from converters import convert

    rows = []
    for tag, qat in (
        ("post-training", None),
        (
            "QAT",
            {
                "finetune": args.qat_data,
                "epochs": args.epochs,
                "lr": args.lr,
                "loss": args.loss,
                "clean_fraction": args.clean_fraction,
            },
        ),  # fmt: skip
    ):
        result = convert("zoo:efficientnet-lite0", to=args.to.split(","), precision="int8", calibration="photos:300",
                         qat=qat, validate_samples=args.held_out, output_dir=Path(args.out) / tag.lower(),
                         allow_degraded=True, progress=False)  # fmt: skip
        for art in result.artifacts:
            m = art.metrics[0]
            rows.append({"variant": tag, "target": art.target, "top1_agreement": m.top1_agreement,
                         "confident": m.top1_agreement_confident, "cosine": m.cosine,
                         "size_mb": art.size_bytes / 2**20, "seconds": round(art.seconds, 1),
                         "quantizer": art.quantizer})  # fmt: skip
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    emit(rows, args.json, [
        ("int8", lambda r: r["variant"]), ("target", lambda r: r["target"]),
        ("top-1 agreement", lambda r: f"{r['top1_agreement']:.1%}"), ("confident", lambda r: f"{r['confident']:.1%}"),
        ("cosine", lambda r: f"{r['cosine']:.4f}"), ("MB", lambda r: f"{r['size_mb']:.1f}"),
        ("seconds", lambda r: str(r["seconds"])),
    ])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
