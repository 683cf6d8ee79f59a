"""``converters.convert``: one call from a trained model to validated TFLite / ONNX / OpenVINO artifacts.

The work is a plan of stages (:mod:`converters.plan`); this is its one-line entry with flat keywords.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from converters.plan import ConversionOptions, ConversionPlan
from converters.plan.results import ArtifactReport, ConversionResult
from converters.plan.source_stage import TF_KINDS

__all__ = ["ArtifactReport", "ConversionResult", "TF_KINDS", "convert"]


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
    tf_select_ops: bool = False,
    static: bool = False,
    allow_degraded: bool = False,
    allow_lambda: bool = False,
    allow_pickle: bool = False,
    tolerances: dict[str, float] | None = None,
    name: str | None = None,
    verbose: bool = False,
    progress: bool | None | Callable[[ArtifactReport], None] = None,
    prune: Any = None,
    qat: Any = None,
    weight_rounding: str = "nearest",
    labels: Sequence[str] | None = None,
    task: str | None = None,
    fallback: bool = True,
    fallback_budget: float | None = None,
    target_isa: str | None = None,
) -> ConversionResult:
    """Convert ``model`` to each target at each precision, validate each artifact, write a manifest.

    ``model``: a ``torch.nn.Module`` (with ``example_inputs``), or a path to a ``.pt2``,
    ``.keras``/``.h5``, SavedModel folder, ``.onnx`` or ``.tflite``, or ``"zoo:NAME"``.
    ``calibration``: images folder, ``.npy``/``.npz``, WAV folder, arrays, or ``"synthetic"``
    (needed for ``int8``). ``held_out``: validation inputs (never the calibration ones);
    default: 20% of the user's ``calibration`` data, else realistic inputs per input kind (photos, speech,
    token ids inside the vocabulary), random values only where no kind is known (marked synthetic).
    Raises :class:`ValidationFailedError` when an artifact misses its precision's tolerance,
    unless ``allow_degraded`` (the manifest records it either way).
    ``tflite_sparse``: TFLite weights stored sparse (pays off after magnitude pruning; measured in
    ``benchmarks/sparse_tflite.py``).
    ``tf_select_ops``: TFLite (fp32, from Keras / SavedModel / ONNX / PyTorch) may keep ops that have no TFLite
    builtin as TensorFlow ops (``SELECT_TF_OPS``); a file that needs them is validated with TensorFlow's Flex
    delegate, and its route names them with a warning: the device then needs the Flex delegate.
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
    ``fallback_budget``: the fraction of the int8 layers it may keep float (default
    :data:`converters.quantizers.fallback.MAX_FRACTION`); a smaller one keeps more of int8's speed.
    ``progress``: a bar on stderr (default: when stderr is a terminal), or a callable that gets each
    :class:`ArtifactReport` as soon as that artifact is made and validated.
    ``target_isa``: the CPU the int8 artifacts are for (``x86-avx2``, ``x86-vnni``, ``arm64-dotprod``, ...: see
    :mod:`converters.quantizers.isa`); default: this machine's.
    """
    keywords = dict(locals())
    keywords.pop("model"), keywords.pop("to"), keywords.pop("precision")
    return ConversionPlan(model, to, precision, ConversionOptions.from_keywords(**keywords)).run()
