"""A conversion as a plan of stages, each in one place:

1. open (:mod:`.source_stage`): check targets, load the source, refuse options that cannot apply;
2. prepare: data (:mod:`.data_stage`: calibration, held-out inputs and the original's outputs on them),
   then pruning (:mod:`converters.prune`), which later stages see as the source;
3. per target and precision (:mod:`.artifact_stage`): export -> quantize -> validate -> publish;
4. manifest: the record of the run, beside the artifacts (each artifact also carries its own).

Configured by :class:`~converters.plan.options.ConversionOptions`; ``converters.convert()`` and the CLI
build the same objects.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from converters.atomic import (
    disk_space_errors,
    ensure_writable_dir,
    remove_stale_temp_files,
    staging_dir,
    temp_root,
    temp_workdir,
)
from converters.embed_metadata import artifact_metadata
from converters.manifest import OutputFolder
from converters.plan.artifact_stage import ArtifactMaker, companions
from converters.plan.data_stage import prepare_data
from converters.plan.options import ConversionOptions
from converters.plan.results import ArtifactReport, ConversionResult
from converters.plan.source_stage import check_options, check_targets, default_name, open_model
from converters.quantizers import NEEDS_CALIBRATION, check_precision
from converters.quantizers.fallback import has_fallback
from converters.routes import TARGET_SUFFIX, RouteContext, find_route
from converters.validate import run_reference, validate_artifact
from edge_sdk._quiet import native_output, quiet_third_party
from edge_sdk.errors import ValidationFailedError
from edge_sdk.progress import Progress

log = logging.getLogger("edge_sdk")

__all__ = ["ArtifactReport", "ConversionOptions", "ConversionPlan", "ConversionResult"]


class ConversionPlan:
    """``model`` to every target at every precision, validated against the original, published atomically."""

    def __init__(self, model: Any, targets: str | Sequence[str], precisions: str | Sequence[str],
                 options: ConversionOptions | None = None) -> None:  # fmt: skip
        self.model = model
        self.targets = [targets] if isinstance(targets, str) else list(targets)
        self.precisions = [check_precision(p) for p in ([precisions] if isinstance(precisions, str) else precisions)]
        self.options = options or ConversionOptions()

    def run(self) -> ConversionResult:
        opts = self.options
        quiet_third_party(opts.output.verbose)
        out_dir = ensure_writable_dir(opts.output.output_dir)
        remove_stale_temp_files(out_dir)  # dead runs' only: a live one may be writing here too
        folder = OutputFolder(out_dir)  # its manifest.json describes the files beside it at every moment
        check_targets(self.model, self.targets)
        with disk_space_errors(out_dir, temp_root()), temp_workdir("edge-sdk-convert-") as tmp:  # disk full: typed
            ctx = RouteContext(workdir=Path(tmp), opset=opts.source.opset, verbose=opts.output.verbose,
                               input_shapes=dict(opts.source.input_shapes or {}),
                               tflite_sparse=opts.quant.tflite_sparse)  # fmt: skip
            # 1. open
            source = open_model(self.model, opts, ctx)
            qat_spec = check_options(source, self.targets, self.precisions, opts)
            preprocess = opts.data.preprocess if opts.data.preprocess is not None else source.preprocess
            base = opts.output.name or default_name(self.model, source)
            # 2. prepare: data, then pruning (validation always compares with the unpruned original)
            d = opts.data
            needed, rank_only = self._needs_calibration()
            calib, held = prepare_data(source, d.calibration, d.held_out, preprocess, d.validate_samples,
                                       needed or (rank_only and d.calibration is not None))  # fmt: skip
            held = run_reference(source, held)
            original, tolerances, pruning = source, opts.output.tolerances, None
            if opts.quant.prune is not None:
                source, base, tolerances, pruning = self._prune(original, base, held, preprocess, ctx, folder)
            # 3. per target and precision: export -> quantize -> validate -> publish
            maker = ArtifactMaker(source, ctx, base, opts.source.static, opts.quant, qat_spec, preprocess)
            reports: list[ArtifactReport] = []
            jobs = [(t, p) for t in self.targets for p in self.precisions]
            with staging_dir(out_dir) as stage:
                on_artifact = opts.output.progress if callable(opts.output.progress) else None
                bar = False if on_artifact else opts.output.progress
                for target, prec in Progress(jobs, len(jobs), "convert", bar):
                    start = time.monotonic()
                    route = find_route(source.kind, target)
                    staged = stage / f"{base}_{prec}{TARGET_SUFFIX[target]}"

                    def validate(path: Path, prec: str = prec) -> tuple[Any, Any]:
                        return validate_artifact(original, path, held, prec, tolerances)

                    with native_output(opts.output.verbose):
                        made = maker.make(target, prec, route, staged, calib, validate)
                    metrics, fails = made.checked[:2] if made.checked else validate(staged)
                    if target == "tflite":  # outputs by position as in the other targets (see the module)
                        from converters.tflite_outputs import put_outputs_in_source_order

                        put_outputs_in_source_order(staged, original, held)
                    final = out_dir / staged.name
                    quantizer = maker.quantizer_name(target, prec)
                    meta = artifact_metadata(original, preprocess, target, prec, metrics, fails,
                                             quantizer=None if prec == "fp32" else quantizer,
                                             tool=ctx.used_tool.get(target, route.tool), labels=d.labels,
                                             task=d.task)  # fmt: skip
                    folder.publish(companions(staged, final), metadata=meta)  # the record goes inside the file too
                    reports.append(ArtifactReport(
                        target=target, precision=prec, path=final,
                        size_bytes=sum(p.stat().st_size for p in companions(final, final).values()),
                        sha256=folder.files[final.name]["sha256"],
                        route=(f"{source.kind} -> {target} ({ctx.used_tool[target]})" if target in ctx.used_tool
                               else " -> ".join([source.kind, *route.via, target]) + f" ({route.tool})"),
                        quantizer=quantizer, metrics=metrics, failures=fails, seconds=time.monotonic() - start,
                        fallback=made.checked[2].to_dict() if made.checked and made.checked[2] else None,
                        isa=made.scheme.to_dict() if made.scheme is not None else None,
                    ))  # fmt: skip
                    log.info("%s %s: %s", target, prec, "ok" if not fails else "; ".join(fails))
                    if on_artifact:
                        on_artifact(reports[-1])
            # 4. manifest
            src_info = self._source_info(original)
            manifest = self._write_manifest(folder, src_info, source, preprocess, calib, held, pruning, maker,
                                            reports)  # fmt: skip
        result = ConversionResult(out_dir, reports, manifest, src_info, held.describe())
        if not result.passed and not opts.output.allow_degraded:
            failed = [f"{a.path.name}: {'; '.join(a.failures)}" for a in reports if not a.passed]
            raise ValidationFailedError(
                f"{len(failed)} artifact(s) outside tolerance (see {manifest}): "
                + " | ".join(failed)
                + " — pass --allow-degraded to accept"
            )
        return result

    def _needs_calibration(self) -> tuple[bool, bool]:
        """(static int8 needs calibration samples, int8-dynamic takes the user's only to rank layers for its
        fallback; without them the fallback generates its own, see :func:`.data_stage.ranking_samples`)."""
        needed = bool(NEEDS_CALIBRATION & set(self.precisions))
        fallback = self.options.quant.fallback and any(has_fallback(t, "int8-dynamic") for t in self.targets)
        return needed, not needed and fallback and "int8-dynamic" in self.precisions

    def _prune(self, original: Any, base: str, held: Any, preprocess: Any, ctx: RouteContext,
               folder: OutputFolder) -> tuple[Any, str, dict[str, float], dict[str, Any]]:  # fmt: skip
        from converters.prune.api import prune_source
        from converters.prune.spec import parse_prune

        spec = parse_prune(self.options.quant.prune)
        base = f"{base}_{spec.tag}"
        save_to = folder.path / base if spec.save_source else None
        if save_to is not None:  # the manifest stops listing it before it changes
            folder.retract(save_to.with_suffix(s).name for s in (".pt2", ".keras", ".onnx"))
        source, pruning = prune_source(original, spec, ctx, held=held, save_to=save_to, preprocess=preprocess)
        if pruning.get("saved"):
            folder.record(Path(pruning["saved"]))
        return source, base, {**spec.tolerances(), **(self.options.output.tolerances or {})}, pruning

    def _source_info(self, original: Any) -> dict[str, Any]:
        return {
            "model": str(self.model) if isinstance(self.model, (str, Path)) else original.description,
            "kind": original.kind,
            "sha256": original.sha256,
            "inputs": [s.to_dict() for s in original.inputs],
            "outputs": original.output_names,
        }

    def _write_manifest(self, folder: OutputFolder, src_info: dict[str, Any], source: Any, preprocess: Any,
                        calib: Any, held: Any, pruning: Any, maker: ArtifactMaker,
                        reports: list[ArtifactReport]) -> Path:  # fmt: skip
        so, q = self.options.source, self.options.quant
        qat_info, rounding_info = maker.adaptation_info()
        return folder.write_manifest(
            {
                "source": src_info,
                "options": {"targets": self.targets, "precisions": self.precisions, "opset": so.opset,
                            "int8_io": q.int8_io, "tflite_sparse": q.tflite_sparse, "static": so.static,
                            "input_shapes": {k: list(v) for k, v in (so.input_shapes or {}).items()}},
                "preprocessing": preprocess.to_dict() if preprocess is not None else None,
                "labels": "imagenet-1k" if source.labels and len(source.labels) == 1000 else None,
                "task": source.task,
                "calibration": calib.describe() if calib else None,
                "validation": held.describe(),
                "pruning": pruning,
                "qat": qat_info,
                "weight_rounding": rounding_info,
                "artifacts": reports,
            },
        )  # fmt: skip
