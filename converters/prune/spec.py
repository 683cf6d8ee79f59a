"""What a pruning request is (:class:`PruneSpec`) and what it did (:class:`PruneResult`, :class:`LayerReport`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from edge_sdk.errors import PruneError

METHODS = ("magnitude", "channel")
DISTILLATION_LOSSES = {"kl": "KL on logits / T", "mse": "MSE on logits"}  # name -> what the manifest says
SCOPES = ("layer", "global")
#: a pruned classifier whose top-1 agreement with the original is within this of chance (1 / classes) is
#: destroyed: it fails its validation whatever ``min_agreement`` says
DESTROYED_MARGIN = 0.05


def agreement_floor(classes: int | None, min_agreement: float = 0.0) -> float:
    """The top-1 agreement a pruned artifact must reach: ``min_agreement``, and at least chance + 5 points."""
    chance = 1.0 / classes if classes and classes >= 2 else 0.0
    return max(min_agreement, min(1.0, chance + DESTROYED_MARGIN))


@dataclass
class PruneSpec:
    """Options of one pruning run (keyword-only in :func:`converters.prune.prune`).

    ``amount``: fraction in (0, 1) of the weights (magnitude) or output channels (channel) to remove.
    ``scope``: ``layer`` (each layer at ``amount``) or ``global`` (one threshold / ranking for all layers).
    ``skip``: layer names to leave alone on top of the default skips (first conv, classifier, depthwise,
    layers under ``min_params``); ``include``: layer names to prune although a default skip would apply;
    ``default_skips=False`` turns the defaults off. ``layer_amounts``: per-layer overrides of ``amount``.
    ``importance``: ``l1`` or ``l2`` norm of a filter (channel). ``round_to``: keep a multiple of this many
    channels (runtimes' vector kernels like multiples of 8). ``keep_tied``: leave channel groups shared by
    several layers (residual adds) whole: only expansion / bottleneck channels are cut. ``finetune``: a
    folder of images (unlabelled: distillation from the original; sub-folders named by class: ordinary
    fine-tuning), or ``photos:N``.
    """

    method: str = "magnitude"
    amount: float = 0.5
    scope: str = "layer"
    skip: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    default_skips: bool = True
    layer_amounts: dict[str, float] = field(default_factory=dict)
    min_params: int = 1024
    importance: str = "l1"
    round_to: int = 8
    keep_tied: bool = False
    finetune: Any = None
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4
    temperature: float = 3.0
    finetune_limit: int = 2000
    mixup: float = 0.0  # > 0: distil on mixup blends (Beta(mixup, mixup)) + flips, teacher run on each batch
    clean_fraction: float = 0.0  # with mixup: this share of each batch stays unblended
    loss: str = "kl"  # distillation loss: kl (softened probabilities) or mse (logits)
    min_agreement: float = 0.0
    save_source: bool = False
    classes: int | None = None  # of the original's score output; set by prune_source (chance level of top-1)

    def __post_init__(self) -> None:
        self.skip = tuple(self.skip or ())
        self.include = tuple(self.include or ())
        self.layer_amounts = dict(self.layer_amounts or {})
        check_method(self.method)
        self.amount = check_amount(self.amount, "amount")
        self.layer_amounts = {n: check_amount(a, f"amount for layer '{n}'") for n, a in self.layer_amounts.items()}
        if self.scope not in SCOPES:
            raise PruneError(f"scope '{self.scope}' is unknown; use one of {', '.join(SCOPES)}")
        if self.importance not in ("l1", "l2"):
            raise PruneError(f"importance '{self.importance}' is unknown; use l1 or l2 (norm of each filter)")
        if self.round_to < 1:
            raise PruneError(f"round_to must be >= 1 (channels are kept in multiples of it), got {self.round_to}")
        if self.epochs < 1 or self.batch_size < 1:
            raise PruneError("fine-tuning needs epochs >= 1 and batch_size >= 1")
        if self.mixup < 0:
            raise PruneError(f"mixup must be >= 0 (the Beta distribution's alpha; 0 turns it off), got {self.mixup}")
        check_distillation(self.loss, self.clean_fraction, PruneError)
        if not 0.0 <= self.min_agreement <= 1.0:
            raise PruneError(f"min_agreement {self.min_agreement} is outside [0, 1] (a top-1 agreement fraction)")

    @property
    def tag(self) -> str:
        """Short name for files: ``channel25``, ``magnitude80``."""
        return f"{self.method}{round(self.amount * 100):d}"

    def tolerances(self) -> dict[str, float]:
        """Validation tolerances of a pruned artifact: a pruned model is not expected to match fp32 numbers;
        its top-1 agreement must reach ``min_agreement`` and be clearly above chance (:func:`agreement_floor`):
        a destroyed model is reported as failed, never "ok"."""
        return {"cosine": -1.0, "snr_db": -1e9, "top1": agreement_floor(self.classes, self.min_agreement)}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["finetune"] = None if self.finetune is None else str(self.finetune)
        return d


def check_method(method: str) -> str:
    if method not in METHODS:
        raise PruneError(f"pruning method '{method}' is unknown; use one of {', '.join(METHODS)}")
    return method


def check_amount(amount: Any, what: str = "amount") -> float:
    """``amount`` as a float strictly inside (0, 1), else a PruneError saying what it means."""
    try:
        value = float(amount)
    except (TypeError, ValueError):
        raise PruneError(f"{what} {amount!r} is not a number; pass a fraction in (0, 1), e.g. 0.5") from None
    if not 0.0 < value < 1.0:
        raise PruneError(
            f"{what} {value:g} is outside (0, 1): it is the fraction of weights (magnitude) or channels (channel) "
            "to remove, e.g. 0.25 or 0.5"
        )
    return value


def parse_prune(text: str | PruneSpec | dict[str, Any]) -> PruneSpec:
    """``"channel:0.25"`` (also ``"channel:25%"``) or a dict/PruneSpec -> PruneSpec."""
    if isinstance(text, PruneSpec):
        return text
    if isinstance(text, dict):
        return PruneSpec(**text)
    method, sep, amount = str(text).partition(":")
    if not sep:
        raise PruneError(f"--prune '{text}' is not METHOD:AMOUNT, e.g. channel:0.25 or magnitude:0.5")
    amount = amount.strip()
    value: Any = amount
    if amount.endswith("%"):
        try:
            value = float(amount[:-1]) / 100
        except ValueError:
            value = amount
    return PruneSpec(method=check_method(method.strip()), amount=check_amount(value))


@dataclass
class LayerReport:
    """One layer: what it was, what pruning did to it, or why it was skipped."""

    name: str
    kind: str
    shape: tuple[int, ...]
    params: int
    sparsity_before: float = 0.0
    sparsity_after: float = 0.0
    channels_before: int | None = None
    channels_after: int | None = None
    skipped: str = ""  # reason, empty when pruned

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass
class PruneResult:
    """The pruned model (same framework as the input unless ``framework`` says otherwise) and its report."""

    model: Any
    framework: str  # "torch", "keras", "onnx"
    spec: PruneSpec
    layers: list[LayerReport]
    params_before: int
    params_after: int
    weights_gzip_before: int
    weights_gzip_after: int
    notes: list[str] = field(default_factory=list)
    finetune: dict[str, Any] | None = None

    @property
    def sparsity(self) -> float:
        """Fraction of zeros over the pruned layers' weights."""
        pruned = [x for x in self.layers if not x.skipped]
        total = sum(x.params for x in pruned)
        return sum(x.sparsity_after * x.params for x in pruned) / total if total else 0.0

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Per-layer rows for the CLI."""
        headers = ["layer", "kind", "shape", "params", "sparsity", "channels", "note"]
        rows = []
        for x in self.layers:
            ch = f"{x.channels_before} -> {x.channels_after}" if x.channels_before is not None else "-"
            sp = f"{x.sparsity_before:.0%} -> {x.sparsity_after:.0%}"
            rows.append([x.name, x.kind, "x".join(map(str, x.shape)), str(x.params), sp, ch, x.skipped or "pruned"])
        return headers, rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.spec.method,
            "amount": self.spec.amount,
            "framework": self.framework,
            "spec": self.spec.to_dict(),
            "params_before": self.params_before,
            "params_after": self.params_after,
            "sparsity": round(self.sparsity, 4),
            "weights_gzip_before": self.weights_gzip_before,
            "weights_gzip_after": self.weights_gzip_after,
            "layers": [x.to_dict() for x in self.layers],
            "notes": self.notes,
            "finetune": self.finetune,
        }


def sparsity(values: Any) -> float:
    import numpy as np

    arr = np.asarray(values)
    return float(np.count_nonzero(arr == 0) / arr.size) if arr.size else 0.0


def weights_gzip_size(arrays: Sequence[Any]) -> int:
    """gzip size (level 6) of all weights as float32 bytes: what a zipped model file shrinks to."""
    import gzip

    import numpy as np

    raw = b"".join(np.ascontiguousarray(np.asarray(a, dtype=np.float32)).tobytes() for a in arrays)
    return len(gzip.compress(raw, compresslevel=6))


def check_distillation(loss: str, clean_fraction: float, error: type[Exception]) -> None:
    """Raise ``error`` naming the bad distillation option (shared by pruning and QAT specs)."""
    if loss not in DISTILLATION_LOSSES:
        raise error(f"distillation loss '{loss}' is unknown; use one of {', '.join(DISTILLATION_LOSSES)}")
    if not 0.0 <= clean_fraction <= 1.0:
        raise error(f"clean_fraction {clean_fraction} is outside [0, 1] (the share of each batch left unblended)")
