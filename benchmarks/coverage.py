"""Conversion coverage: every corpus architecture to TFLite, ONNX and OpenVINO at every precision, through
the public API (``converters.convert``), validated against the original on realistic inputs.

    .venv/bin/python benchmarks/coverage.py [--only NAME,...] [--targets tflite,onnx,openvino]
        [--precisions fp32,fp16,int8-dynamic,int8] [--jobs 1] [--timeout 1200] [--out DIR] [--md docs/coverage.md]

Each architecture runs in its own subprocess with a timeout (a crash or hang in one cannot kill the
matrix); its cells are appended to ``OUT/cells/NAME.jsonl`` as they finish, and ``OUT/coverage.json`` and
the markdown are rewritten after every architecture, so a partial run still produces a table. Already
finished architectures are skipped with ``--resume``. Per cell: converted?, the lowest cosine over the
outputs, top-1 agreement (classifier outputs), within the precision's default tolerance?, the error
class and message when conversion raised.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus.report import FP32_COSINE, PRECISIONS, TARGETS, summarise, write_markdown  # noqa: E402

HERE = Path(__file__).resolve().parent


def convert_architecture(
    name: str, targets: list[str], precisions: list[str], out: Path, n_calib: int, n_held: int, keep: bool = False
) -> list[dict[str, Any]]:
    """Build ``name`` and convert it to every target x precision; one record per cell (also appended to
    ``out/cells/NAME.jsonl`` as each finishes). Conversion errors are caught per cell, typed."""
    import shutil
    import tempfile

    import corpus
    import numpy as np

    corpus._common.install_torchvision_shim()
    family, builder = corpus.get(name)
    cells_file = out / "cells" / f"{name}.jsonl"
    cells_file.parent.mkdir(parents=True, exist_ok=True)
    redo = {(t, p) for t in targets for p in precisions}  # earlier runs' other cells are kept
    kept = [c for c in _read_cells(out, name) if (c["target"], c["precision"]) not in redo]
    cells_file.write_text("".join(json.dumps(c) + "\n" for c in kept))
    records: list[dict[str, Any]] = []
    base = {"arch": name, "family": family}

    def emit(rec: dict[str, Any]) -> None:
        records.append(rec)
        with cells_file.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")

    work = Path(tempfile.mkdtemp(prefix=f"coverage-{name}-"))
    try:
        import torch

        torch.manual_seed(0)
        np.random.seed(0)
        t0 = time.monotonic()
        try:
            case = builder(work, n_calib, n_held)
        except Exception as e:  # the builder itself (framework, missing package): every cell records it
            traceback.print_exc()
            for t in targets:
                for p in precisions:
                    emit({**base, "target": t, "precision": p, **_error(e, "build")})
            return records
        base.update(kind=case.kind, inputs=case.input_desc, notes=case.notes, build_s=round(time.monotonic() - t0, 1))
        for target in targets:
            for rec in _convert_target(case, name, target, precisions, work / target, n_held):
                emit({**base, **rec})
            if not keep:
                shutil.rmtree(work / target, ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return records


def _convert_target(case: Any, name: str, target: str, precisions: list[str], out: Path, n_held: int) -> list[dict]:
    """All precisions of one target in one ``convert`` call (the fp32 export is shared). If it raises in the
    export, every precision shares that failure; otherwise the failing precision (the first whose artifact was
    not published) records the error and the others run again together, so one failing quantizer does not hide
    the others."""
    t0 = time.monotonic()
    try:
        result = _convert(case, name, target, precisions, out, n_held)
        seconds = (time.monotonic() - t0) / len(precisions)
        return [_cell(a, seconds, case.kind == "classifier") for a in result.artifacts]
    except Exception as e:
        traceback.print_exc()  # into the architecture's log, for whoever fixes it
        error, stage = e, _stage(e)
        if len(precisions) == 1 or stage == "export":
            spent = round(time.monotonic() - t0, 1)
            route = _route(case.model, target)
            return [{"target": target, "precision": p, **_error(e, stage), "route": route, "seconds": spent}
                    for p in precisions]  # fmt: skip
    # convert publishes each artifact as it goes, in precision order: the first one missing is the one that failed
    failed = next((p for p in precisions if not list(out.glob(f"{name}_{p}.*"))), precisions[-1])
    spent = round(time.monotonic() - t0, 1)
    cells = [{"target": target, "precision": failed, **_error(error, stage), "route": _route(case.model, target),
              "seconds": spent}]  # fmt: skip
    rest = [p for p in precisions if p != failed]
    if rest:  # the others again, together, in a fresh folder
        cells += _convert_target(case, name, target, rest, out / "retry", n_held)
    return sorted(cells, key=lambda c: precisions.index(c["precision"]))


def _route(model: Any, target: str) -> str | None:
    """The route ``convert`` takes for this source and target, as its manifest would name it."""
    from converters.routes import find_route
    from converters.sources import source_kind

    if isinstance(model, str) and model.startswith("zoo:"):
        return None  # a zoo entry decides its own source kind
    try:
        kind = source_kind(model)
        r = find_route(kind, target)
    except Exception:
        return None
    return " -> ".join([kind, *r.via, target]) + f" ({r.tool})"


def _stage(e: BaseException) -> str:
    """Where in the conversion ``e`` was raised: export (a route), quantize, validate, or convert (elsewhere)."""
    files = [f.filename.replace(os.sep, "/") for f in traceback.extract_tb(e.__traceback__)]
    for key, stage in (("/converters/routes/", "export"), ("/converters/quantizers/", "quantize"),
                       ("/converters/validate.py", "validate"), ("/converters/sources.py", "open")):  # fmt: skip
        if any(key in f for f in files):
            return stage
    return "convert"


def _convert(case: Any, name: str, target: str, precisions: list[str], out: Path, n_held: int) -> Any:
    from converters import convert

    return convert(
        case.model,
        to=[target],
        precision=precisions,
        example_inputs=case.example_inputs,
        calibration=case.calibration if {"int8", "int8-dynamic"} & set(precisions) else None,  # int8-dynamic: ranking
        held_out=case.held_out,
        validate_samples=n_held,
        output_dir=out,
        allow_degraded=True,  # outside tolerance is recorded in the cell, not raised
        name=name,
        progress=False,
    )


def _cell(a: Any, seconds: float, classifier: bool = True) -> dict[str, Any]:
    cosines = [m.cosine for m in a.metrics]
    top1 = [m.top1_agreement for m in a.metrics if m.top1_agreement is not None and classifier]
    return {
        "target": a.target,
        "precision": a.precision,
        "converted": True,
        "cosine": round(min(cosines), 6) if cosines else None,
        "snr_db": round(min(m.snr_db for m in a.metrics), 2) if a.metrics else None,
        "top1": round(min(top1), 4) if top1 else None,
        # top-1 agreement on the inputs the original is sure about (random-weight classifiers have near ties)
        "top1_confident": _lowest([m.top1_agreement_confident for m in a.metrics] if classifier else []),
        "confident_fraction": _lowest([m.confident_fraction for m in a.metrics] if classifier else []),
        "within_tolerance": a.passed,
        "failures": a.failures,
        "route": a.route,
        "quantizer": a.quantizer,
        "size_bytes": a.size_bytes,
        "seconds": round(a.seconds if a.seconds else seconds, 1),
        "fallback": _fallback_summary(a.fallback),
        "isa": (a.isa or {}).get("isa") if isinstance(a.isa, dict) else None,
        "error_class": None,
        "error": None,
    }


def _fallback_summary(fb: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the int8 fallback did for a cell: layers kept float (of how many), passed, the plain int8 failures."""
    if not fb:
        return None
    return {"kept": fb.get("kept") or [], "quantized_layers": fb.get("quantized_layers"), "budget": fb.get("budget"),
            "passed": fb.get("passed"), "rounds": len(fb.get("rounds") or []),
            "plain_failures": fb.get("plain_int8_failures") or [], "latency": fb.get("latency") or {}}  # fmt: skip


def _lowest(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(min(known), 4) if known else None


def _error(e: BaseException, stage: str) -> dict[str, Any]:
    msg = " ".join(str(e).split())
    return {"converted": False, "cosine": None, "top1": None, "within_tolerance": False, "failures": [],
            "error_class": type(e).__name__, "error": f"[{stage}] {msg[:600]}"}  # fmt: skip


# ---- the parent: one subprocess per architecture ------------------------------------------------
def run_matrix(args: argparse.Namespace, names: list[str]) -> int:
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "command.txt").write_text("python benchmarks/coverage.py " + " ".join(args.argv) + "\n")
    (out / "product.txt").write_text(product_version() + "\n")
    todo = [n for n in names if not (args.resume and _complete(out, n, args.targets, args.precisions))]
    procs: dict[str, tuple[subprocess.Popen, float, Any]] = {}
    pending = list(todo)
    while pending or procs:
        while pending and len(procs) < args.jobs:
            name = pending.pop(0)
            log = (out / "logs" / f"{name}.log").open("w")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--out", str(out),
                   "--targets", ",".join(args.targets), "--precisions", ",".join(args.precisions),
                   "--calib-samples", str(args.calib_samples),
                   "--held-out-samples", str(args.held_out_samples)]  # fmt: skip
            procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True),
                           time.monotonic(), log)  # fmt: skip
            print(f"[coverage] {name}: started", file=sys.stderr, flush=True)
        time.sleep(1)
        for name, (proc, start, log) in list(procs.items()):
            rc = proc.poll()
            overdue = rc is None and time.monotonic() - start > args.timeout
            if rc is None and not overdue:
                continue
            if overdue:
                os.killpg(proc.pid, 9)  # the worker and its tools (onnx2tf runs as a child)
                proc.wait()
            log.close()
            why = f"timed out after {args.timeout} s" if overdue else (f"worker exited {rc}" if rc else "")
            _fill_missing(out, name, args.targets, args.precisions, why, "Timeout" if overdue else "WorkerCrashed")
            del procs[name]
            cells = _read_cells(out, name)
            ok = sum(1 for c in cells if c.get("converted"))
            print(f"[coverage] {name}: {ok}/{len(cells)} cells converted ({time.monotonic() - start:.0f} s)"
                  f"{' - ' + why if why else ''}", file=sys.stderr, flush=True)  # fmt: skip
            _write_reports(out, args)
    _write_reports(out, args)
    return 0


def _read_cells(out: Path, name: str) -> list[dict[str, Any]]:
    f = out / "cells" / f"{name}.jsonl"
    if not f.is_file():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def _complete(out: Path, name: str, targets: list[str], precisions: list[str]) -> bool:
    have = {(c["target"], c["precision"]) for c in _read_cells(out, name)}
    return all((t, p) in have for t in targets for p in precisions)


def _fill_missing(out: Path, name: str, targets: list[str], precisions: list[str], why: str, cls: str) -> None:
    """Cells a dead or overdue worker never reached: recorded as its error, with the log's last line."""
    cells = _read_cells(out, name)
    have = {(c["target"], c["precision"]) for c in cells}
    missing = [(t, p) for t in targets for p in precisions if (t, p) not in have]
    if not missing:
        return
    log = out / "logs" / f"{name}.log"
    tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:] if log.is_file() else []
    import corpus

    family = corpus.get(name)[0]
    with (out / "cells" / f"{name}.jsonl").open("a") as fh:
        for t, p in missing:
            msg = why or "worker ended without recording this cell"
            rec = {"arch": name, "family": family, "target": t, "precision": p, "converted": False, "cosine": None,
                   "top1": None, "within_tolerance": False, "failures": [], "error_class": cls,
                   "error": f"[worker] {msg}" + (f"; last log line: {tail[0][:300]}" if tail else "")}  # fmt: skip
            fh.write(json.dumps(rec) + "\n")


def product_version() -> str:
    """Which converters code ran: a COMMIT file beside it (a snapshot made with ``git archive``), else its git
    commit, marked ``+uncommitted changes`` when the working tree differs from it."""
    import converters

    root = Path(converters.__file__).resolve().parents[1]
    if (root / "COMMIT").is_file():
        return f"{(root / 'COMMIT').read_text().strip()} (snapshot at {root})"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "converters", "edge_sdk"], cwd=root,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + (" + uncommitted changes in converters/ or edge_sdk/" if dirty else "")


def _partly_run(cells: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Architecture -> the targets some of whose precisions have no cell yet."""
    have: dict[str, set[tuple[str, str]]] = {}
    for c in cells:
        have.setdefault(c["arch"], set()).add((c["target"], c["precision"]))
    out = {}
    for arch, got in have.items():
        missing = [t for t in TARGETS if any((t, p) not in got for p in PRECISIONS)]
        if missing:
            out[arch] = missing
    return out


def _write_reports(out: Path, args: argparse.Namespace) -> None:
    cells = [c for f in sorted((out / "cells").glob("*.jsonl")) for c in _read_cells(out, f.stem)]
    import corpus

    order = {n: i for i, n in enumerate([*corpus.REGISTRY, *corpus.SMALL])}
    cells.sort(key=lambda c: (order.get(c["arch"], 999), TARGETS.index(c["target"]), PRECISIONS.index(c["precision"])))
    summary = summarise(cells)
    saved = out / "command.txt"
    command = saved.read_text().strip() if saved.is_file() else "python benchmarks/coverage.py " + " ".join(args.argv)
    product = (out / "product.txt").read_text().strip() if (out / "product.txt").is_file() else product_version()
    notes = (out / "notes.md").read_text().strip() if (out / "notes.md").is_file() else ""  # how the run was made
    payload = {"command": command, "product": product, "notes": notes, "summary": summary, "cells": cells,
               "not_run": [n for n in corpus.REGISTRY if n not in {c["arch"] for c in cells}],
               "partly_run": _partly_run(cells)}  # fmt: skip
    tmp = out / "coverage.json.tmp"
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, out / "coverage.json")
    md = Path(args.md) if args.md else out / "coverage.md"
    write_markdown(md, payload)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated architecture names (default: the whole corpus)")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--jobs", type=int, default=1, help="architectures converted at once (each in its own process)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per architecture (all its cells)")
    ap.add_argument("--out", default=".cache/coverage")
    ap.add_argument("--md", default="", help="markdown report path (default OUT/coverage.md)")
    ap.add_argument("--calib-samples", type=int, default=32)
    ap.add_argument("--held-out-samples", type=int, default=16)
    ap.add_argument("--resume", action="store_true", help="skip architectures whose cells are all recorded")
    ap.add_argument("--list", action="store_true", help="print the corpus and exit")
    ap.add_argument("--report-only", action="store_true", help="rewrite the JSON and markdown from OUT/cells")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = [a for a in argv if a != "--resume"]
    args.targets = [t for t in args.targets.split(",") if t]
    args.precisions = [p for p in args.precisions.split(",") if p]
    bad = [t for t in args.targets if t not in TARGETS] + [p for p in args.precisions if p not in PRECISIONS]
    if bad:
        ap.error(f"unknown target/precision {bad}; targets {TARGETS}, precisions {PRECISIONS}")
    import corpus

    if args.list:
        for name, (family, fn) in {**corpus.REGISTRY, **corpus.SMALL}.items():
            print(f"{name:32s} {family:13s} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.worker:
        convert_architecture(args.worker, args.targets, args.precisions, Path(args.out), args.calib_samples,
                             args.held_out_samples)  # fmt: skip
        return 0
    if args.report_only:
        _write_reports(Path(args.out), args)
        return 0
    names = [n for n in args.only.split(",") if n] or list(corpus.REGISTRY)
    for n in names:
        try:
            corpus.get(n)
        except KeyError as e:
            ap.error(str(e.args[0]))
    print(f"[coverage] {len(names)} architectures x {len(args.targets)} targets x {len(args.precisions)} precisions; "
          f"cosine >= {FP32_COSINE} counts as fp32 success", file=sys.stderr)  # fmt: skip
    return run_matrix(args, names)


if __name__ == "__main__":
    sys.exit(main())
