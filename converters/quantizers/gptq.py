"""GPTQ weight rounding for PyTorch modules: int8 weights chosen for the layer's output, not one by one.

Every int8 quantizer rounds each weight to its nearest grid point. For EfficientNet-Lite0 that alone costs
6.5 points of top-1 agreement with the float model (93.5% on held-out crops, weights only), more than half
of it in one 32-channel 3x3 depthwise conv whose kernels are high-pass filters: independent rounding errors
no longer cancel, and the filter leaks brightness. GPTQ (Frantar et al. 2022, "optimal brain quantization"
applied layer by layer) rounds one input column at a time and spreads each rounding error over the columns
not yet rounded, weighted by the inverse Hessian ``H = E[x x^T]`` of the layer's inputs on calibration data;
layers are processed in execution order, each seeing the already-rounded layers before it. Weights-only
agreement becomes 98.0% on the same crops.

The result is a float module whose weights lie exactly on the grid every runtime's static quantizer will
use: symmetric, per output channel, ``scale = max|w| / 127`` with the largest weight of each channel kept
at +-127 steps. Folding batch-norm multiplies a channel by a constant, which keeps that property, so
TFLite's converter, ONNX Runtime's and NNCF's quantizers (all max-based per-channel symmetric) land on
the same integers. Only ``Conv2d`` (any groups) and ``Linear`` layers are rounded; a conv whose inputs
cannot be rebuilt as patches (padding modes other than zeros, dynamic padding) is left to the runtime.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from edge_sdk.errors import ConversionError, first_line
from edge_sdk.progress import Progress

LEVELS = 127  # symmetric narrow int8 range: what TFLite, ONNX Runtime and NNCF use for weights
DAMP = 0.01  # Hessian damping, relative to its mean diagonal (the GPTQ paper's default)
CHUNK = 8  # images per patch extraction (bounds memory on large early feature maps)


class _Collected(Exception):
    """Raised by the input hook to stop a forward pass once the layer's inputs are seen."""


def gptq_round(module: Any, batches: Sequence[Any], *, progress: bool | None = None) -> dict[str, Any]:
    """Round ``module``'s Conv2d/Linear weights in place onto their int8 grid with GPTQ on ``batches``
    (model inputs: a tensor or a tuple of tensors each); return what was done, for the manifest."""
    import torch

    start = time.monotonic()
    module.eval()
    came_as = torch.channels_last if _is_channels_last(module) else torch.contiguous_format
    layout = _fastest_layout(module, batches[0])
    try:
        done, skipped = _round_in_order(module, [_in_layout(b, layout) for b in batches], progress)
    finally:
        module.to(memory_format=came_as)
    return {
        "method": "GPTQ (per-channel symmetric int8 grid, max-based scales)",
        "layers": done,
        "skipped": skipped,
        "calibration_batches": len(batches),
        "seconds": round(time.monotonic() - start, 1),
    }


def _round_in_order(module: Any, batches: Sequence[Any], progress: bool | None) -> tuple[int, list[str]]:
    """GPTQ each Conv2d/Linear in execution order, each on inputs from the already-rounded layers before it."""
    import torch

    order, calls = _execution_order(module, batches[0])
    done, skipped = 0, []
    for name, layer in Progress(order, len(order), "gptq", progress):  # a bar on a terminal: minutes on CPU
        patches = _patch_fn(layer)
        hessian = None if patches is None else _hessian(module, layer, batches, patches, stop=calls[name] == 1)
        if hessian is None:
            skipped.append(name)
            continue
        with torch.no_grad():
            weight = layer.weight.detach().to(torch.float64)
            rows = weight.reshape(weight.shape[0], -1)
            if isinstance(layer, torch.nn.Conv2d) and layer.groups > 1:
                rounded = _gptq_grouped(rows, hessian, layer.groups)
            else:
                rounded = _gptq_dense(rows, hessian)
            layer.weight.copy_(rounded.reshape(weight.shape).to(layer.weight.dtype))
        done += 1
    return done, skipped


def _execution_order(module: Any, batch: Any) -> tuple[list[tuple[str, Any]], dict[str, int]]:
    """The Conv2d/Linear layers in the order one forward pass calls them, and how often each is called."""
    import torch

    names = {m: n for n, m in module.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    seen: list[tuple[str, Any]] = []
    calls: dict[str, int] = {}

    def hook(mod: Any, _inputs: Any) -> None:
        name = names[mod]
        if name not in calls:
            seen.append((name, mod))
        calls[name] = calls.get(name, 0) + 1

    handles = [m.register_forward_pre_hook(hook) for m in names]
    try:
        _forward(module, batch)
    finally:
        for h in handles:
            h.remove()
    return seen, calls


def _is_channels_last(module: Any) -> bool:
    import torch

    four_d = [p for p in module.parameters() if p.dim() == 4]  # (C, 1, 1, 1)-like shapes are both layouts
    channels_last = all(p.is_contiguous(memory_format=torch.channels_last) for p in four_d)
    return channels_last and any(not p.is_contiguous() for p in four_d)


def _fastest_layout(module: Any, batch: Any) -> Any:
    """Put ``module`` channels-last if its forward runs that way (every layer costs a forward pass up to it,
    and PyTorch's CPU convs run ~3x faster channels-last); a model that calls ``.view`` on a conv output
    cannot, and stays contiguous. Returns the memory format chosen."""
    import torch

    module.to(memory_format=torch.channels_last)
    try:
        _forward(module, _in_layout(batch, torch.channels_last))
        return torch.channels_last
    except RuntimeError:
        module.to(memory_format=torch.contiguous_format)
        return torch.contiguous_format


def _in_layout(batch: Any, layout: Any) -> Any:
    def one(t: Any) -> Any:
        return t.contiguous(memory_format=layout) if t.dim() == 4 else t

    return tuple(one(t) for t in batch) if isinstance(batch, (tuple, list)) else one(batch)


def _forward(module: Any, batch: Any) -> Any:
    import torch

    with torch.no_grad():
        return module(*batch) if isinstance(batch, (tuple, list)) else module(batch)


def _patch_fn(layer: Any) -> Callable[[Any], Any] | None:
    """A function from the layer's input to its (rows = samples, columns = weight inputs) patches, or None
    for a conv whose patches cannot be built (padding modes other than zeros, "same" padding strings)."""
    import torch
    import torch.nn.functional as F

    if isinstance(layer, torch.nn.Linear):
        return lambda x: x.reshape(-1, x.shape[-1])
    if layer.padding_mode != "zeros" or isinstance(layer.padding, str) and layer.padding != "valid":
        return None
    pad = getattr(layer, "static_padding", None)  # the "same"-padding idiom of TF-ported models
    padding = 0 if isinstance(layer.padding, str) else layer.padding
    pointwise = layer.kernel_size == (1, 1) and layer.stride == (1, 1) and padding in (0, (0, 0))
    if pointwise and (pad is None or isinstance(pad, torch.nn.Identity)):
        return lambda x: x.flatten(2)  # a 1x1 conv's patches are its input: no copy in channels-last

    def patches(x: Any) -> Any:
        x = pad(x) if pad is not None else x
        return F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=padding, stride=layer.stride)

    return patches


def _reproduces(layer: Any, patches: Callable[[Any], Any], x: Any, out: Any) -> bool:
    """Whether the layer's weights times ``patches(x)`` give its actual output ``out`` (one sample): so a conv
    with a forward of its own (extra padding, a different op) is never rounded on the wrong statistics."""
    import torch

    if isinstance(layer, torch.nn.Linear):
        return True
    cols = patches(x)  # (1, C*k*k, L)
    w = layer.weight.reshape(layer.groups, layer.out_channels // layer.groups, -1)
    g = cols.reshape(1, layer.groups, -1, cols.shape[-1])
    rebuilt = torch.einsum("gok,ngkl->ngol", w, g).reshape(1, layer.out_channels, -1)
    bias = layer.bias.reshape(1, -1, 1) if layer.bias is not None else 0
    expected = out.reshape(1, layer.out_channels, -1)
    return rebuilt.shape == expected.shape and torch.allclose(rebuilt + bias, expected, rtol=1e-3, atol=1e-4)


def _hessian(module: Any, layer: Any, batches: Sequence[Any], patches: Callable[[Any], Any], *, stop: bool) -> Any:
    """E[x x^T] of the layer's inputs over ``batches``: (cols, cols), or (groups, cols, cols) for grouped convs;
    None when the patches do not reproduce the layer's output (checked on its first call)."""
    import torch

    grouped = isinstance(layer, torch.nn.Conv2d) and layer.groups > 1
    acc: dict[str, Any] = {"h": 0.0, "n": 0, "ok": True}

    def hook(_mod: Any, inputs: Any, output: Any) -> None:
        x = inputs[0].detach().float()
        if acc["n"] == 0 and not _reproduces(layer, patches, x[:1], output[:1]):
            acc["ok"] = False
            raise _Collected
        for i in range(0, x.shape[0], CHUNK):
            cols = patches(x[i : i + CHUNK])
            if grouped:  # (N, G*k, L) -> per group (k, N*L) -> (k, k); one bmm beats einsum's layout here
                g = cols.reshape(cols.shape[0], layer.groups, -1, cols.shape[-1]).permute(1, 2, 0, 3)
                g = g.reshape(layer.groups, g.shape[1], -1)
                acc["h"] = acc["h"] + torch.bmm(g, g.transpose(1, 2)).double()
                acc["n"] += g.shape[-1]
            else:
                rows = cols if cols.dim() == 2 else cols.transpose(1, 2).reshape(-1, cols.shape[1])
                acc["h"] = acc["h"] + (rows.T @ rows).double()
                acc["n"] += rows.shape[0]
        if stop:
            raise _Collected

    handle = layer.register_forward_hook(hook)
    try:
        for batch in batches:
            try:
                _forward(module, batch)
            except _Collected:
                if not acc["ok"]:
                    return None
    finally:
        handle.remove()
    return acc["h"] / max(acc["n"], 1)


def _grid(rows: Any) -> Any:
    """Per-row int8 step: the row's largest magnitude maps to 127 steps."""
    return (rows.abs().amax(1, keepdim=True) / LEVELS).clamp_min(1e-30)


def _inverse_factor(h: Any) -> Any:
    """Upper Cholesky factor of the damped inverse Hessian (batched over leading axes). Inputs that are always
    zero get a unit diagonal: their weights round to nearest and pass no error on."""
    import torch

    h = h.clone()
    diag = torch.diagonal(h, dim1=-2, dim2=-1)
    dead = diag == 0
    diag[dead] = 1.0
    diag += DAMP * diag.mean(-1, keepdim=True)
    inv = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inv, upper=True)


def _gptq_dense(rows: Any, h: Any) -> Any:
    """GPTQ over columns in descending Hessian-diagonal order (the paper's act-order), rows sharing ``h``;
    rows whose largest weight drifted off +-127 steps are redone alone with that weight first."""
    import torch

    step = _grid(rows)
    perm = torch.argsort(torch.diagonal(h), descending=True)
    rounded = _gptq_columns(rows[:, perm], h[perm][:, perm], step)[:, torch.argsort(perm)]
    off = ((rounded.abs().amax(1) / step[:, 0]).round() != LEVELS).nonzero().flatten()
    for r in off.tolist():
        first = int(rows[r].abs().argmax())
        own = torch.cat([torch.tensor([first]), perm[perm != first]])
        rounded[r] = _gptq_columns(rows[r : r + 1, own], h[own][:, own], step[r : r + 1])[0, torch.argsort(own)]
    return rounded


def _gptq_grouped(rows: Any, h: Any, groups: int) -> Any:
    """GPTQ for a grouped conv (depthwise above all): each output channel has its group's Hessian and is
    rounded with its own largest weight first (so it stays at +-127 steps); all channels at once."""
    import torch

    per_group = rows.shape[0] // groups
    hs = h.repeat_interleave(per_group, dim=0)  # (rows, k, k)
    first = rows.abs().argmax(1)
    k = rows.shape[1]
    ar = torch.arange(k).expand(rows.shape[0], k)
    perm = torch.cat([first[:, None], ar[ar != first[:, None]].reshape(rows.shape[0], k - 1)], 1)
    w = torch.gather(rows, 1, perm)
    hp = torch.gather(torch.gather(hs, 1, perm[:, :, None].expand(-1, -1, k)), 2, perm[:, None, :].expand(-1, k, -1))
    rounded = _gptq_columns(w, hp, _grid(rows))
    return torch.empty_like(rounded).scatter_(1, perm, rounded)


def _gptq_columns(w: Any, h: Any, step: Any) -> Any:
    """Round ``w`` (rows, cols) column by column, pushing each column's error onto the later ones; ``h`` is
    one (cols, cols) Hessian shared by all rows, or (rows, cols, cols), one per row."""
    import torch

    w = w.clone()
    factor = _inverse_factor(h)
    out = torch.zeros_like(w)
    for i in range(w.shape[1]):
        q = torch.clamp(torch.round(w[:, i] / step[:, 0]), -LEVELS, LEVELS) * step[:, 0]
        out[:, i] = q
        err = (w[:, i] - q) / factor[..., i, i]
        w[:, i + 1 :] -= err[:, None] * factor[..., i, i + 1 :]
    return out


def check_on_grid(module: Any) -> list[str]:
    """Names of Conv2d/Linear layers whose weights are not exactly on their max-based int8 grid (tests)."""
    import torch

    off = []
    for name, m in module.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            rows = m.weight.detach().double().reshape(m.weight.shape[0], -1)
            rows = rows[rows.abs().amax(1) > 0]  # all-zero channels (pruned or dead) are on any grid
            q = rows / _grid(rows)
            if not torch.allclose(q, q.round(), atol=1e-3) or not bool((q.abs().amax(1).round() == LEVELS).all()):
                off.append(name)
    return off


def round_weights(module: Any, samples: Sequence[Any], batch_size: int = 4, **kw: Any) -> dict[str, Any]:
    """``gptq_round`` on calibration ``samples`` (tuples of numpy arrays with a batch axis of 1). Small batches
    keep early feature maps in cache (4 runs ~4x faster than 32 on CPU); the Hessians are means over all samples,
    so the batch size changes them only by float summation order (which can flip a few borderline roundings)."""
    import numpy as np
    import torch

    if not samples:
        raise ConversionError("GPTQ weight rounding needs calibration samples")
    batches = []
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        cat = [torch.from_numpy(np.concatenate([s[j] for s in chunk])) for j in range(len(chunk[0]))]
        batches.append(cat[0] if len(cat) == 1 else tuple(cat))
    try:
        return gptq_round(module, batches, **kw)
    except (RuntimeError, torch.linalg.LinAlgError) as e:
        raise ConversionError(f"GPTQ weight rounding failed: {first_line(e)}") from None


ROUNDINGS = ("nearest", "gptq")  # nearest: each runtime's quantizer rounds every weight by itself


def gptq_source(source: Any, calibration: Any) -> Any:
    """A :class:`converters.quantizers.qat.Int8Adaptation` (no student) whose adapted source is a copy of
    ``source``'s PyTorch module with GPTQ-rounded weights, rounded on ``calibration``'s samples."""
    import copy

    from converters.quantizers.qat import Int8Adaptation, adapted_source
    from converters.routes.torch_routes import module_and_args

    module = copy.deepcopy(module_and_args(source)[0]).eval()
    info = round_weights(module, calibration.samples)
    return Int8Adaptation(None, adapted_source(source, module, "GPTQ-rounded"), info)
