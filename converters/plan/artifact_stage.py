"""Stage 3, per target and precision: export the fp32 artifact once per target, then quantize it (static
int8 in the target ISA's scheme, with layers kept float when it must), or take it from the one int8
adaptation (QAT / GPTQ) shared by every target."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from converters.quantizers import TOOLS, quantize
from converters.quantizers.fallback import has_fallback
from converters.routes import TARGET_SUFFIX, Route, RouteContext
from converters.sources import SourceModel
from edge_sdk.errors import ConversionError


@dataclass
class Produced:
    """What the artifact stage made: validation already done by the int8 fallback (if it ran), and its report."""

    checked: tuple[Any, ...] | None = None  # (metrics, failures, fallback report) from quantize_with_fallback
    scheme: Any = None  # the ISA int8 scheme used (static int8 only)


@dataclass
class ArtifactMaker:
    """Exports and quantizes; remembers each target's fp32 file and the int8 adaptation across jobs."""

    source: SourceModel
    ctx: RouteContext
    base: str
    static: bool
    quant: Any  # QuantOptions
    qat_spec: Any
    preprocess: Any
    fp32_files: dict[str, Path] = field(default_factory=dict)
    adaptation: Any = None

    def export(self, target: str, route: Route) -> Path:
        """The fp32 artifact of ``target`` (made once, in the scratch folder)."""
        if target not in self.fp32_files:
            self.ctx.tf_select_ops = self.quant.tf_select_ops
            fp32_path = self.ctx.workdir / f"{self.base}_fp32{TARGET_SUFFIX[target]}"
            self.fp32_files[target] = route.load()(self.source, fp32_path, self.ctx)
            if self.static:
                self.fp32_files[target] = make_static(self.fp32_files[target], self.ctx)
        return self.fp32_files[target]

    def make(
        self, target: str, precision: str, route: Route, staged: Path, calib: Any, validate: Callable[[Path], Any]
    ) -> Produced:
        """Write the ``precision`` artifact of ``target`` to ``staged``."""
        q = self.quant
        if precision == "int8" and (self.qat_spec is not None or q.weight_rounding != "nearest"):
            return self._from_adaptation(target, route, staged, calib, validate)
        fp32 = self.export(target, route)
        if precision == "fp32":
            copy_model(fp32, staged)
            return Produced()
        if precision == "int8":  # static int8 in the ISA's scheme, layers kept float if it must
            return self._static_int8(target, fp32, staged, calib, self.ctx, validate)
        if precision == "int8-dynamic" and has_fallback(target, precision):  # weights kept float if they must
            from functools import partial

            from converters.plan.data_stage import ranking_samples
            from converters.quantizers.fallback import quantize_with_fallback

            ranking = calib if calib is not None else partial(ranking_samples, self.source, self.preprocess)
            checked = quantize_with_fallback(target, fp32, staged, ranking, self.ctx, validate, precision=precision,
                                             enabled=q.fallback, max_fraction=q.fallback_budget,
                                             int8_io=q.int8_io)  # fmt: skip
            return Produced(checked)
        quantize(target, fp32, staged, precision, calib, self.ctx, int8_io=q.int8_io)
        return Produced()

    def _static_int8(self, target: str, fp32: Path, staged: Path, calib: Any, ctx: RouteContext,
                     validate: Callable[[Path], Any], **options: Any) -> Produced:  # fmt: skip
        """Static int8 of ``fp32`` in the target ISA's scheme, validated, with layers kept float when it misses."""
        from converters.quantizers.fallback import quantize_with_fallback
        from converters.quantizers.isa import scheme_for

        scheme = scheme_for(self.quant.target_isa)
        checked = quantize_with_fallback(target, fp32, staged, calib, ctx, validate, enabled=self.quant.fallback,
                                         max_fraction=self.quant.fallback_budget, scheme=scheme,
                                         int8_io=self.quant.int8_io, **options)  # fmt: skip
        return Produced(checked, scheme)

    def _from_adaptation(self, target: str, route: Route, staged: Path, calib: Any,
                         validate: Callable[[Path], Any]) -> Produced:  # fmt: skip
        """int8 from the one QAT / GPTQ adaptation every target shares: its float export goes through the same
        per-ISA static int8 and fallback as a plain conversion (it used to skip both, so GPTQ int8 on an x86 CPU
        without VNNI saturated: EfficientNet-Lite0 74.5% top-1 agreement in OpenVINO)."""
        from converters.quantizers.qat import export_adapted, save_student

        if self.adaptation is None:  # one adaptation serves every target
            self.adaptation = adapt_for_int8(self.source, calib, self.qat_spec, self.preprocess)
        if save_student(self.adaptation, route, self.source, staged):  # OpenVINO after QAT: the student's own IR
            return Produced()
        fp32, own, options = export_adapted(self.adaptation, route, self.ctx)
        return self._static_int8(target, fp32, staged, calib, own, validate, **options)

    def quantizer_name(self, target: str, precision: str) -> str:
        if precision == "fp32":
            return "-"
        rounding = self.quant.weight_rounding
        if precision == "int8" and self.qat_spec is None and rounding != "nearest":
            return f"{TOOLS[target][precision]} of {rounding.upper()}-rounded weights"
        if self.qat_spec is None or precision != "int8":
            return TOOLS[target][precision]
        if target == "openvino":
            return f"nncf.quantize (PyTorch) + distillation QAT ({self.qat_spec.epochs} epochs)"
        return f"{TOOLS[target][precision]} of distillation-QAT weights ({self.qat_spec.epochs} epochs)"

    def adaptation_info(self) -> tuple[Any, Any]:
        """(qat info, weight rounding info) for the manifest."""
        if self.adaptation is None:
            return None, None
        return (self.adaptation.info, None) if self.qat_spec is not None else (None, self.adaptation.info)


def adapt_for_int8(source: SourceModel, calib: Any, qat_spec: Any, preprocess: Any) -> Any:
    """The one int8 adaptation every target's int8 comes from: QAT, else GPTQ weight rounding."""
    if qat_spec is not None:
        from converters.quantizers.qat import train_qat

        return train_qat(source, calib, qat_spec, preprocess)
    from converters.quantizers.gptq import gptq_source

    return gptq_source(source, calib)


def make_static(path: Path, ctx: RouteContext) -> Path:
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


def companions(path: Path, final: Path) -> dict[Path, Path]:
    """Files that make up one artifact, companions first (OpenVINO .bin before .xml)."""
    if path.suffix == ".xml":
        return {path.with_suffix(".bin"): final.with_suffix(".bin"), path: final}
    return {path: final}


def copy_model(src: Path, dst: Path) -> None:
    for s, d in companions(src, dst).items():
        shutil.copyfile(s, d)
