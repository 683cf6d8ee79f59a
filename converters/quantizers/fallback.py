"""Static int8 that meets its tolerance: keep the layers that lose most in float, until it passes or a budget is spent.

Target-independent. Each target's quantizer module supplies four things:

* ``float_reference(fp32, ctx)``: the float model its int8 model was made from (tensor names match);
* ``fallback_layers(reference, quantized)``: the :class:`Layer` s of the int8 model that read a quantized
  activation, with the tensors each reads and writes (named as in the float model), and the int8 model's
  names for those tensors where they differ: a tensor is measured as its readers see it, quantized;
* ``capture(path, keys, samples, input_names)``: per sample, those tensors' values in a model;
* ``keep_float(reference, names)``: the names its own mechanism takes to keep those layers float (ONNX Runtime
  ``nodes_to_exclude``, NNCF ``IgnoredScope(names=...)``, ai-edge-quantizer / TFLite float ops).

A layer's error is measured where it shows: the SNR of its output (as its readers see it) against the float
model's, minus the worst SNR of the tensors it reads (so error carried in from earlier layers is not counted
again). An input's quantization can hide in that input's SNR (one huge channel dominates it while the others
are rounded away) and show only at the layer, so keeping a layer float keeps the activations it reads and
writes float too: each target's ``keep_float`` hands its mechanism the layer, the producers and other readers of
its inputs, and the readers of its output. The ranking uses
calibration samples, never the held-out ones the artifact is validated on.

int8-dynamic (weights int8, activations float or quantized per call) has its own fallback where a target's module
supplies ``weight_layers(reference, quantized)`` (the ops whose weights were quantized). Its error does not show
where it is made: LeViT-128S's int8-dynamic layers each lose only ~37 dB locally, yet together take the output to
cosine 0.88, because attention downstream amplifies two of them. So each op is measured at the model's outputs,
quantized alone (every other op excluded), on calibration samples: LeViT's two attention-downsample ``kv``
linears then rank first (12 and 16 dB alone), and keeping three float gives 0.993. An op is kept float by name
(its activations are not shared quantized tensors): ONNX Runtime ``quantize_dynamic(nodes_to_exclude=...)``,
``nncf.compress_weights(ignored_scope=...)``, ai-edge-quantizer's dynamic recipe with ``NO_QUANTIZE`` ops.
"""

from __future__ import annotations

import importlib
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_sdk.errors import EdgeSDKError, first_line

log = logging.getLogger("edge_sdk")

#: default budget: rounds of re-quantization, and the fraction of the int8 model's layers that may stay float.
#: 10% was too little for models whose error builds up over a chain of layers (a wav2vec2 encoder's convolutional
#: feature extractor before a layer norm, OpenVINO int8 cosine 0.82: it passes with 15 of 62 layers float), and
#: a round adds 2^(r-1) layers, so 6 rounds reach 63 layers; the report gives the latency this costs.
#: 25% was too little for MobileNet / EfficientNet-class models on OpenVINO for x86 without VNNI (7-bit
#: weights): torchvision MobileNetV2 reached cosine 0.993 with 16 of 64 layers float and still flipped 2 of 15
#: confident top-1s; with 25 it passes (0.996, 14 of 15), as do EfficientNet-B0 and MobileNetV3-Large. Such an
#: artifact can run at about the fp32 latency on such a CPU (1.08x / 0.93x measured there): the report and a
#: warning say so, and ``fallback_budget`` / ``--fallback-budget`` trade the tolerance back for speed (NNCF's
#: own accuracy control reverts layers until the metric holds, with no budget at all). A 7th round (64 more
#: layers) is for models of 160+ layers: Keras NASNetMobile on OpenVINO missed at 0.969 with 63 of 478 float
MAX_ROUNDS = 7
MAX_FRACTION = 0.4
#: calibration samples the layer errors are measured on
PROBE_SAMPLES = 8
#: an SNR that cannot be measured (an exact tensor, a graph input) counts as this
CAP_DB = 120.0

_MODULES = {
    "onnx": "converters.quantizers.onnx_quant",
    "openvino": "converters.quantizers.openvino_quant",
    "tflite": "converters.quantizers.tflite_quant",
}
MECHANISMS = {
    ("onnx", "int8"): "onnxruntime quantize_static(nodes_to_exclude=...)",
    ("openvino", "int8"): "nncf.quantize(ignored_scope=nncf.IgnoredScope(names=...))",
    ("tflite", "int8"): "float ops (ai-edge-quantizer NO_QUANTIZE / TFLite QuantizationDebugger denylisted_nodes)",
    ("onnx", "int8-dynamic"): "onnxruntime quantize_dynamic(nodes_to_exclude=...)",
    ("openvino", "int8-dynamic"): "nncf.compress_weights(ignored_scope=nncf.IgnoredScope(names=...))",
    ("tflite", "int8-dynamic"): "ai-edge-quantizer dynamic_wi8_afp32 with NO_QUANTIZE ops",
}
#: the precisions a fallback exists for
FALLBACK_PRECISIONS = ("int8", "int8-dynamic")


def has_fallback(target: str, precision: str) -> bool:
    """True when ``target`` can keep layers float at ``precision`` (see :data:`MECHANISMS`)."""
    return (target, precision) in MECHANISMS


Validate = Callable[[Path], tuple[list[Any], list[str]]]


@dataclass(frozen=True)
class Layer:
    """One layer of an int8 model as the fallback sees it: its name in the target's graph and the float
    tensors (by name, present in both models) that it reads and writes."""

    name: str
    op_type: str
    reads: tuple[str, ...]
    writes: str


@dataclass
class LayerError:
    """A layer's error: the SNR of what it reads and writes (static int8), or of the model's outputs with the
    layer quantized alone (int8-dynamic: ``snr_in_db`` is then the cap, so ``added_db`` orders the same way)."""

    name: str
    op_type: str
    snr_in_db: float
    snr_out_db: float
    measured_at: str = "layer"

    @property
    def added_db(self) -> float:
        """The SNR this layer loses: its inputs' worst SNR minus its output's (>= 0)."""
        return max(0.0, self.snr_in_db - self.snr_out_db)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op_type": self.op_type, "snr_in_db": round(self.snr_in_db, 2),
                "snr_out_db": round(self.snr_out_db, 2), "added_db": round(self.added_db, 2),
                "measured_at": self.measured_at}  # fmt: skip


@dataclass
class FallbackReport:
    """What the fallback did for one artifact; ``kept`` names the layers left in float."""

    target: str
    mechanism: str
    quantized_layers: int = 0
    budget: int = 0
    budget_fraction: float = MAX_FRACTION  # of the quantized layers, the most that may be kept float
    kept_round: int = 0  # the round whose artifact is kept (the passing one, else the closest; 0: plain)
    kept: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # the names handed to the mechanism (kept + neighbours)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    most_sensitive: list[LayerError] = field(default_factory=list)  # the first ranking, worst first
    plain_failures: list[str] = field(default_factory=list)
    plain_metrics: list[dict[str, Any]] = field(default_factory=list)  # plain int8 against the original
    passed: bool = False
    latency: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mechanism": self.mechanism,
            "quantized_layers": self.quantized_layers,
            "budget": self.budget,
            "budget_fraction": self.budget_fraction,
            "kept_round": self.kept_round,
            "kept": self.kept,
            "excluded": self.excluded,
            "rounds": self.rounds,
            "most_sensitive": [e.to_dict() for e in self.most_sensitive],
            "plain_int8_failures": self.plain_failures,
            "plain_int8_metrics": self.plain_metrics,
            "passed": self.passed,
            "latency": self.latency,
        }

    def summary(self) -> str:
        """One line for logs and error messages."""
        state = "passes" if self.passed else "still fails"
        cost = f", int8/fp32 latency {self.latency['ratio_fallback']:.2f}" if "ratio_fallback" in self.latency else ""
        return f"fallback kept {len(self.kept)} layer(s) float {self.kept} and {state}{cost}"


def rank_layers(target: str, reference: Path, quantized: Path, calibration: Any,
                samples: int = PROBE_SAMPLES, precision: str = "int8") -> list[LayerError]:  # fmt: skip
    """The int8 model's layers, most error added first, measured on ``samples`` calibration samples."""
    mod = importlib.import_module(_MODULES[target])
    find = mod.fallback_layers if precision == "int8" else mod.weight_layers
    layers, aliases = find(reference, quantized)
    keys = sorted({k for layer in layers for k in (*layer.reads, layer.writes)})
    q_keys = [aliases.get(k, k) for k in keys]
    chosen = calibration.samples[:samples]
    signal = dict.fromkeys(keys, 0.0)
    noise = dict.fromkeys(keys, 0.0)
    seen: set[str] = set()
    ref_iter = mod.capture(reference, keys, chosen, calibration.input_names)
    q_iter = mod.capture(quantized, q_keys, chosen, calibration.input_names)
    for ref, q_got in zip(ref_iter, q_iter):
        got = {k: q_got[qk] for k, qk in zip(keys, q_keys) if qk in q_got}
        for k in keys:
            if k in ref and k in got and np.shape(ref[k]) == np.shape(got[k]):
                r = np.asarray(ref[k], np.float64)
                signal[k] += float(np.sum(r * r))
                noise[k] += float(np.sum((r - np.asarray(got[k], np.float64)) ** 2))
                seen.add(k)

    def snr(k: str) -> float:
        if k not in seen or noise[k] == 0:
            return CAP_DB
        return float(np.clip(10 * math.log10(max(signal[k], 1e-30) / noise[k]), -CAP_DB, CAP_DB))

    errors = [
        LayerError(la.name, la.op_type, min((snr(k) for k in la.reads), default=CAP_DB), snr(la.writes))
        for la in layers
        if la.writes in seen
    ]
    return sorted(errors, key=lambda e: -e.added_db)


#: int8-dynamic: at most this many ops are quantized alone to rank them (the rest by their own SNR first)
MAX_ALONE = 64


def rank_alone(target: str, precision: str, reference: Path, quantized: Path, calibration: Any, ctx: Any,
               samples: int = PROBE_SAMPLES, **options: Any) -> list[LayerError]:  # fmt: skip
    """The int8-dynamic model's quantized ops, worst first, by the SNR of the model's outputs when the op alone is
    quantized (every other op excluded), on ``samples`` calibration samples. Beyond :data:`MAX_ALONE` ops, the
    ones :func:`rank_layers` puts first are measured."""
    from converters.quantizers import quantize

    mod = importlib.import_module(_MODULES[target])
    everything, _ = mod.weight_layers(reference, quantized)
    layers = everything
    if len(layers) > MAX_ALONE:
        first = {e.name for e in rank_layers(target, reference, quantized, calibration, samples, precision)[:MAX_ALONE]}
        layers = [la for la in layers if la.name in first]
    chosen = calibration.samples[:samples]
    ref = _outputs(reference, chosen, calibration.input_names)
    probe = ctx.workdir / f"alone_{quantized.name}"
    errors = []
    for layer in layers:
        others = [la.name for la in everything if la.name != layer.name]
        quantize(target, reference, probe, precision, None, ctx, exclude=others, prepared=True, **options)
        snr = _snr(ref, _outputs(probe, chosen, calibration.input_names))
        errors.append(LayerError(layer.name, layer.op_type, CAP_DB, snr, "model outputs, quantized alone"))
    probed = {e.name for e in errors}  # the rest count towards the budget but are never chosen (added 0 dB)
    rest = [LayerError(la.name, la.op_type, CAP_DB, CAP_DB, "not probed") for la in everything if la.name not in probed]
    return sorted(errors, key=lambda e: -e.added_db) + rest


def _outputs(path: Path, samples: list[list[Any]], input_names: list[str]) -> list[list[np.ndarray]]:
    """Per sample, the model's outputs (in its output order) through the SDK."""
    import edge_sdk
    from converters.layout import adapt_feeds

    with edge_sdk.load(path) as model:
        return [list(model.run(adapt_feeds(s, model.inputs, input_names)).values()) for s in samples]


def _snr(ref: list[list[np.ndarray]], got: list[list[np.ndarray]]) -> float:
    """The worst output's SNR (dB) over all samples, capped at :data:`CAP_DB`."""
    worst = CAP_DB
    for k in range(len(ref[0]) if ref else 0):
        r = np.concatenate([np.asarray(s[k], np.float64).ravel() for s in ref])
        g = np.concatenate([np.asarray(s[k], np.float64).ravel() for s in got])
        noise = float(np.sum((r - g) ** 2)) if r.shape == g.shape else float("inf")
        if not math.isfinite(noise):  # another shape, or NaN / inf from the probe: as bad as it gets
            return -CAP_DB
        if noise > 0:
            worst = min(worst, 10 * math.log10(max(float(np.sum(r * r)), 1e-30) / noise))
    return float(np.clip(worst, -CAP_DB, CAP_DB))


def quantize_with_fallback(
    target: str,
    fp32: Path,
    out: Path,
    calibration: Any,
    ctx: Any,
    validate: Validate,
    *,
    precision: str = "int8",
    enabled: bool = True,
    max_rounds: int = MAX_ROUNDS,
    max_fraction: float | None = None,
    measure_latency: bool = True,
    **options: Any,
) -> tuple[list[Any], list[str], FallbackReport | None]:
    """``precision`` (static int8 or int8-dynamic) of ``fp32`` into ``out``, validated; when it misses its tolerance
    (and ``enabled``), re-quantize with the worst layers kept float until it passes, ``max_rounds``
    re-quantizations are spent or ``max_fraction`` (default :data:`MAX_FRACTION`) of its layers are float.
    ``calibration`` ranks the layers; for int8-dynamic it may be a function making them, called only if plain
    int8-dynamic misses. Returns (metrics, failures, report; None when plain int8 passed or the fallback is off).
    ``options`` go to the target's quantizer (``scheme``, ``int8_io``...)."""
    from converters.quantizers import quantize

    made_later = callable(calibration)
    quantize(target, fp32, out, precision, None if made_later else calibration, ctx, **options)
    metrics, failures = validate(out)
    if not failures or not enabled or calibration is None or not has_fallback(target, precision):
        return metrics, failures, None
    if made_later:
        try:
            calibration = calibration()
        except EdgeSDKError as e:  # no samples to rank on: the plain artifact's failure stands
            log.warning("%s %s fallback skipped: no samples to rank layers on (%s); pass --calib", target,
                        precision, e)  # fmt: skip
            return metrics, failures, None
    mod = importlib.import_module(_MODULES[target])
    reference = mod.float_reference(fp32, ctx)
    plain = _keep_copy(out, ctx.workdir / f"plain_{precision}_{out.name}")
    report = FallbackReport(target, MECHANISMS[target, precision], plain_failures=list(failures),
                            plain_metrics=[m.to_dict() for m in metrics])  # fmt: skip
    alone: list[LayerError] = []
    best = _Best(0, _closeness(metrics), metrics, failures, [], [])  # plain int8 is round 0
    in_out = 0  # the round whose artifact ``out`` holds (-1: a tool failed while writing it)
    for round_no in range(1, max_rounds + 1):
        if precision == "int8":  # measured again each round: keeping a layer float changes what others read
            ranking = rank_layers(target, reference, out, calibration)
        else:  # an op quantized alone does the same whatever else is float: measured once
            alone = alone or rank_alone(target, precision, reference, out, calibration, ctx, **options)
            ranking = alone
        if round_no == 1:
            report.quantized_layers = len(ranking)
            report.budget_fraction = MAX_FRACTION if max_fraction is None else max_fraction
            report.budget = max(1, int(report.budget_fraction * len(ranking) + 1e-9))
            report.most_sensitive = ranking[:10]
        room = report.budget - len(report.kept)
        fresh = [e.name for e in ranking if e.added_db > 0 and e.name not in report.kept]
        add = fresh[: min(room, 2 ** (round_no - 1))]
        if not add:
            break
        report.kept += add
        # weights are quantized op by op: the op's name alone keeps it float
        report.excluded = mod.keep_float(reference, report.kept) if precision == "int8" else list(report.kept)
        try:
            quantize(target, fp32, out, precision, None if made_later else calibration, ctx,
                     exclude=report.excluded, **options)  # fmt: skip
            metrics, failures = validate(out)
        except EdgeSDKError as e:  # a tool refused the mixed model: the closest artifact so far stands
            log.warning("%s %s fallback round %d failed (%s): keeping the closest artifact so far (round %d)",
                        target, precision, round_no, first_line(e), best.round)  # fmt: skip
            report.rounds.append({"round": round_no, "added": add, "error": first_line(e)})
            in_out = -1
            break
        in_out = round_no
        closeness = _closeness(metrics)
        report.rounds.append({"round": round_no, "added": add, "excluded": len(report.excluded),
                              "failures": list(failures),
                              "lowest_cosine": round(closeness, 6) if math.isfinite(closeness) else None})  # fmt: skip
        log.info("%s %s fallback round %d: float %s -> %s", target, precision, round_no, add, failures or "passes")
        if not failures:
            break
        if closeness > best.closeness:
            best = _Best(round_no, closeness, metrics, failures, list(report.kept), list(report.excluded))
            _keep_copy(out, ctx.workdir / f"best_{precision}_{out.name}")
    if failures and in_out != best.round:
        # a later round can come out further off (TFLite ViT: plain cosine 0.877, 116 layers float 0.796), or a tool
        # can fail on it: the closest artifact is the one kept, with its own failures
        log.info("%s %s fallback: round %d came closest (lowest cosine %.4f); keeping it", target, precision,
                 best.round, best.closeness)  # fmt: skip
        _keep_copy(plain if best.round == 0 else ctx.workdir / f"best_{precision}_{out.name}", out)
        metrics, failures, report.kept, report.excluded = best.metrics, best.failures, best.kept, best.excluded
        in_out = best.round
    report.kept_round = in_out
    report.passed = not failures
    if failures and report.kept and len(report.kept) >= report.budget:
        log.warning("%s %s fallback spent its budget (%d of %d layers float, %.0f%%) and still misses; "
                    "--fallback-budget / fallback_budget= raises it", target, precision, len(report.kept),
                    report.quantized_layers, 100 * report.budget_fraction)  # fmt: skip
    if measure_latency and report.kept:
        report.latency = latency_cost(fp32, plain, out)
    log.info("%s %s: %s", target, precision, report.summary())
    ratio = report.latency.get("ratio_fallback")
    if ratio is not None and ratio >= 1.0:  # it meets the tolerance, but int8 no longer buys speed here
        log.warning("%s %s with %d layer(s) kept float runs at %.2fx the fp32 latency on this machine (plain %s: "
                    "%.2fx): fp16 or fp32 may serve better, or a smaller --fallback-budget keeps more of int8's speed "
                    "(and misses the tolerance)", target, precision, len(report.kept), ratio, precision,
                    report.latency.get("ratio_plain", float("nan")))  # fmt: skip
    return metrics, failures, report


@dataclass
class _Best:
    """The fallback round whose artifact came closest to the original so far (0: plain int8)."""

    round: int
    closeness: float
    metrics: list[Any]
    failures: list[str]
    kept: list[str]
    excluded: list[str]


def _closeness(metrics: list[Any]) -> float:
    """An artifact's lowest output cosine (NaN or none: -inf), to tell which of two failing ones is closer."""
    values = [float(getattr(m, "cosine", float("nan"))) for m in metrics]
    return min((v if math.isfinite(v) else -math.inf for v in values), default=-math.inf)


def latency_cost(fp32: Path, plain: Path, fallback: Path, runs: int = 30) -> dict[str, Any]:
    """p50 latency of the fp32, plain int8 and int8-with-fallback files (``edge_sdk.bench``) and the ratios."""
    from edge_sdk.bench import benchmark

    ms = {}
    backend = ""
    for key, path in (("fp32", fp32), ("int8", plain), ("int8_fallback", fallback)):
        r = benchmark(str(path), runs=runs, warmup=5, progress=False)
        ms[key], backend = r.p50_ms, r.backend
    return {
        "backend": backend,
        "runs": runs,
        "fp32_p50_ms": round(ms["fp32"], 3),
        "int8_p50_ms": round(ms["int8"], 3),
        "int8_fallback_p50_ms": round(ms["int8_fallback"], 3),
        "ratio_plain": round(ms["int8"] / ms["fp32"], 3),
        "ratio_fallback": round(ms["int8_fallback"] / ms["fp32"], 3),
    }


def _keep_copy(path: Path, dest: Path) -> Path:
    """A copy of an artifact (an OpenVINO .xml with its .bin) at ``dest``."""
    shutil.copyfile(path, dest)
    if path.suffix == ".xml":
        shutil.copyfile(path.with_suffix(".bin"), dest.with_suffix(".bin"))
    return dest
