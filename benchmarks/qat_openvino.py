"""Quantization-aware fine-tuning (QAT) by distillation for EfficientNet-Lite0 -> OpenVINO int8.

Post-training int8 leaves EfficientNet-Lite0 at 92-95% top-1 agreement with the original on the
200 held-out crops (near-ties flip). This measures the next step: NNCF post-training quantization
of the PyTorch model (fake-quantize modules), then a few epochs of distillation from the float
original on mixup blends of the calibration-split crops (the teacher labels every blend, lr 1e-5,
BN statistics frozen), then ``openvino.convert_model`` to an int8 IR. Agreement is measured on the
held-out split (never trained on) in PyTorch (fake-quant) and with the OpenVINO runtime (fp32
inference precision hint, so int8 kernels and nothing else differ).

    .venv/bin/python benchmarks/qat_openvino.py [--epochs 2] [--data 1600] [--lr 1e-5] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--data", type=int, default=1600, help="calibration-split crops to fine-tune on")
    ap.add_argument("--calib", type=int, default=300, help="of which, used for NNCF's statistics")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mixup", type=float, default=1.0)
    ap.add_argument("--held-out", type=int, default=200)
    ap.add_argument("--out", default=".cache/qat_openvino")
    args = ap.parse_args()

    import nncf
    import openvino as ov
    import torch

    from converters import datasets, zoo
    from converters.prune.finetune import _mixup_batch, _train_mode_frozen_bn

    torch.manual_seed(0)
    zm = zoo.load("efficientnet-lite0")
    spec = zoo.get("efficientnet-lite0").preprocess()
    teacher = zm.model.eval()
    held = torch.from_numpy(
        np.concatenate([spec.apply(im) for im in datasets.held_out_images(args.held_out, spec.size)])
    )
    data = np.concatenate([spec.apply(im) for im in datasets.calibration_images(args.data, spec.size)])
    with torch.no_grad():
        reference = torch.cat([teacher(held[i : i + 50]) for i in range(0, len(held), 50)]).argmax(1)

    def agreement(model: torch.nn.Module) -> float:
        with torch.no_grad():
            pred = torch.cat([model(held[i : i + 50]) for i in range(0, len(held), 50)]).argmax(1)
        return float((pred == reference).float().mean())

    def openvino_agreement(model: torch.nn.Module, path: Path) -> float:
        ir = ov.convert_model(model.eval(), example_input=torch.zeros(1, 3, *spec.size))
        ov.save_model(ir, str(path), compress_to_fp16=False)
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        pred = np.concatenate([compiled(held[i : i + 1].numpy())[0] for i in range(len(held))]).argmax(1)
        return float((pred == reference.numpy()).mean())

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"args": vars(args)}
    start = time.monotonic()
    calib = nncf.Dataset([torch.from_numpy(data[i : i + 1]) for i in range(args.calib)])
    student = nncf.quantize(copy.deepcopy(teacher), calib, subset_size=args.calib)
    report["ptq_seconds"] = round(time.monotonic() - start, 1)
    report["ptq_agreement_torch"] = agreement(student)
    report["ptq_agreement_openvino"] = openvino_agreement(student, out / "ptq_int8.xml")
    print(json.dumps(report), file=sys.stderr, flush=True)

    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(0)
    epochs = []
    for _ in range(args.epochs):
        t0 = time.monotonic()
        _train_mode_frozen_bn(student)
        order = rng.permutation(len(data))
        total = 0.0
        for i in range(0, len(data), args.batch):
            xb = _mixup_batch(torch.from_numpy(data[order[i : i + args.batch]]), rng, args.mixup)
            with torch.no_grad():
                target = teacher(xb)
            loss = torch.nn.functional.kl_div(
                torch.log_softmax(student(xb), 1), torch.softmax(target, 1), reduction="batchmean"
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(xb)
        student.eval()
        epochs.append({"loss": round(total / len(data), 4), "agreement_torch": agreement(student),
                       "seconds": round(time.monotonic() - t0, 1)})  # fmt: skip
        print(json.dumps(epochs[-1]), file=sys.stderr, flush=True)
    report["epochs"] = epochs
    report["qat_agreement_openvino"] = openvino_agreement(student, out / "qat_int8.xml")
    report["qat_ir"] = str(out / "qat_int8.xml")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
