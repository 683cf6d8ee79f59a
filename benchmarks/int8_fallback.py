"""EfficientNet-Lite0 (zoo, real ImageNet weights) plain post-training int8 (no GPTQ, no QAT) with the int8 fallback,
per runtime: top-1 agreement with the PyTorch original, the layers kept float, and int8/fp32 latency, labelled with
this machine's ISA and the int8 scheme chosen for it.

    .venv/bin/python benchmarks/int8_fallback.py [--cosine 0.995] [--top1 0.9] [--samples 200] [--runs 50] [--json]
                                                 [--targets tflite,onnx,openvino] [--target-isa ISA] [--schemes]
                                                 [--out DIR] [--reuse]

``--cosine`` / ``--top1``: the tolerance the int8 artifacts must meet (defaults of the int8 tolerance: cosine 0.97,
top-1 0.90, judged on the crops the original is confident about; a stricter one makes the fallback work).
``--reuse``: measure the artifacts an earlier run left in ``--out`` (its manifest) instead of converting.
``--from-fp32 DIR``: quantize (with the fallback) the fp32 artifacts an earlier run left in DIR, without
exporting again: ONNX and OpenVINO as ``convert`` does; TFLite then through ai-edge-quantizer on the fp32
.tflite (``convert``'s route for .tflite sources; the SavedModel route needs the export).
Latency: ``edge_sdk.bench`` in a fresh process per file (p50 of ``--runs``), fp32 and
int8-with-fallback; plain int8's ratio is the fallback's own in-process measurement (30 runs).
``--schemes``: also quantize with ONNX Runtime in each int8 layout (u8s8, u8s8 reduce_range, s8s8, u8u8) and
measure agreement and latency, the figures behind the per-ISA choice in ``converters/quantizers/isa.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from _report import emit


def cpu_label() -> dict[str, Any]:
    """This machine's ISA as ``converters.quantizers.isa`` names it, with the /proc/cpuinfo flags behind it."""
    from converters.quantizers.isa import detect_isa
    from devices.probe import Probe

    cpu = Probe().cpu
    flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "dotprod", "i8mm") if cpu.has(f)]
    return {"isa": detect_isa(), "cpu": cpu.model, "cores": cpu.cores, "flags": flags}


def run_fallback(args: argparse.Namespace) -> list[dict[str, Any]]:
    from converters import convert

    tolerances = {k: v for k, v in (("cosine", args.cosine), ("top1", args.top1)) if v is not None}
    manifest = args.out / "manifest.json"
    if args.from_fp32 is not None:
        start = time.monotonic()
        quantize_fp32_files(args, tolerances)
        print(f"quantization: {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    elif not args.reuse:
        start = time.monotonic()
        convert(
            "zoo:efficientnet-lite0", to=args.targets.split(","), precision=["fp32", "int8"], calibration="photos:300",
            validate_samples=args.samples, output_dir=args.out, allow_degraded=True, tolerances=tolerances,
            target_isa=args.target_isa, progress=False,
        )  # fmt: skip
        print(f"conversion: {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    artifacts = json.loads(manifest.read_text())["artifacts"]
    fp32_of = {a["target"]: args.out / a["path"] for a in artifacts if a["precision"] == "fp32"}
    rows = []
    for a in (a for a in artifacts if a["precision"] == "int8"):
        fb = a.get("fallback") or {}
        plain = fb.get("plain_int8_metrics") or a["metrics"]
        files = (("fp32", fp32_of[a["target"]]), ("int8", args.out / a["path"]))
        ms = {key: timing(path, args.runs) for key, path in files}
        rows.append({
            "runtime": {"onnx": "ONNX Runtime", "openvino": "OpenVINO", "tflite": "LiteRT"}[a["target"]],
            "artifact": a["path"],
            "scheme": a.get("isa"),
            "tolerances": "as converted" if args.reuse else tolerances,
            "plain_top1": plain[0]["top1_agreement"],
            "plain_top1_confident": plain[0]["top1_agreement_confident"],
            "plain_cosine": plain[0]["cosine"],
            "top1": a["metrics"][0]["top1_agreement"],
            "top1_confident": a["metrics"][0]["top1_agreement_confident"],
            "cosine": a["metrics"][0]["cosine"],
            "passed": a["passed"],
            "kept": fb.get("kept", []),
            "excluded": len(fb.get("excluded", [])),
            "quantized_layers": fb.get("quantized_layers"),
            "rounds": len(fb.get("rounds", [])),
            "plain_ratio_inprocess": (fb.get("latency") or {}).get("ratio_plain"),
            "fallback_ratio_inprocess": (fb.get("latency") or {}).get("ratio_fallback"),
            "fp32_p50_ms": round(ms["fp32"][0], 3),
            "int8_p50_ms": round(ms["int8"][0], 3),
            "ratio": round(ms["int8"][0] / ms["fp32"][0], 3),
            "fp32_min_ms": round(ms["fp32"][1], 3),
            "int8_min_ms": round(ms["int8"][1], 3),
            "ratio_min": round(ms["int8"][1] / ms["fp32"][1], 3),
            "seconds": a["seconds"],
        })  # fmt: skip
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def quantize_fp32_files(args: argparse.Namespace, tolerances: dict[str, float]) -> None:
    """``convert``'s quantize + validate stage on fp32 files of an earlier run: same calibration (photos:300),
    same held-out crops and reference (the PyTorch original), manifest entries in the same form."""
    import shutil
    import tempfile

    from converters import datasets
    from converters.calibration import load_calibration
    from converters.quantizers.fallback import quantize_with_fallback
    from converters.quantizers.isa import scheme_for
    from converters.routes import TARGET_SUFFIX, RouteContext
    from converters.validate import HeldOut, run_reference, validate_artifact
    from converters.zoo_source import open_zoo_source

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="int8-fallback-"))
    ctx = RouteContext(workdir=work)
    source = open_zoo_source("efficientnet-lite0", ctx)
    spec = source.preprocess
    calib = load_calibration("photos:300", source.inputs, preprocess=spec)
    images = datasets.held_out_images(args.samples, spec.size)
    held = run_reference(source, HeldOut([[spec.apply(im)] for im in images], "held-out real photo crops", False))
    scheme = scheme_for(args.target_isa)
    manifest = args.out / "manifest.json"
    runs = args.targets.split(",")
    earlier = json.loads(manifest.read_text())["artifacts"] if manifest.exists() else []
    entries = [e for e in earlier if e["target"] not in runs]  # other targets' results of an earlier run stay
    for target in runs:
        name = f"efficientnet-lite0_fp32{TARGET_SUFFIX[target]}"
        fp32 = args.from_fp32 / name
        for f in [fp32, fp32.with_suffix(".bin")] if target == "openvino" else [fp32]:
            shutil.copyfile(f, args.out / f.name)
        out = args.out / name.replace("_fp32", "_int8")
        start = time.monotonic()
        metrics, failures, report = quantize_with_fallback(
            target, args.out / name, out, calib, ctx, lambda p: validate_artifact(source, p, held, "int8", tolerances),
            scheme=scheme,
        )  # fmt: skip
        fp32_metrics, fp32_failures = validate_artifact(source, args.out / name, held, "fp32")
        for precision, path, m, bad, fb in (("fp32", args.out / name, fp32_metrics, fp32_failures, None),
                                            ("int8", out, metrics, failures, report)):  # fmt: skip
            entries.append({"target": target, "precision": precision, "path": path.name, "passed": not bad,
                            "failures": bad, "metrics": [x.to_dict() for x in m],
                            "fallback": fb.to_dict() if fb else None,
                            "isa": scheme.to_dict() if precision == "int8" else None,
                            "seconds": round(time.monotonic() - start, 1)})  # fmt: skip
        (args.out / "manifest.json").write_text(json.dumps({"artifacts": entries, "tolerances": tolerances}, indent=1))
        print(json.dumps({"target": target, "failures": failures, "kept": report.kept if report else []}),
              file=sys.stderr, flush=True)  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


def timing(path: Path, runs: int) -> tuple[float, float]:
    """(p50, min) ms of ``path`` with ``edge_sdk.bench`` in a fresh process (in this one if the child cannot
    report). The minimum is the figure least disturbed by other work on a shared machine."""
    from edge_sdk.bench import benchmark, benchmark_isolated

    try:
        r = benchmark_isolated(str(path), runs=runs, warmup=10)
    except Exception as e:  # noqa: BLE001 - the in-process figure is still a measurement
        print(f"isolated bench of {path.name} failed ({e}); timing in this process", file=sys.stderr)
        r = benchmark(str(path), runs=runs, warmup=10, progress=False)
    return r.p50_ms, r.min_ms


def run_schemes(out: Path, samples: int, runs: int) -> list[dict[str, Any]]:
    """ONNX Runtime static int8 of the fp32 ONNX file in each activation/weight layout, on this machine."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    import edge_sdk as es
    from converters import datasets, zoo
    from converters.calibration import load_calibration
    from converters.layout import adapt_array

    fp32 = out / "efficientnet-lite0_fp32.onnx"
    spec = zoo.get("efficientnet-lite0").preprocess()
    with es.load(fp32) as m:
        specs = m.inputs
    feeds = [{specs[0].name: s[0]} for s in load_calibration("photos:300", specs, preprocess=spec).samples]
    x = np.concatenate([spec.apply(im) for im in datasets.held_out_images(samples, spec.size)])

    def predictions(path: Path) -> Any:
        with es.load(path) as m:
            return np.array([int(np.argmax(m(adapt_array(x[i : i + 1], m.inputs[0])))) for i in range(len(x))])

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> Any:
            return next(self.it, None)

    ref, ref_ms = predictions(fp32), timing(fp32, runs)
    u8, s8 = QuantType.QUInt8, QuantType.QInt8
    rows = []
    for name, act, weight, reduce in (("u8s8", u8, s8, False), ("u8s8 reduce_range", u8, s8, True),
                                      ("s8s8", s8, s8, False), ("u8u8", u8, u8, False)):  # fmt: skip
        path = out / f"scheme_{name.replace(' ', '_')}.onnx"
        quantize_static(str(fp32), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=act, weight_type=weight, reduce_range=reduce,
                        extra_options={"CalibMovingAverage": False})  # fmt: skip
        ms = timing(path, runs)
        rows.append({"scheme": name, "top1": float(np.mean(predictions(path) == ref)), "p50_ms": round(ms[0], 3),
                     "ratio": round(ms[0] / ref_ms[0], 3), "ratio_min": round(ms[1] / ref_ms[1], 3)})  # fmt: skip
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cosine", type=float, default=0.995, help="cosine the int8 artifacts must reach")
    ap.add_argument("--top1", type=float, default=None, help="top-1 agreement they must reach (confident crops)")
    ap.add_argument("--reuse", action="store_true", help="measure the artifacts already in --out")
    ap.add_argument("--from-fp32", type=Path, default=None, help="quantize the fp32 artifacts of an earlier run")
    ap.add_argument("--samples", type=int, default=200, help="held-out crops validated on")
    ap.add_argument("--runs", type=int, default=50, help="timed runs per file")
    ap.add_argument("--targets", default="tflite,onnx,openvino")
    ap.add_argument("--target-isa", default=None, help="int8 scheme for another ISA (default: this machine's)")
    ap.add_argument("--schemes", action="store_true", help="also compare ONNX Runtime int8 layouts")
    ap.add_argument("--out", type=Path, default=Path(".cache/int8_fallback"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    label = cpu_label()
    print(json.dumps(label), file=sys.stderr, flush=True)
    rows = run_fallback(args)
    schemes = run_schemes(args.out, args.samples, args.runs) if args.schemes else []
    if args.json:
        print(json.dumps({"machine": label, "rows": rows, "onnx_schemes": schemes}))
        return 0
    print(f"machine: {label['isa']} ({', '.join(label['flags'])}; {label['cpu']}, {label['cores']} cores); "
          f"required: {rows[0]['tolerances'] if rows else '-'}, {args.samples} held-out crops\n")  # fmt: skip
    emit(rows, False, [
        ("runtime", lambda r: r["runtime"]),
        ("int8 scheme", lambda r: (r["scheme"] or {}).get("onnx", "") if r["runtime"] == "ONNX Runtime"
         else (r["scheme"] or {}).get("openvino_overflow_fix", "") if r["runtime"] == "OpenVINO" else "s8s8"),
        ("plain int8 top-1 / cosine", lambda r: f"{r['plain_top1']:.1%} / {r['plain_cosine']:.4f}"),
        ("with fallback", lambda r: f"{r['top1']:.1%} / {r['cosine']:.4f}" + ("" if r["passed"] else " (fails)")),
        ("layers kept float", lambda r: f"{len(r['kept'])} of {r['quantized_layers']}" if r["kept"] else "0"),
        ("int8/fp32 p50, plain", lambda r: f"{r['plain_ratio_inprocess']:.2f}" if r["plain_ratio_inprocess"] else "-"),
        ("int8/fp32 p50, final", lambda r: f"{r['ratio']:.2f} ({r['int8_p50_ms']:.2f} / {r['fp32_p50_ms']:.2f} ms)"),
        ("int8/fp32 min", lambda r: f"{r['ratio_min']:.2f} ({r['int8_min_ms']:.2f} / {r['fp32_min_ms']:.2f} ms)"),
    ])  # fmt: skip
    if schemes:
        print()
        emit(schemes, False, [("ONNX Runtime int8 layout", lambda r: r["scheme"]),
                              ("top-1 agreement", lambda r: f"{r['top1']:.1%}"),
                              ("int8/fp32 p50", lambda r: f"{r['ratio']:.2f}"),
                              ("int8/fp32 min", lambda r: f"{r['ratio_min']:.2f}")])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
