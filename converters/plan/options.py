"""The options of a conversion, in four dataclasses: how to open the source, what data it sees, how reduced
precision is made, and where and how strictly results are written. ``convert(**keywords)`` and the CLI
build the same objects (:meth:`ConversionOptions.from_keywords`)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from edge_sdk.errors import ConversionError


@dataclass
class SourceOptions:
    """Opening the model: example inputs of an ``nn.Module``, fixed input shapes, trust in the file."""

    example_inputs: Sequence[Any] | None = None
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    static: bool = False  # fix every dynamic dim in the artifacts (NPUs, delegates)
    opset: int = 17
    allow_lambda: bool = False  # run a Keras file's Lambda layers (their code runs)
    allow_pickle: bool = False  # load a .pt2 unchecked (its pickles and program code run)


@dataclass
class DataOptions:
    """What the model sees: calibration and validation data, preprocessing, and what to store in the artifacts."""

    calibration: Any = None  # images folder, .npy/.npz, WAV folder, arrays, "photos[:N]" or "synthetic"
    held_out: Any = None  # validation data; default: 20% of the user's calibration data, else realistic inputs
    validate_samples: int = 64
    preprocess: Any = None  # edge_sdk.preprocess.PreprocessSpec / AudioSpec; default: the source's own
    labels: Sequence[str] | None = None
    task: str | None = None


@dataclass
class QuantOptions:
    """How reduced precision is made (and pruning before it)."""

    int8_io: bool = False
    tflite_sparse: bool = False
    tf_select_ops: bool = False  # TFLite: keep ops without a builtin as TensorFlow (Flex) ops; the device needs Flex
    fallback: bool = True  # keep the worst layers float until static int8 meets its tolerance
    fallback_budget: float | None = None  # the fraction of int8 layers the fallback may keep float (None: default)
    target_isa: str | None = None  # the CPU the int8 artifacts are for; default: this machine's
    weight_rounding: str = "nearest"  # or "gptq"
    qat: Any = None  # QATSpec or a dict of its fields
    prune: Any = None  # "channel:0.25", "magnitude:0.5" or a PruneSpec

    def __post_init__(self) -> None:
        b = self.fallback_budget
        if b is not None and (isinstance(b, bool) or not isinstance(b, numbers.Real) or not 0 < b <= 1):
            raise ConversionError(
                f"fallback_budget must be a fraction of the int8 layers in (0, 1], got {b!r} (e.g. 0.25 keeps at "
                "most a quarter of them float; fallback=False turns the fallback off)"
            )


@dataclass
class OutputOptions:
    """Where artifacts go, their name, how strict validation is, and how much is said."""

    output_dir: str | Path = "out"
    name: str | None = None
    tolerances: dict[str, float] | None = None
    allow_degraded: bool = False  # record a failed validation instead of raising
    verbose: bool = False
    # True/False: a progress bar on stderr (default: on a terminal); a callable gets each ArtifactReport as it is made
    progress: Any = None


@dataclass
class ConversionOptions:
    source: SourceOptions = field(default_factory=SourceOptions)
    data: DataOptions = field(default_factory=DataOptions)
    quant: QuantOptions = field(default_factory=QuantOptions)
    output: OutputOptions = field(default_factory=OutputOptions)

    @classmethod
    def from_keywords(cls, **keywords: Any) -> ConversionOptions:
        """Options from ``convert()``'s flat keywords; an unknown keyword is an error listing the known ones."""
        groups = {"source": SourceOptions, "data": DataOptions, "quant": QuantOptions, "output": OutputOptions}
        owner = {f.name: group for group, kind in groups.items() for f in fields(kind)}
        unknown = sorted(set(keywords) - set(owner))
        if unknown:
            raise ConversionError(f"convert() got unknown option(s) {unknown}; options are {', '.join(sorted(owner))}")
        parts: dict[str, dict[str, Any]] = {group: {} for group in groups}
        for key, value in keywords.items():
            parts[owner[key]][key] = value
        if parts["source"].get("input_shapes") is None:
            parts["source"].pop("input_shapes", None)
        return cls(**{group: kind(**parts[group]) for group, kind in groups.items()})
