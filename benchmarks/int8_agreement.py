"""Top-1 agreement of converted EfficientNet-Lite0 files with the PyTorch original on N held-out crops,
with a 95% Wilson interval: at 200 crops one crop is 0.5 points, so near-threshold results need more.

    .venv/bin/python benchmarks/int8_agreement.py ARTIFACT [ARTIFACT ...] [--samples 1000] [--json]

The crops come from ``datasets.held_out_images`` (never calibration or fine-tuning crops); the first 200
are the ones ``convert`` validates on, so the 200-crop column repeats the manifest's figure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
from _report import emit


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    import edge_sdk as es
    from converters import datasets, zoo
    from converters.layout import adapt_array

    entry = zoo.get("efficientnet-lite0")
    spec, teacher = entry.preprocess(), entry.load().model.eval()
    x = np.concatenate([spec.apply(im) for im in datasets.held_out_images(args.samples, spec.size)])
    with torch.no_grad():
        ref = torch.cat([teacher(torch.from_numpy(x[i : i + 50])) for i in range(0, len(x), 50)]).numpy().argmax(1)
    rows = []
    for path in args.artifacts:
        with es.load(path, dequantize=True) as m:
            pred = np.array([int(np.argmax(m(adapt_array(x[i : i + 1], m.inputs[0])))) for i in range(len(x))])
        same = pred == ref
        lo, hi = wilson(int(same.sum()), len(same))
        rows.append({"artifact": path, "first_200": float(same[:200].mean()), "all": float(same.mean()),
                     "n": len(same), "ci95": [round(lo, 4), round(hi, 4)]})  # fmt: skip
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    emit(rows, args.json, [
        ("artifact", lambda r: r["artifact"]), ("first 200 crops", lambda r: f"{r['first_200']:.1%}"),
        (f"all {args.samples} crops", lambda r: f"{r['all']:.1%}"),
        ("95% interval", lambda r: f"{r['ci95'][0]:.1%}-{r['ci95'][1]:.1%}"),
    ])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
