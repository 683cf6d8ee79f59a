"""``converters.convert``: one call from a trained model to validated TFLite / ONNX / OpenVINO artifacts."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converters.atomic import (
    disk_space_errors,
    ensure_writable_dir,
    remove_stale_temp_files,
    staging_dir,
    temp_root,
    temp_workdir,
)
from converters.calibration import CalibrationSet, load_calibration
from converters.embed_metadata import artifact_metadata
from converters.manifest import OutputFolder
from converters.metrics import OutputMetrics
from converters.quantizers import NEEDS_CALIBRATION, TOOLS, check_precision, quantize
from converters.routes import TARGET_SUFFIX, RouteContext, find_route
from converters.sources import SourceModel, open_source
from converters.stateful import roll_state, with_default_extras
from converters.validate import HeldOut, run_reference, validate_artifact
from edge_sdk._quiet import native_output, quiet_third_party
from edge_sdk.errors import ConversionError, ValidationFailedError
from edge_sdk.preprocess import AudioSpec
from edge_sdk.progress import Progress

log = logging.getLogger("edge_sdk")


@dataclass
class ArtifactReport:
    target: str
    precision: str
    path: Path
    size_bytes: int
    sha256: str
    route: str
    quantizer: str
    metrics: list[OutputMetrics]
    failures: list[str]
    seconds: float
    latency: dict[str, float] = field(default_factory=dict)
    fallback: dict[str, Any] | None = None  # static int8: the layers kept float and what they cost
    isa: dict[str, Any] | None = None  # static int8: the ISA and int8 scheme it was made for

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "precision": self.precision,
            "path": self.path.name,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "route": self.route,
            "quantizer": self.quantizer,
            "passed": self.passed,
            "failures": self.failures,
            "metrics": [m.to_dict() for m in self.metrics],
            "seconds": round(self.seconds, 2),
            "latency": self.latency,
            "fallback": self.fallback,
            "isa": self.isa,
        }


@dataclass
class ConversionResult:
    output_dir: Path
    artifacts: list[ArtifactReport]
    manifest_path: Path
    source: dict[str, Any]

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.artifacts)

    @property
    def report(self) -> list[dict[str, Any]]:
        """Per artifact: agreement, size, latency (when benchmarked)."""
        return [a.to_dict() for a in self.artifacts]

    def artifact(self, target: str, precision: str) -> ArtifactReport:
        for a in self.artifacts:
            if (a.target, a.precision) == (target, precision):
                return a
        raise KeyError(f"no {target} {precision} artifact in this result")


def convert(
    model: Any,
    to: Sequence[str] = ("onnx",),
    *,
    precision: str | Sequence[str] = "fp32",
    calibration: Any = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    output_dir: str | Path = "out",
    example_inputs: Sequence[Any] | None = None,
    preprocess: Any = None,
    held_out: Any = None,
    validate_samples: int = 64,
    opset: int = 17,
    int8_io: bool = False,
    tflite_sparse: bool = False,
    static: bool = False,
    allow_degraded: bool = False,
    allow_lambda: bool = False,
    allow_pickle: bool = False,
    tolerances: dict[str, float] | None = None,
    name: str | None = None,
    verbose: bool = False,
    progress: bool | None = None,
    prune: Any = None,
    qat: Any = None,
    weight_rounding: str = "nearest",
    labels: Sequence[str] | None = None,
    task: str | None = None,
    fallback: bool = True,
    target_isa: str | None = None,
) -> ConversionResult:
    """Convert ``model`` to each target at each precision, validate each artifact, write a manifest.

    ``model``: a ``torch.nn.Module`` (with ``example_inputs``), or a path to a ``.pt2``,
    ``.keras``/``.h5``, SavedModel folder, ``.onnx`` or ``.tflite``, or ``"zoo:NAME"``.
    ``calibration``: images folder, ``.npy``/``.npz``, WAV folder, arrays, or ``"synthetic"``
    (needed for ``int8``). ``held_out``: validation inputs (never the calibration ones);
    real images for zoo image models, else seeded random inputs marked synthetic.
    Raises :class:`ValidationFailedError` when an artifact misses its precision's tolerance,
    unless ``allow_degraded`` (the manifest records it either way).
    ``tflite_sparse``: TFLite weights stored sparse (pays off after magnitude pruning; measured in
    ``benchmarks/sparse_tflite.py``).
    ``prune``: ``"channel:0.25"``, ``"magnitude:0.5"`` or a :class:`converters.prune.PruneSpec`: prune (and
    fine-tune) first; every artifact is then validated against the *unpruned* original and the manifest
    records the pruning report (a pruned model only has to meet the spec's ``min_agreement``).
    ``qat``: a :class:`converters.quantizers.qat.QATSpec` (or a dict of its fields): int8 of a PyTorch
    source is then fine-tuned quantization-aware (NNCF + distillation) once, for every target.
    ``weight_rounding``: ``"gptq"`` rounds a PyTorch source's weights onto their int8 grid once with GPTQ on the
    calibration data (error-compensating, :mod:`converters.quantizers.gptq`) before every target's quantizer;
    ``"nearest"`` (default) leaves rounding to each quantizer.
    ``labels`` / ``task``: class names and pipeline task (classify, detect, vad) stored inside every artifact
    (default: the zoo model's; ImageNet-1k is stored by name), so ``edge-sdk run`` needs neither.
    ``allow_lambda`` / ``allow_pickle``: trust the file: run a Keras file's Lambda layers / load a ``.pt2``
    unchecked, as torch does (its pickles and program code run). Off by default: such files are refused.
    ``fallback``: a static int8 artifact that misses its tolerance is re-quantized with its worst layers kept float
    until it passes or a budget is spent (:mod:`converters.quantizers.fallback`); False keeps plain int8.
    ``target_isa``: the CPU the int8 artifacts are for (``x86-avx2``, ``x86-vnni``, ``arm64-dotprod``, ...: see
    :mod:`converters.quantizers.isa`); default: this machine's.
    """
    quiet_third_party(verbose)
    targets = [to] if isinstance(to, str) else list(to)
    precisions = [check_precision(p) for p in ([precision] if isinstance(precision, str) else precision)]
    out_dir = ensure_writable_dir(output_dir)
    remove_stale_temp_files(out_dir)  # dead runs' only: a live one may be writing here too
    folder = OutputFolder(out_dir)  # its manifest.json describes the files beside it at every moment
    unknown = [t for t in targets if t not in TARGET_SUFFIX]
    if unknown:
        raise ConversionError(f"unknown target(s) {unknown}; targets are {', '.join(TARGET_SUFFIX)}")

    _precheck(model, targets)
    with disk_space_errors(out_dir, temp_root()), temp_workdir("edge-sdk-convert-") as tmp:  # disk full: typed
        ctx = RouteContext(workdir=Path(tmp), opset=opset, verbose=verbose, input_shapes=dict(input_shapes or {}),
                           tflite_sparse=tflite_sparse)  # fmt: skip
        source = _open(model, example_inputs, ctx, allow_lambda, static, allow_pickle)
        qat_spec = _qat_spec(qat, source, precisions)
        _check_rounding(weight_rounding, source, precisions, qat_spec)
        if tflite_sparse and "tflite" in targets and source.kind not in TF_KINDS:
            raise ConversionError(
                f"--tflite-sparse needs TFLiteConverter; a {source.kind} source is re-quantized by ai-edge-quantizer, "
                "which has no sparse encoding: convert from the original model (Keras, SavedModel, ONNX, PyTorch)"
            )
        if preprocess is None:
            preprocess = source.preprocess
        base = name or _default_name(model, source)
        for t in targets:
            find_route(source.kind, t)
        calib_data, held_part = _split_user_data(calibration, held_out, source, preprocess, validate_samples)
        calib = None
        if NEEDS_CALIBRATION & set(precisions):
            calib = _calibration(calib_data, source, preprocess)
        held = run_reference(source, held_part or _held_out(held_out, source, preprocess, validate_samples))
        original, pruning = source, None
        if prune is not None:  # validation below compares every artifact with the unpruned original
            from converters.prune.api import prune_source
            from converters.prune.spec import parse_prune

            spec = parse_prune(prune)
            base = f"{base}_{spec.tag}"
            save_to = out_dir / base if spec.save_source else None
            if save_to is not None:  # the manifest stops listing it before it changes
                folder.retract(save_to.with_suffix(s).name for s in (".pt2", ".keras", ".onnx"))
            source, pruning = prune_source(original, spec, ctx, held=held, save_to=save_to, preprocess=preprocess)
            if pruning.get("saved"):
                folder.record(Path(pruning["saved"]))
            tolerances = {**spec.tolerances(), **(tolerances or {})}
        reports: list[ArtifactReport] = []
        adaptation: Any = None
        jobs = [(t, p) for t in targets for p in precisions]
        fp32_files: dict[str, Path] = {}
        with staging_dir(out_dir) as stage:
            for target, prec in Progress(jobs, len(jobs), "convert", progress):
                start, checked = time.monotonic(), None
                route = find_route(source.kind, target)
                staged = stage / f"{base}_{prec}{TARGET_SUFFIX[target]}"
                with native_output(verbose):
                    adapt = qat_spec is not None or weight_rounding != "nearest"
                    if adapt and prec == "int8":  # the original's export is not needed for it
                        from converters.quantizers.qat import quantize_for_target

                        if adaptation is None:  # one adaptation serves every target
                            adaptation = _adapt_for_int8(source, calib, qat_spec, preprocess)
                        quantize_for_target(adaptation, route, source, staged, calib, ctx, int8_io=int8_io)
                    else:
                        if target not in fp32_files:
                            fp32_path = ctx.workdir / f"{base}_fp32{TARGET_SUFFIX[target]}"
                            fp32_files[target] = route.load()(source, fp32_path, ctx)
                            if static:
                                fp32_files[target] = _make_static(fp32_files[target], ctx)
                        if prec == "fp32":
                            _copy_model(fp32_files[target], staged)
                        elif prec == "int8":  # static int8 in the ISA's scheme, layers kept float if it must
                            from converters.quantizers.fallback import quantize_with_fallback
                            from converters.quantizers.isa import scheme_for

                            scheme = scheme_for(target_isa)
                            checked = quantize_with_fallback(
                                target, fp32_files[target], staged, calib, ctx,
                                lambda p: validate_artifact(original, p, held, prec, tolerances),
                                enabled=fallback, scheme=scheme, int8_io=int8_io,
                            )  # fmt: skip
                        else:
                            quantize(target, fp32_files[target], staged, prec, calib, ctx, int8_io=int8_io)
                metrics, fails = checked[:2] if checked else validate_artifact(original, staged, held, prec, tolerances)
                final = out_dir / staged.name
                quantizer = None if prec == "fp32" else _quantizer_name(target, prec, qat_spec, weight_rounding)
                meta = artifact_metadata(original, preprocess, target, prec, metrics, fails, quantizer=quantizer,
                                         tool=ctx.used_tool.get(target, route.tool), labels=labels, task=task)  # fmt: skip
                folder.publish(_companions(staged, final), metadata=meta)  # the record goes inside the file too
                reports.append(
                    ArtifactReport(
                        target=target,
                        precision=prec,
                        path=final,
                        size_bytes=sum(p.stat().st_size for p in _companions(final, final).values()),
                        sha256=folder.files[final.name]["sha256"],
                        route=(
                            f"{source.kind} -> {target} ({ctx.used_tool[target]})"
                            if target in ctx.used_tool
                            else " -> ".join([source.kind, *route.via, target]) + f" ({route.tool})"
                        ),
                        quantizer="-" if prec == "fp32" else _quantizer_name(target, prec, qat_spec, weight_rounding),
                        metrics=metrics,
                        failures=fails,
                        seconds=time.monotonic() - start,
                        fallback=checked[2].to_dict() if checked and checked[2] else None,
                        isa=scheme.to_dict() if checked else None,
                    )
                )
                log.info("%s %s: %s", target, prec, "ok" if not fails else "; ".join(fails))
        src_info = {
            "model": str(model) if isinstance(model, (str, Path)) else original.description,
            "kind": original.kind,
            "sha256": original.sha256,
            "inputs": [s.to_dict() for s in original.inputs],
            "outputs": original.output_names,
        }
        manifest = folder.write_manifest(
            {
                "source": src_info,
                "options": {"targets": targets, "precisions": precisions, "opset": opset, "int8_io": int8_io,
                            "tflite_sparse": tflite_sparse,
                            "static": static, "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()}},
                "preprocessing": preprocess.to_dict() if preprocess is not None else None,
                "labels": "imagenet-1k" if source.labels and len(source.labels) == 1000 else None,
                "task": source.task,
                "calibration": calib.describe() if calib else None,
                "validation": held.describe(),
                "pruning": pruning,
                "qat": adaptation.info if qat_spec is not None and adaptation is not None else None,
                "weight_rounding": adaptation.info if qat_spec is None and adaptation is not None else None,
                "artifacts": reports,
            },
        )  # fmt: skip
    result = ConversionResult(out_dir, reports, manifest, src_info)
    if not result.passed and not allow_degraded:
        failed = [f"{a.path.name}: {'; '.join(a.failures)}" for a in reports if not a.passed]
        raise ValidationFailedError(
            f"{len(failed)} artifact(s) outside tolerance (see {manifest}): "
            + " | ".join(failed)
            + " — pass --allow-degraded to accept"
        )
    return result


def _make_static(path: Path, ctx: RouteContext) -> Path:
    """Fix every dynamic input dim (``--input-shape`` values, else 1) for NPUs and delegates.

    ONNX and OpenVINO IR are reshaped in place of the fp32 artifact (``edge_sdk.reshape``); a
    TFLite file cannot be reshaped after conversion, so a dynamic one is an error naming the fix.
    """
    import edge_sdk
    from edge_sdk.reshape import reshape

    if path.suffix == ".tflite":
        with edge_sdk.load(path) as m:
            dynamic = [s.name for s in m.inputs if s.is_dynamic]
        if dynamic:
            raise ConversionError(
                f"--static: the TFLite artifact has dynamic input(s) {dynamic}; TFLite fixes shapes at conversion "
                "time, so export the source with static shapes (e.g. keras.Input(batch_size=1)) and convert again"
            )
        return path
    shapes = {k: v for k, v in ctx.input_shapes.items()} or None
    return reshape(path, shapes, ctx.workdir / f"{path.stem}_static{path.suffix}")


def _default_name(model: Any, source: SourceModel) -> str:
    if isinstance(model, str) and model.startswith("zoo:"):
        return model[4:]
    if isinstance(model, (str, Path)):
        return Path(model).stem
    return source.description.lower() or "model"


def _precheck(model: Any, targets: list[str]) -> None:
    """Refuse ops a target cannot express before any runtime or converter touches the source."""
    from converters.sources import source_kind

    if isinstance(model, (str, Path)) and not str(model).startswith("zoo:"):
        kind = source_kind(model)
        for t in targets:
            find_route(kind, t).precheck(Path(model))


def _open(
    model: Any, example_inputs: Any, ctx: RouteContext, allow_lambda: bool, static: bool, allow_pickle: bool = False
) -> SourceModel:
    if isinstance(model, str) and model.startswith("zoo:"):
        from converters.zoo_source import open_zoo_source

        return open_zoo_source(model[4:], ctx)
    source = open_source(model, example_inputs=example_inputs, input_shapes=ctx.input_shapes, allow_lambda=allow_lambda,
                         allow_pickle=allow_pickle)  # fmt: skip
    if source.kind == "onnx" and ctx.input_shapes:
        from converters.routes.onnx_routes import fix_onnx_shapes

        fixed = fix_onnx_shapes(Path(model), ctx.workdir / f"{Path(model).stem}.onnx", ctx.input_shapes)
        reopened = open_source(fixed)
        reopened.sha256 = source.sha256
        return reopened
    if ctx.input_shapes and static:  # the artifacts get these shapes: calibrate and validate with them
        from dataclasses import replace

        source.inputs = [replace(s, shape=tuple(ctx.input_shapes.get(s.name, s.shape))) for s in source.inputs]
    elif ctx.input_shapes and source.kind not in ("onnx",):
        log.warning("--input-shape applies to ONNX sources; %s sources keep their traced/stored shapes", source.kind)
    return source


def _qat_spec(qat: Any, source: SourceModel, precisions: Sequence[str]) -> Any:
    """The QATSpec to use, or None; refuses QAT where it cannot apply (before any work)."""
    if qat is None:
        return None
    from converters.quantizers.qat import QATSpec

    spec = qat if isinstance(qat, QATSpec) else QATSpec(**qat)
    if "int8" not in precisions:
        raise ConversionError("QAT fine-tunes for static int8: add --precision int8")
    if source.kind not in ("torch", "pt2"):
        raise ConversionError(f"QAT fine-tunes a PyTorch model (module or .pt2); this source is {source.kind}")
    return spec


def _check_rounding(rounding: str, source: SourceModel, precisions: Sequence[str], qat_spec: Any) -> None:
    """Refuse a weight rounding that cannot apply, before any work."""
    from converters.quantizers.gptq import ROUNDINGS

    if rounding not in ROUNDINGS:
        raise ConversionError(f"weight rounding '{rounding}' is unknown; use one of {', '.join(ROUNDINGS)}")
    if rounding == "nearest":
        return
    if "int8" not in precisions:
        raise ConversionError(f"{rounding} weight rounding is for static int8: add --precision int8")
    if source.kind not in ("torch", "pt2"):
        raise ConversionError(f"{rounding} weight rounding needs a PyTorch model (module or .pt2); this source is "
                              f"{source.kind}")  # fmt: skip
    if qat_spec is not None:
        raise ConversionError(f"{rounding} weight rounding and QAT both set the int8 weights: use one of them")


def _adapt_for_int8(source: SourceModel, calib: Any, qat_spec: Any, preprocess: Any) -> Any:
    """The one int8 adaptation every target's int8 comes from: QAT, else GPTQ weight rounding."""
    if qat_spec is not None:
        from converters.quantizers.qat import train_qat

        return train_qat(source, calib, qat_spec, preprocess)
    from converters.quantizers.gptq import gptq_source

    return gptq_source(source, calib)


def _quantizer_name(target: str, precision: str, qat_spec: Any, rounding: str = "nearest") -> str:
    if precision == "int8" and qat_spec is None and rounding != "nearest":
        return f"{TOOLS[target][precision]} of {rounding.upper()}-rounded weights"
    if qat_spec is None or precision != "int8":
        return TOOLS[target][precision]
    if target == "openvino":
        return f"nncf.quantize (PyTorch) + distillation QAT ({qat_spec.epochs} epochs)"
    return f"{TOOLS[target][precision]} of distillation-QAT weights ({qat_spec.epochs} epochs)"


#: source kinds whose TFLite goes through TFLiteConverter (ONNX and PyTorch via onnx2tf's SavedModel)
TF_KINDS = ("keras", "savedmodel", "onnx", "torch", "pt2")


#: share of the user's own data (``--calib`` without ``--held-out``) kept apart for validation
HELD_OUT_SHARE = 0.2
MIN_SPLIT_SAMPLES = 5


def _split_user_data(
    calibration: Any, held_out: Any, source: SourceModel, preprocess: Any, n: int
) -> tuple[Any, HeldOut | None]:
    """The user's own data split 80/20 (deterministic, seeded): calibration part, validation part.

    Validation on data of the user's kind, never on the samples the int8 scales were fitted to. Audio is
    split by recording (a state is carried within one), other data by sample. Without user data, or
    with ``held_out`` given, or too few samples to split: (calibration, None).
    """
    generated = isinstance(calibration, str) and (calibration == "synthetic" or calibration.startswith("photos"))
    user = calibration is not None and not generated
    if not user or held_out is not None:
        return calibration, None
    cs = load_calibration(calibration, source.inputs, preprocess=preprocess)
    if len(cs.samples) < MIN_SPLIT_SAMPLES:
        log.warning("only %d samples in %s: all used for calibration; validation uses generated inputs",
                    len(cs.samples), cs.origin)  # fmt: skip
        return cs, None
    by_group = cs.kind == "wav" and len(set(cs.groups)) >= 2
    keys = sorted(set(cs.groups)) if by_group else list(range(len(cs.samples)))
    order = np.random.default_rng(0).permutation(len(keys))
    held_keys = {keys[i] for i in order[: max(1, round(len(keys) * HELD_OUT_SHARE))]}
    key_of = cs.groups if by_group else list(range(len(cs.samples)))
    pick = [i for i, k in enumerate(key_of) if k in held_keys]
    rest = [i for i, k in enumerate(key_of) if k not in held_keys]
    subset = lambda idx: [cs.groups[i] for i in idx] if cs.groups else []  # noqa: E731
    held_cs = replace(cs, samples=[cs.samples[i] for i in pick], groups=subset(pick))
    streamed = _as_streamed(source, held_cs)
    held = HeldOut(streamed[: max(n, len(streamed))], f"held-out {HELD_OUT_SHARE:.0%} of {cs.origin} "
                   f"({len(pick)} of {len(cs.samples)} samples, seeded split)", cs.synthetic)  # fmt: skip
    calib = replace(cs, samples=[cs.samples[i] for i in rest], groups=subset(rest))
    calib.notes.append(f"{len(pick)} of {len(cs.samples)} samples kept apart for validation")
    return calib, held


def _calibration(calibration: Any, source: SourceModel, preprocess: Any) -> CalibrationSet:
    if calibration is None:
        raise ConversionError(
            "int8 needs calibration data: pass --calib PATH (images, .npy/.npz, WAV folder) "
            "or --calib synthetic to accept random data explicitly (the result is then marked synthetic)"
        )
    if isinstance(calibration, str) and calibration == "synthetic":
        cs = _generated_calibration(source, preprocess)
    else:
        cs = load_calibration(calibration, source.inputs, preprocess=preprocess)
    return replace(cs, samples=_as_streamed(source, cs))


GENERATED_CALIBRATION_SAMPLES = 64


def _generated_calibration(source: SourceModel, preprocess: Any) -> CalibrationSet:
    """``--calib synthetic``: no data from the user, so the best we can generate, from the calibration split:
    photo crops for image inputs, speech for audio, token ids inside the vocabulary; random values only for
    inputs of no known kind. Marked synthetic: int8 scales from it are a guess about the user's data."""
    from converters.realistic_inputs import realistic_samples

    samples, origin, _ = realistic_samples(source, GENERATED_CALIBRATION_SAMPLES, preprocess=preprocess, seed=0,
                                           split="calibration")  # fmt: skip
    cs = CalibrationSet(samples, "synthetic", f"generated: {origin}", synthetic=True,
                        input_names=[s.name for s in source.inputs])  # fmt: skip
    cs.notes.append("generated calibration (no --calib data): int8 scales may not fit your data")
    log.warning(cs.notes[-1])
    return cs


def _as_streamed(source: SourceModel, cs: CalibrationSet) -> list[list[Any]]:
    """``cs``'s samples as the model sees them in use: audio windows get the source's extra inputs, and a
    recurrent state is carried window to window (see :mod:`converters.stateful`)."""
    samples = with_default_extras(source, cs.samples) if cs.kind == "wav" else cs.samples
    return roll_state(source, samples, cs.groups)


def _held_out(held_out: Any, source: SourceModel, preprocess: Any, n: int) -> HeldOut:
    if held_out is not None:
        cs = load_calibration(held_out, source.inputs, preprocess=preprocess, limit=n)
        return HeldOut(_as_streamed(source, cs), cs.origin, cs.synthetic)
    if isinstance(preprocess, AudioSpec):
        from converters import datasets

        windows = datasets.held_out_speech(preprocess, n)
        if windows:
            samples = roll_state(source, with_default_extras(source, [[w] for w in windows]), [0] * len(windows))
            return HeldOut(samples, "held-out speech (espeak-ng), state carried", False)
    if preprocess is not None and hasattr(preprocess, "size") and len(source.inputs) == 1:
        from converters import datasets

        if datasets.available_photos():
            images = datasets.held_out_images(n, preprocess.size)
            return HeldOut([[preprocess.apply(im)] for im in images], "held-out real photo crops", False)
    from converters.realistic_inputs import realistic_samples

    samples, origin, synthetic = realistic_samples(source, n, preprocess=preprocess)
    if synthetic:
        log.warning("validating on partly random inputs (%s): pass --held-out or --calib with your own data", origin)
    return HeldOut(samples, origin, synthetic)


def _companions(path: Path, final: Path) -> dict[Path, Path]:
    """Files that make up one artifact, companions first (OpenVINO .bin before .xml)."""
    if path.suffix == ".xml":
        return {path.with_suffix(".bin"): final.with_suffix(".bin"), path: final}
    return {path: final}


def _copy_model(src: Path, dst: Path) -> None:
    for s, d in _companions(src, dst).items():
        shutil.copyfile(s, d)
