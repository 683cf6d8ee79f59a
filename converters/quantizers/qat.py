"""Int8 with quantization-aware fine-tuning (QAT) by distillation, for PyTorch sources, for every target.

Post-training quantization leaves some models a few points short (EfficientNet-Lite0: 93-95% top-1
agreement; near-ties flip). NNCF's recipe closes the gap: quantize the PyTorch module (fake-quantize
modules where the int8 graph will have them), fine-tune it for a few epochs with a small learning rate
so its weights adapt to the int8 grid, then export. With no labels, the float original is the teacher
(distillation on mixup blends of unlabelled images, labelled by the teacher on every batch; ``loss="mse"``
matches logits instead of probabilities and ``clean_fraction`` keeps part of each batch unblended).

One fine-tuning serves every target:
- OpenVINO: the fine-tuned module itself becomes the IR; its int8 ops carry NNCF's learned scales.
- ONNX Runtime and TFLite: their quantizers cannot read NNCF's fake-quantize ops, so they quantize the
  *adapted* float module instead: the original architecture with the fine-tuned weights snapped onto
  their per-channel int8 grid (``nncf.strip``) and BN kept. Each runtime's own post-training quantizer
  then lands on nearly the same weights grid the fine-tuning trained for.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_sdk.errors import ConversionError, first_line


@dataclass(frozen=True)
class QATSpec:
    """What ``converters.prune.finetune.finetune`` reads, for QAT (no pruning masks, BN kept)."""

    finetune: Any  # images: folder or photos:N
    epochs: int = 2
    lr: float = 1e-5
    batch_size: int = 32
    temperature: float = 1.0
    mixup: float = 1.0
    clean_fraction: float = 0.0  # share of each batch left unblended (0: blends only)
    loss: str = "kl"  # or "mse" on the logits (measured: no better on EfficientNet-Lite0, see README)
    finetune_limit: int = 2000
    method: str = "qat"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConversionError(f"QAT needs epochs >= 1, got {self.epochs}")
        if self.finetune is None:
            raise ConversionError("QAT needs unlabelled images: pass --qat-data DIR or photos:N")
        from converters.prune.spec import check_distillation

        check_distillation(self.loss, self.clean_fraction, ConversionError)


@dataclass
class Int8Adaptation:
    """A model adapted once for int8 on every target: the adapted float source (weights on their int8 grid),
    QAT's fake-quantized student (None for GPTQ rounding alone), what was done."""

    student: Any
    adapted: Any  # converters.sources.SourceModel of the weight-snapped float module
    info: dict[str, Any]
    intermediates: dict[str, Path] = field(default_factory=dict)  # the adapted model's exports (ONNX, SavedModel)


#: NNCF compiles its PyTorch extension on first use and gives up after 60 s by default, which a loaded 2-core
#: machine (or a Raspberry Pi-class host) exceeds: QAT then failed for users, not just in tests
EXTENSION_BUILD_TIMEOUT_S = 1800


def allow_extension_build() -> None:
    """Give NNCF's first-use torch extension build time (unless the user set ``NNCF_EXTENSION_LOAD_TIMEOUT``)."""
    import os

    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", str(EXTENSION_BUILD_TIMEOUT_S))


def train_qat(source: Any, calibration: Any, spec: QATSpec, preprocess: Any) -> Int8Adaptation:
    """NNCF-quantize ``source``'s module (a PyTorch source: ``convert`` checks) on ``calibration``, distil
    for ``spec.epochs``; return the student and the adapted float source."""
    allow_extension_build()
    import nncf
    import torch

    from converters.prune.finetune import finetune
    from converters.routes.torch_routes import module_and_args

    teacher = module_and_args(source)[0].eval()
    samples = [tuple(torch.from_numpy(x) for x in s) for s in calibration.samples]
    first = lambda s: s[0] if len(s) == 1 else s  # noqa: E731 - NNCF's transform: sample -> model input
    try:
        student = nncf.quantize(copy.deepcopy(teacher), nncf.Dataset(samples, first), subset_size=len(samples))
    except Exception as e:
        raise ConversionError(f"nncf.quantize of the PyTorch model failed: {first_line(e)}") from None
    info = finetune(student, teacher, spec, preprocess, recalibrate=False)
    student.eval()
    adapted = adapted_source(source, _snapped_float_module(student, teacher, first(samples[0])), "QAT-adapted")
    return Int8Adaptation(student, adapted, {**info, "quantizer": "nncf.quantize (PyTorch) + distillation QAT"})


def adapted_source(source: Any, module: Any, how: str) -> Any:
    """``source`` with its module replaced by ``module`` (same inputs, outputs, preprocessing and labels)."""
    from converters.sources import open_source

    opened = open_source(module, example_inputs=source.example_inputs)
    return replace(source, kind="torch", obj=module, run=opened.run, description=f"{source.description} ({how})")


def save_student(adaptation: Int8Adaptation, route: Any, source: Any, out: Path) -> bool:
    """OpenVINO after QAT: write the fine-tuned student itself (its fake-quantize modules become the IR's int8
    ops) to ``out`` and return True; False for every other case (the adapted float model is quantized)."""
    if route.target != "openvino" or adaptation.student is None:
        return False
    from converters.routes.torch_routes import save_as_ir

    save_as_ir(adaptation.student, source, out)
    return True


def export_adapted(adaptation: Int8Adaptation, route: Any, ctx: Any) -> tuple[Path, Any, dict[str, Any]]:
    """The adapted float model exported for ``route``'s target: (fp32 file, its own route context, quantizer options).

    Exported in a context of its own so that no export of the original (``ctx.intermediates``) is reused. For
    OpenVINO the weights are already on their int8 grid, so NNCF must not re-round them (``exact_weights``)."""
    from converters.routes import TARGET_SUFFIX

    own = replace(ctx, workdir=ctx.workdir / "adapted", intermediates=adaptation.intermediates)
    own.workdir.mkdir(exist_ok=True)
    fp32 = route.load()(adaptation.adapted, own.workdir / f"adapted_fp32{TARGET_SUFFIX[route.target]}", own)
    return fp32, own, ({"exact_weights": True} if route.target == "openvino" else {})


def _snapped_float_module(student: Any, teacher: Any, example_input: Any) -> Any:
    """A copy of ``teacher`` carrying ``student``'s parameters, weights fake-quantized onto their int8 grid."""
    import nncf
    import torch

    try:
        stripped = nncf.strip(student, do_copy=True, strip_format=nncf.StripFormat.NATIVE, example_input=example_input)
    except Exception as e:
        raise ConversionError(f"nncf.strip of the fine-tuned model failed: {first_line(e)}") from None
    trained = dict(stripped.named_parameters())
    adapted = copy.deepcopy(teacher)
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if name not in trained:
                raise ConversionError(f"QAT: the fine-tuned model lost parameter {name!r}; cannot rebuild it in float")
            p.copy_(trained[name])
    return adapted.eval()
