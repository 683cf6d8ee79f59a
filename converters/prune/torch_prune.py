"""PyTorch pruning: magnitude (zero the smallest weights) and channel (remove whole filters with
``torch-pruning``'s dependency graph: following convs, batch-norms, residual adds and concats stay consistent)."""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np

from converters.prune.magnitude import layer_reports, zero_smallest
from converters.prune.select import Candidate, amount_for, choose
from converters.prune.spec import LayerReport, PruneResult, PruneSpec, weights_gzip_size
from edge_sdk.errors import BackendUnavailableError, PruneError


def _tensors(example_inputs: Sequence[Any] | None) -> tuple[Any, ...]:
    import torch

    if not example_inputs:
        raise PruneError(
            "pruning a torch.nn.Module needs example_inputs=(tensor, ...), e.g. (torch.randn(1,3,224,224),)"
        )
    return tuple(t if isinstance(t, torch.Tensor) else torch.from_numpy(np.asarray(t)) for t in example_inputs)


def _layers(module: Any, args: tuple[Any, ...]) -> list[tuple[str, Any]]:
    """(name, submodule) of every Conv/Linear, in the order the forward pass runs them."""
    import torch

    kinds = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)
    layers = [(n, m) for n, m in module.named_modules() if isinstance(m, kinds)]
    order: dict[int, int] = {}

    def seen(mod: Any, _inputs: Any) -> None:  # a pre-hook's return value would replace the inputs
        order.setdefault(id(mod), len(order))

    hooks = [m.register_forward_pre_hook(seen) for _, m in layers]
    try:
        with torch.no_grad():
            module.eval()(*args)
    finally:
        for h in hooks:
            h.remove()
    return sorted(layers, key=lambda nm: order.get(id(nm[1]), len(order)))


def _candidate(name: str, m: Any) -> Candidate:
    import torch

    w = m.weight
    if isinstance(m, torch.nn.Linear):
        kind = "linear"
    elif m.groups > 1 and m.groups == m.in_channels:
        kind = "depthwise"
    else:
        kind = "conv"
    return Candidate(name, kind, tuple(w.shape), int(w.numel()))


def _all_weights(module: Any) -> list[np.ndarray]:
    return [p.detach().cpu().numpy() for p in module.parameters()]


def magnitude(model: Any, spec: PruneSpec, example_inputs: Sequence[Any] | None = None) -> PruneResult:
    """Zero the smallest-magnitude weights of the chosen Conv/Linear layers (a copy; ``model`` is untouched)."""
    import torch

    pruned = copy.deepcopy(model).eval()
    args = _tensors(example_inputs)
    layers = _layers(pruned, args)
    cands = [_candidate(n, m) for n, m in layers]
    reasons = choose(cands, spec, framework="PyTorch")
    before = {n: m.weight.detach().cpu().numpy().copy() for n, m in layers}
    params_before, gz_before = sum(w.size for w in _all_weights(model)), weights_gzip_size(_all_weights(model))
    after = zero_smallest({n: w for n, w in before.items() if not reasons[n]}, spec)
    mods = dict(layers)
    with torch.no_grad():
        for n, w in after.items():
            mods[n].weight.copy_(torch.from_numpy(w))
    return PruneResult(
        model=pruned,
        framework="torch",
        spec=spec,
        layers=layer_reports(cands, reasons, before, after),
        params_before=params_before,
        params_after=params_before,
        weights_gzip_before=gz_before,
        weights_gzip_after=weights_gzip_size(_all_weights(pruned)),
        notes=["magnitude pruning keeps every tensor's shape: a dense runtime does the same work"],
    )


def channel(model: Any, spec: PruneSpec, example_inputs: Sequence[Any] | None = None) -> PruneResult:
    """Remove whole output channels of the chosen convs and every tensor that depends on them."""
    try:
        import torch_pruning as tp
    except ImportError:
        raise BackendUnavailableError("torch-pruning (channel pruning of PyTorch models)", "convert") from None

    pruned = copy.deepcopy(model).eval()
    args = _tensors(example_inputs)
    layers = _layers(pruned, args)
    # a depthwise conv has no channels of its own: it follows its producer, so it is no root to prune
    cands = [_candidate(n, m) for n, m in layers]
    roots = [c for c in cands if c.kind != "depthwise"]
    reasons = choose(roots, spec, framework="PyTorch")
    if roots and not reasons[roots[-1].name].startswith("skipped"):
        reasons[roots[-1].name] = "output layer (its size is the model's output; never channel-pruned)"
    if all(reasons.values()):
        raise PruneError("no layer left to channel-prune besides the output layer; pass --include or fewer --skip")
    mods = dict(layers)
    before = {n: (tuple(m.weight.shape), int(_out_channels(m))) for n, m in layers}
    params_before = sum(p.numel() for p in model.parameters())
    gz_before = weights_gzip_size(_all_weights(model))
    ignored = [mods[c.name] for c in roots if reasons[c.name]]
    if spec.keep_tied:
        ignored += _tied_layers(pruned, args, ignored)
    p = 1 if spec.importance == "l1" else 2
    ratio_dict = {mods[n]: amount_for(n, spec) for n in spec.layer_amounts}
    pruner = tp.pruner.BasePruner(
        pruned,
        args,
        importance=tp.importance.GroupMagnitudeImportance(p=p),
        pruning_ratio=spec.amount,
        pruning_ratio_dict=ratio_dict or None,
        ignored_layers=ignored,
        global_pruning=spec.scope == "global",
        round_to=spec.round_to if spec.round_to > 1 else None,
    )
    pruner.step()
    with torch_no_grad():
        outs = pruned(*args)
        ref = model.eval()(*args)
    _check_outputs(ref, outs)
    reports = []
    for c in cands:
        shape, ch = before[c.name]
        now = _out_channels(mods[c.name])
        reason = "" if now != ch else reasons.get(c.name) or "output channels kept (their group was not cut)"
        reports.append(
            LayerReport(c.name, c.kind, shape, int(np.prod(shape)), channels_before=ch, channels_after=now,
                        skipped=reason)
        )  # fmt: skip
    return PruneResult(
        model=pruned,
        framework="torch",
        spec=spec,
        layers=reports,
        params_before=params_before,
        params_after=sum(q.numel() for q in pruned.parameters()),
        weights_gzip_before=gz_before,
        weights_gzip_after=weights_gzip_size(_all_weights(pruned)),
        notes=["channel pruning by torch-pruning's dependency graph; importance: " + spec.importance + " norm"],
    )


def _tied_layers(model: Any, args: tuple[Any, ...], ignored: list[Any]) -> list[Any]:
    """Layers whose output channels are shared with another (non-depthwise) layer, e.g. through a residual add."""
    import torch
    import torch_pruning as tp

    dg = tp.DependencyGraph().build_dependency(model, example_inputs=args)
    tied: list[Any] = []
    for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=[torch.nn.Conv2d, torch.nn.Linear]):
        outs = {
            id(dep.target.module): dep.target.module
            for dep, _ in group
            if dg.is_out_channel_pruning_fn(dep.handler)
            and isinstance(dep.target.module, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))
            and _candidate("", dep.target.module).kind != "depthwise"
        }
        if len(outs) > 1:
            tied += list(outs.values())
    return tied


def _out_channels(m: Any) -> int:
    return int(getattr(m, "out_channels", getattr(m, "out_features", 0)))


def torch_no_grad() -> Any:
    import torch

    return torch.no_grad()


def _check_outputs(ref: Any, out: Any) -> None:
    refs = ref if isinstance(ref, (list, tuple)) else [ref]
    outs = out if isinstance(out, (list, tuple)) else [out]
    bad = [(tuple(r.shape), tuple(o.shape)) for r, o in zip(refs, outs) if tuple(r.shape) != tuple(o.shape)]
    if bad or len(refs) != len(outs):
        raise PruneError(
            f"channel pruning changed the model's output shapes {bad}; skip the output head with --skip NAME"
        )
