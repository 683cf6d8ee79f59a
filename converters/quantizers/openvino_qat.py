"""OpenVINO int8 with quantization-aware fine-tuning (QAT) by distillation, for PyTorch sources.

Post-training quantization leaves some models a few points short (EfficientNet-Lite0: 92-95%
top-1 agreement; near-ties flip). NNCF's recipe closes the gap: quantize the PyTorch module
(fake-quantize modules at the places the int8 IR will have them), fine-tune it for a few epochs
with a small learning rate so its weights adapt to the int8 grid, then convert it to an IR whose
int8 ops carry the learned scales. With no labels, the float original is the teacher
(distillation on mixup blends of unlabelled images, labelled by the teacher on every batch).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
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
    finetune_limit: int = 2000
    method: str = "qat"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConversionError(f"QAT needs epochs >= 1, got {self.epochs}")
        if self.finetune is None:
            raise ConversionError("QAT needs unlabelled images: pass --qat-data DIR or photos:N")


def quantize_qat(
    source: Any, out: Path, calibration: Any, spec: QATSpec, preprocess: Any
) -> tuple[Path, dict[str, Any]]:
    """NNCF-quantize ``source``'s module (a PyTorch source: ``convert`` checks) on ``calibration``, distil for
    ``spec.epochs``, save the int8 IR."""
    import nncf
    import torch

    from converters.prune.finetune import finetune
    from converters.routes.torch_routes import module_and_args, save_as_ir

    teacher = module_and_args(source)[0].eval()
    samples = [tuple(torch.from_numpy(x) for x in s) for s in calibration.samples]
    try:
        student = nncf.quantize(
            copy.deepcopy(teacher),
            nncf.Dataset(samples, lambda s: s[0] if len(s) == 1 else s),
            subset_size=len(samples),
        )
    except Exception as e:
        raise ConversionError(f"nncf.quantize of the PyTorch model failed: {first_line(e)}") from None
    info = finetune(student, teacher, spec, preprocess, recalibrate=False)
    save_as_ir(student.eval(), source, out)  # the fake-quantize modules become the IR's int8 ops
    return out, {**info, "quantizer": "nncf.quantize (PyTorch) + distillation QAT"}
