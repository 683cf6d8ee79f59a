"""Does TFLite's sparse weight encoding pay off after magnitude pruning? Size and LiteRT latency, side by side.

A Keras MobileNetV2 (1x1 convolutions dominate: the layer kind XNNPACK's sparse kernels target) is
magnitude-pruned at 0%, 50%, 80% and 90%, then converted twice per amount with ``edge-sdk``'s
converter: plain TFLite and ``tflite_sparse=True`` (``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``).
Each pair is benchmarked in fresh processes, interleaved, on the default LiteRT backend (XNNPACK),
and reported as a ratio sparse/dense. Weights are random-initialised (no download): latency and
size do not depend on what the weights mean, and validation checks the sparse file computes what
the dense one does.

    .venv/bin/python benchmarks/sparse_tflite.py [--runs 100] [--out .cache/sparse_tflite] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np
from _report import emit


def _model(size: int):  # noqa: ANN202
    import keras

    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None, classes=1000)


def _gzip_mb(path: Path) -> float:
    return len(gzip.compress(path.read_bytes(), 6)) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--amounts", default="0,0.5,0.8,0.9")
    ap.add_argument("--out", default=".cache/sparse_tflite")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from converters import convert, prune
    from edge_sdk.bench import benchmark_isolated

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for amount in (float(a) for a in args.amounts.split(",")):
        model = _model(args.size)
        if amount > 0:
            model = prune(model, method="magnitude", amount=amount).model
        keras_path = out / f"mobilenetv2_m{int(amount * 100)}.keras"
        model.save(keras_path)
        files = {}
        for sparse in (False, True):
            tag = f"m{int(amount * 100)}_{'sparse' if sparse else 'dense'}"
            result = convert(keras_path, to="tflite", precision="fp32", tflite_sparse=sparse, output_dir=out / tag,
                             validate_samples=4, allow_degraded=True, progress=False)  # fmt: skip
            art = result.artifact("tflite", "fp32")
            files[sparse] = (art.path, min(m.cosine for m in art.metrics))
        lat: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(3):  # interleaved rounds: drift on a shared machine hits both alike
            for sparse in (False, True):
                lat[sparse].append(benchmark_isolated(str(files[sparse][0]), runs=args.runs, warmup=10).p50_ms)
        dense_ms, sparse_ms = float(np.median(lat[False])), float(np.median(lat[True]))
        rows.append({
            "amount": amount, "dense_mb": files[False][0].stat().st_size / 2**20,
            "sparse_mb": files[True][0].stat().st_size / 2**20, "dense_gzip_mb": _gzip_mb(files[False][0]),
            "sparse_gzip_mb": _gzip_mb(files[True][0]), "dense_p50_ms": dense_ms, "sparse_p50_ms": sparse_ms,
            "latency_ratio": sparse_ms / dense_ms, "sparse_cosine_vs_keras": files[True][1],
        })  # fmt: skip
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    emit(rows, args.json, [
        ("magnitude", lambda r: f"{r['amount']:.0%}"),
        ("dense MB (gzip)", lambda r: f"{r['dense_mb']:.2f} ({r['dense_gzip_mb']:.2f})"),
        ("sparse MB (gzip)", lambda r: f"{r['sparse_mb']:.2f} ({r['sparse_gzip_mb']:.2f})"),
        ("dense p50 ms", lambda r: f"{r['dense_p50_ms']:.2f}"),
        ("sparse p50 ms", lambda r: f"{r['sparse_p50_ms']:.2f}"),
        ("ratio", lambda r: f"{r['latency_ratio']:.2f}"), ("cosine", lambda r: f"{r['sparse_cosine_vs_keras']:.5f}"),
    ])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
