"""``edge-sdk info MODEL``: what is inside a model, without running it, and what it carries about itself
(task, preprocessing, labels, source, conversion: ``edge_sdk.metadata``)."""

from __future__ import annotations

import argparse
from typing import Any

from edge_sdk.cli.base import (
    Command,
    add_probe_arguments,
    emit_json,
    format_table,
    human_bytes,
    human_count,
    probe_model,
)
from edge_sdk.cli.bundle import add_trusted_key_argument, signed_model_path
from edge_sdk.tensor_spec import QuantParams


class InfoCommand(Command):
    name = "info"
    help = "show a model's format, tensors, quantization, operators, parameters, MACs and stored metadata"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", help="path to a .onnx, .tflite or OpenVINO .xml file")
        parser.add_argument("--top", type=int, default=15, help="operator types to list (default 15)")
        parser.add_argument(
            "--device",
            default=None,
            help="operator coverage on a target: cpu, NPU, GPU (OpenVINO), cuda, tensorrt, qnn (ONNX Runtime), "
            "edgetpu, gpu (TFLite delegates) or a profile (intel-npu, jetson-orin, ...)",
        )
        parser.add_argument(
            "--backend", default=None, help="runtime for --device (default: natural one for the format)"
        )
        parser.add_argument(
            "--strict", action="store_true", help="with --device: any CPU fallback is an error (exit 3)"
        )
        add_probe_arguments(parser)
        add_trusted_key_argument(parser)

    def run(self, args: argparse.Namespace) -> int:
        from edge_sdk.summary import summarize

        if args.strict and not args.device:
            from edge_sdk.errors import CLIUsageError

            raise CLIUsageError("--strict needs --device D (the accelerator whose coverage must be complete)")
        args.model = str(signed_model_path(args, args.model))  # a .edgebundle: verified, extracted (edge_sdk.fleet)
        probe_model(args, args.model, kind="info", backend=args.backend, device=args.device or "auto")
        s = summarize(args.model)
        meta = _metadata(args.model)
        report = None
        if args.device:
            from edge_sdk.coverage import coverage

            report = coverage(args.model, args.device, backend=args.backend)
        if args.json:
            doc = {**s.to_dict(), "metadata": meta}
            emit_json({**doc, "coverage": report.to_dict()} if report else doc)
            return _strict(report, args.strict)
        print(f"model         {s.path}")
        print(f"format        {s.format}")
        print(f"size          {human_bytes(s.size_bytes)}")
        print(f"quantization  {s.quantization}")
        by_dtype = ", ".join(f"{k}: {human_count(v)}" for k, v in s.weight_dtypes.items()) or "-"
        print(f"parameters    {human_count(s.params)}  ({by_dtype})")
        print(f"MACs          {human_count(s.macs)}  ({s.macs_note})")
        print()
        rows = []
        for kind, specs in (("input", s.inputs), ("output", s.outputs)):
            for t in specs:
                q = _quant_text(t.quant) if t.quant else ""
                rows.append([kind, t.name, t.shape_str(), t.dtype.name, t.layout or "", q])
        print(format_table(["", "name", "shape", "dtype", "layout", "quantization"], rows))
        print()
        top = s.ops.most_common(args.top)
        rest = sum(s.ops.values()) - sum(n for _, n in top)
        rows = [[op, n] for op, n in top] + ([["(other)", rest]] if rest else [])
        print(format_table(["operator", "count"], rows))
        print()
        for line in metadata_lines(meta):
            print(line)
        if report is not None:
            _print_coverage(report)
        return _strict(report, args.strict)


def _metadata(path: str) -> dict[str, Any] | None:
    """The model's stored record as JSON (None: it carries none); an unreadable one is reported, not fatal."""
    from edge_sdk.errors import ModelMetadataError
    from edge_sdk.metadata import model_metadata

    try:
        meta = model_metadata(path)
    except ModelMetadataError as e:
        return {"origin": "unreadable", "error": str(e)}
    return meta.to_dict() if meta is not None else None


def metadata_lines(meta: dict[str, Any] | None) -> list[str]:
    """``info``'s text for a stored record (:meth:`edge_sdk.metadata.ModelMetadata.to_dict`)."""
    from edge_sdk.metadata import OVERRIDE_FLAGS

    if meta is None:
        return [
            "metadata      none: no edge_sdk record inside the file and no manifest listing it;",
            f"              `edge-sdk run` needs --task and guesses preprocessing (set it with {OVERRIDE_FLAGS})",
        ]
    if "error" in meta:
        return [f"metadata      unreadable: {meta['error']}"]
    where = "inside the file" if meta["origin"] == "embedded" else f"from {meta['where']}"
    lines = [f"metadata      {meta['origin']} ({where})", f"  task        {meta.get('task') or '-'}"]
    pre = meta.get("preprocessing")
    lines.append(f"  preprocess  {_spec_text(pre) if pre else '-'}")
    labels = meta.get("labels")
    if isinstance(labels, list):
        shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
        lines.append(f"  labels      {len(labels)} classes: {shown}")
    else:
        lines.append(f"  labels      {labels or '-'}")
    lines.append(f"  layout      {meta.get('input_layout') or '-'}")
    src = meta.get("source") or {}
    if src:
        lines.append(f"  source      {src.get('model') or '?'} ({src.get('kind') or '?'}), "
                     f"sha256 {str(src.get('sha256') or '?')[:16]}")  # fmt: skip
    conv = meta.get("conversion") or {}
    if conv:
        quant = f", {conv['quantizer']}" if conv.get("quantizer") else ""
        check = "passed" if conv.get("passed") else "FAILED: " + "; ".join(conv.get("failures") or [])
        lines.append(f"  conversion  {conv.get('target')} {conv.get('precision')} via {conv.get('tool')}{quant}; "
                     f"validation {check}; edge_sdk {conv.get('edge_sdk')}")  # fmt: skip
    return lines


def _spec_text(pre: dict[str, Any]) -> str:
    if pre.get("kind") == "audio":
        return f"audio {pre.get('sample_rate')} Hz, window {pre.get('window')}, context {pre.get('context')}"
    size = "x".join(str(v) for v in pre.get("size") or [])
    return (f"{size} {pre.get('resize')}, {pre.get('channels')}, mean {pre.get('mean')} std {pre.get('std')}, "
            f"{pre.get('layout')} {pre.get('dtype')}")  # fmt: skip


def _print_coverage(report: Any) -> None:
    print(f"\ncoverage on {report.target} ({report.backend}): {report.summary()}")
    off = report.off_target
    if off:
        rows = [[n.name, n.op, n.placed_on or "-", n.status] for n in off[:50]]
        print(format_table(["node", "operator", "runs on", "status"], rows))
        if len(off) > 50:
            print(f"... and {len(off) - 50} more")
    for note in report.notes:
        print(f"note: {note}")


def _strict(report: Any, strict: bool) -> int:
    if strict and report is not None:
        report.check_strict()
    return 0


def _quant_text(q: QuantParams) -> str:
    if q.axis is None:
        return f"scale={float(q.scale):.6g} zp={int(q.zero_point)}"
    return f"per-channel (axis {q.axis}, {len(q.scale)} scales)"
