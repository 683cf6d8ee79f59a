"""``diff(original, artifact)``: run both on the same inputs and compare every matched intermediate tensor."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from converters.diff.matching import Match, match
from converters.diff.reference import Reference, open_reference
from converters.diff.report import (
    DEFAULT_SNR_JUMP_DB,
    DEFAULT_THRESHOLD,
    Accumulator,
    DiffReport,
    LayerDiff,
    input_snrs,
)
from converters.diff.trace import Trace, Tracer, open_tracer
from converters.layout import adapt_feeds, align_output, pair_outputs
from edge_sdk.errors import CalibrationError, DiffError, EdgeSDKError, ModelFileError, first_line
from edge_sdk.progress import Progress

log = logging.getLogger("edge_sdk.diff")


def diff(
    original: Any,
    artifact: str | Path,
    *,
    inputs: Any = None,
    samples: int = 8,
    threshold: float = DEFAULT_THRESHOLD,
    snr_jump_db: float = DEFAULT_SNR_JUMP_DB,
    preprocess: Any = None,
    allow_lambda: bool = False,
    allow_pickle: bool = False,
    verbose: bool = False,
    progress: bool | None = None,
) -> DiffReport:
    """Compare ``artifact`` (ONNX, OpenVINO IR or TFLite) with ``original`` layer by layer.

    ``original``: a path to an ``.onnx``, ``.tflite``, ``.pt2``, ``.keras``/``.h5`` or SavedModel, or
    ``"zoo:NAME"`` (PyTorch and Keras originals are traced as their ONNX export). ``inputs``: an image
    folder, ``.npy``/``.npz`` or anything :func:`converters.calibration.load_calibration` takes; default:
    the held-out inputs ``converters.convert`` validates with (real photo crops for image models).
    ``samples``: how many inputs. ``verbose``: let the exporters and runtimes print (else stdout stays clean
    for ``--json``). ``progress``: a bar on stderr (default: when it is a terminal). Matching and
    first-divergence rules: :mod:`converters.diff.matching`, :mod:`converters.diff.report`.
    """
    from converters.atomic import temp_workdir
    from edge_sdk._quiet import native_output

    if samples < 1:
        raise CalibrationError("--samples must be >= 1")
    artifact = Path(artifact)
    if not artifact.exists():
        raise ModelFileError(f"artifact not found: {artifact}; pass a converted .onnx, .xml (OpenVINO) or .tflite")
    with temp_workdir("edge-sdk-diff-") as work:
        with native_output(verbose), contextlib.redirect_stdout(sys.stderr):  # exporters print; --json stays clean
            art_tracer = open_tracer(artifact)
            ref = open_reference(original, work, allow_lambda=allow_lambda, allow_pickle=allow_pickle)
            feeds, origin, synthetic = _inputs(ref, artifact, inputs, preprocess, samples)
        with contextlib.redirect_stdout(sys.stderr):
            return _compare(ref, art_tracer, feeds, str(original), str(artifact), origin, synthetic, threshold,
                            snr_jump_db, progress)  # fmt: skip


def _inputs(
    ref: Reference, artifact: Path, inputs: Any, preprocess: Any, n: int
) -> tuple[list[list[np.ndarray]], str, bool]:
    """Samples in the original's input order, where they came from, and whether they are random: the user's
    ``inputs``, else the held-out inputs ``convert`` validates with."""
    from converters.plan.data_stage import held_out_inputs

    source = ref.source
    preprocess = preprocess or source.preprocess or _stored_preprocess(artifact, source.path)
    held = held_out_inputs(inputs, source, preprocess, n)
    return held.samples[:n], held.origin, held.synthetic


def _stored_preprocess(*paths: Path | None) -> Any:
    """The preprocessing the artifact (or the original) records about itself (embedded or manifest), if any."""
    from edge_sdk.metadata import model_metadata

    for path in paths:
        if path is not None and path.is_file() and path.suffix.lower() in (".onnx", ".tflite", ".xml"):
            try:
                meta = model_metadata(path)
            except EdgeSDKError as e:  # unreadable metadata: the preprocessing is then not known from it
                log.warning("%s", e)
                continue
            spec = meta.preprocess_spec() if meta is not None else None
            if spec is not None:
                return spec
    return None


def _run(tracer: Tracer, sample: list[np.ndarray], names: list[str], role: str) -> Trace:
    """``tracer`` run on ``sample`` (the original's inputs, reordered and transposed for it)."""
    feeds = adapt_feeds(sample, tracer.inputs, names)
    if len(feeds) != len(tracer.inputs) or len(sample) != len(tracer.inputs):
        raise DiffError(
            f"the {role} {tracer.path.name} has {len(tracer.inputs)} input(s), the original {len(sample)}: "
            "is it a conversion of this original?"
        )
    for x, spec in zip(feeds, tracer.inputs):
        if len(x.shape) != len(spec.shape) or any(d is not None and d != g for d, g in zip(spec.shape, x.shape)):
            raise DiffError(
                f"the {role} {tracer.path.name} input '{spec.name}' expects {spec.shape_str()}, the original's "
                f"inputs are {list(x.shape)}: is it a conversion of this original (same input shapes)?"
            )
    try:
        return tracer.run(feeds)
    except EdgeSDKError:
        raise
    except Exception as e:
        raise DiffError(f"running the {role} {tracer.path.name} failed: {first_line(e)}") from None


def _compare(
    ref: Reference,
    art: Tracer,
    feeds: list[list[np.ndarray]],
    original: str,
    artifact: str,
    origin: str,
    synthetic: bool,
    threshold: float,
    snr_jump_db: float,
    progress: bool | None = None,
) -> DiffReport:
    names = [s.name for s in ref.source.inputs]
    matches: list[Match] = []
    acc: list[Accumulator] = []
    out_acc: list[Accumulator] = []
    export_acc: list[Accumulator] = []
    order: list[int] = []
    first_ref: Trace | None = None
    first_art: Trace | None = None
    for k, sample in enumerate(Progress(feeds, len(feeds), "diff", progress)):
        ref_trace = _run(ref.tracer, sample, names, "reference")
        art_trace = _run(art, sample, names, "artifact")
        if k == 0:
            first_ref, first_art = ref_trace, art_trace
            matches = match(ref_trace.tensors, art_trace.tensors)
            acc = [Accumulator() for _ in matches]
            try:
                order = pair_outputs(ref_trace.outputs, art_trace.outputs)
            except ValueError as e:
                raise DiffError(f"{art.path.name}'s outputs do not correspond to the original's: {e}") from None
            out_acc = [Accumulator() for _ in order]
            log.info("diff: %d of %d reference tensors matched", len(matches), len(ref_trace.tensors))
        for m, a in zip(matches, acc):
            r = ref_trace.tensors[m.ref].value
            a.add(r, m.transform.apply(art_trace.tensors[m.art].value, r.shape))
        for i, (j, a) in enumerate(zip(order, out_acc)):
            r = np.asarray(ref_trace.outputs[i])
            a.add(r, align_output(np.asarray(art_trace.outputs[j]), r))
        if ref.exported:  # how faithful the traced export is to the original itself
            own = ref.source.run(sample)
            export_acc = export_acc or [Accumulator() for _ in own]
            for a, o, r in zip(export_acc, own, ref_trace.outputs):
                a.add(np.asarray(o), align_output(np.asarray(r), np.asarray(o)))
    assert first_ref is not None and first_art is not None
    layers = [_layer(m, a, first_ref, first_art) for m, a in zip(matches, acc)]
    input_snrs(layers, {t.name: t.inputs for t in first_ref.tensors})
    matched_ref = {m.ref for m in matches}
    report = DiffReport(
        original=original,
        artifact=artifact,
        reference=ref.description,
        inputs={"count": len(feeds), "origin": origin, "synthetic": synthetic},
        layers=layers,
        outputs=[
            {"name": ref.tracer.output_names[i], "cosine": a.cosine, "snr_db": a.snr_db} for i, a in enumerate(out_acc)
        ],
        threshold=threshold,
        snr_jump_db=snr_jump_db,
        unmatched_reference=[t.name for i, t in enumerate(first_ref.tensors) if i not in matched_ref],
        unmatched_artifact=len(first_art.tensors) - len(matches),
    )
    report.notes += _notes(ref, art, export_acc, synthetic, len(matches))
    return report


def _layer(m: Match, a: Accumulator, ref: Trace, art: Trace) -> LayerDiff:
    r, t = ref.tensors[m.ref], art.tensors[m.art]
    return LayerDiff(
        index=m.ref,
        name=r.name,
        node=r.node,
        op=r.op,
        shape=list(r.value.shape),
        artifact=t.name,
        artifact_node=t.node,
        artifact_op=t.op,
        match=m.by,
        layout=m.transform.describe(),
        quantized=t.quantized,
        cosine=a.cosine,
        snr_db=a.snr_db,
        max_abs_error=a.max_abs,
        inputs=list(r.inputs),
    )


def _notes(ref: Reference, art: Tracer, export_acc: list[Accumulator], synthetic: bool, matched: int) -> list[str]:
    notes = []
    if not matched:
        notes.append("no intermediate tensor could be paired (names and shapes all differ): only outputs compared")
    if ref.exported:
        cos = min((a.cosine for a in export_acc), default=float("nan"))
        notes.append(f"reference = {ref.description}; its outputs vs the original's: cosine {cos:.6f}")
    if synthetic:
        notes.append("inputs are seeded random numbers: pass --inputs with data of the model's kind for real ranges")
    if "tflite" in (art.format, ref.tracer.format):
        notes.append("TFLite traced with its builtin kernels (no XNNPACK delegate, which keeps no intermediates)")
    return notes
