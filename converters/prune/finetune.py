"""Recover a pruned PyTorch model's accuracy: distillation from the original on unlabelled images
(KL divergence on temperature-softened logits, or mean squared error on the logits themselves), or
ordinary cross-entropy when the folder is labelled
(one sub-folder per class, named by index or label). Batch-norm statistics are re-estimated on the
data before and after training (cheap, and most of the recovery after channel pruning)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converters.calibration import IMAGE_SUFFIXES, decode_image
from converters.prune.spec import DISTILLATION_LOSSES, PruneSpec
from edge_sdk.errors import PruneError

log = logging.getLogger("edge_sdk")


def load_images(
    data: Any, preprocess: Any, labels: Sequence[str] | None = None, limit: int = 2000
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(inputs (N, ...), class indices or None, origin) from a folder of images, a labelled folder
    (``DATA/<class>/*.jpg``; class = index or label name), or ``photos:N`` (the calibration split of
    the packaged sample photos, never the held-out split)."""
    if preprocess is None or not hasattr(preprocess, "apply"):
        raise PruneError(
            "fine-tuning on images needs the model's preprocessing (size, mean/std, layout): pass --size/--mean/--std "
            "or prune a zoo: model, which carries its own"
        )
    if isinstance(data, str) and (data == "photos" or data.startswith("photos:")):
        from converters import datasets

        try:
            n = int(data.partition(":")[2] or limit)
        except ValueError:
            raise PruneError(f"fine-tune data {data!r}: expected photos or photos:N") from None
        images = datasets.calibration_images(min(n, limit), preprocess.size)
        x = np.concatenate([preprocess.apply(im) for im in images])
        return x, None, f"{len(images)} calibration-split crops of the sample photos"
    folder = Path(data)
    if not folder.is_dir():
        raise PruneError(f"fine-tune data folder not found: {folder} (pass a folder of images, or photos:N)")
    flat = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    labelled = [(d, sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)) for d in subdirs]
    labelled = [(d, files) for d, files in labelled if files]
    if not flat and not labelled:
        raise PruneError(
            f"fine-tune data folder {folder} is empty: it has no images ({', '.join(IMAGE_SUFFIXES)}) "
            "directly inside (unlabelled: distillation) or in class sub-folders (labelled)"
        )
    if flat:
        files = flat[:limit]
        x = np.concatenate([preprocess.apply(decode_image(f)) for f in files])
        return x, None, f"{len(files)} unlabelled images from {folder}"
    pairs = [(f, _class_index(d.name, labels)) for d, fs in labelled for f in fs][:limit]
    x = np.concatenate([preprocess.apply(decode_image(f)) for f, _ in pairs])
    y = np.asarray([c for _, c in pairs], dtype=np.int64)
    return x, y, f"{len(pairs)} labelled images in {len(labelled)} class folders of {folder}"


def _class_index(name: str, labels: Sequence[str] | None) -> int:
    if name.isdigit():
        return int(name)
    lowered = [str(s).lower() for s in labels or ()]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    raise PruneError(
        f"class folder '{name}' is neither a class index nor one of the model's labels; name class folders "
        "by index (e.g. 285) or label, or put the images directly in the folder for distillation"
    )


def top1_agreement(model: Any, x: np.ndarray, reference: np.ndarray, batch: int = 32) -> float:
    """Fraction of samples where ``model``'s top-1 class equals the reference logits' top-1."""
    logits = _predict(model, x, batch)
    return float(np.mean(logits.argmax(1) == reference.reshape(len(reference), -1).argmax(1)))


def _predict(model: Any, x: np.ndarray, batch: int = 32) -> np.ndarray:
    import torch

    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])))
            outs.append((out[0] if isinstance(out, (list, tuple)) else out).reshape(len(out), -1).numpy())
    return np.concatenate(outs)


def recalibrate_bn(model: Any, x: np.ndarray, batch: int = 32) -> None:
    """Re-estimate every batch-norm's running mean/var on ``x`` (cumulative average, no gradients)."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def finetune(
    student: Any,
    teacher: Any,
    spec: PruneSpec,
    preprocess: Any,
    labels: Sequence[str] | None = None,
    recalibrate: bool = True,
) -> dict[str, Any]:
    """Train ``student`` in place on ``spec.finetune`` for ``spec.epochs``; returns what was done and how long.

    ``recalibrate``: re-estimate BN statistics on the data before and after (needed after pruning; off for
    quantization-aware fine-tuning, whose student keeps the original's statistics)."""
    import torch
    import torch.nn.functional as F

    start = time.monotonic()
    x, y, origin = load_images(spec.finetune, preprocess, labels, spec.finetune_limit)
    torch.manual_seed(0)
    online = y is None and spec.mixup > 0  # consistent teaching: the teacher sees the same blended batch
    if spec.mixup > 0 and y is not None:
        log.warning("--mixup applies to distillation only; %s has class folders: plain cross-entropy", origin)
    teacher_logits = _predict(teacher, x) if y is None and not online else None
    if online:
        teacher.eval()
    if recalibrate:
        recalibrate_bn(student, x[:512])
    channels_last = x.ndim == 4  # ~30% faster convolutions (depthwise backward above all) on CPU
    if channels_last:
        student.to(memory_format=torch.channels_last)
    # magnitude-pruned weights stay zero: their masks are re-applied after every step
    masks = [(p, p.detach() != 0) for p in student.parameters() if p.dim() > 1 and bool((p == 0).any())]
    if spec.method != "magnitude":
        masks = []
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=0.0)
    steps = spec.epochs * max(1, -(-len(x) // spec.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(0)
    losses = []
    T = spec.temperature
    for epoch in range(spec.epochs):
        _train_mode_frozen_bn(student)
        order = rng.permutation(len(x))
        total = 0.0
        for i in range(0, len(x), spec.batch_size):
            idx = order[i : i + spec.batch_size]
            xb = torch.from_numpy(x[idx])
            if online:
                xb = _mixup_batch(xb, rng, spec.mixup, spec.clean_fraction)
            out = student(xb.to(memory_format=torch.channels_last) if channels_last else xb)
            out = out[0] if isinstance(out, (list, tuple)) else out
            if y is None:
                target = _teacher_logits(teacher, xb) if online else torch.from_numpy(teacher_logits[idx])
                loss = _distillation_loss(out, target, spec.loss, T)
            else:
                loss = F.cross_entropy(out, torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for p, keep in masks:
                    p.mul_(keep)
            sched.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x))
        log.info("fine-tune epoch %d/%d: loss %.4f", epoch + 1, spec.epochs, losses[-1])
    student.to(memory_format=torch.contiguous_format)
    if recalibrate:
        recalibrate_bn(student, x[:512])
    student.eval()
    blends = f", mixup alpha {spec.mixup} + flips" if online else ""
    mode = f"distillation ({DISTILLATION_LOSSES[spec.loss]}){blends}"
    return {
        "mode": mode if y is None else "labelled (cross-entropy)",
        "data": origin,
        "samples": int(len(x)),
        "epochs": spec.epochs,
        "batch_size": spec.batch_size,
        "lr": spec.lr,
        "temperature": T if y is None else None,
        "loss_per_epoch": [round(v, 5) for v in losses],
        "seconds": round(time.monotonic() - start, 1),
    }


def _distillation_loss(out: Any, target: Any, kind: str, T: float) -> Any:
    """``kl``: KL divergence of temperature-softened distributions (matches probabilities; near-ties of a
    low-confidence input carry little weight). ``mse``: squared error of the logits themselves (every
    logit gap counts, so near-ties keep their order: what top-1 agreement after quantization needs)."""
    import torch.nn.functional as F

    if kind == "mse":
        return F.mse_loss(out, target)
    return F.kl_div(F.log_softmax(out / T, 1), F.softmax(target / T, 1), reduction="batchmean") * T * T


def _mixup_batch(xb: Any, rng: np.random.Generator, alpha: float, clean_fraction: float = 0.0) -> Any:
    """Each image blended with another of the batch (weight ~ Beta(alpha, alpha)), half of them flipped;
    a ``clean_fraction`` of the batch stays unblended (only flipped).

    With few distinct images (e.g. crops of a handful of photos) blends give the student new inputs every step; the
    teacher labels each blend, so the student learns the teacher's function, not its labels. Clean images keep
    the inputs the model will see in use in every batch.
    """
    import torch

    n = xb.shape[0]
    flip = torch.from_numpy(rng.random(n) < 0.5)
    xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb) if xb.ndim == 4 else xb
    lam = torch.from_numpy(rng.beta(alpha, alpha, n).astype(np.float32))
    lam = lam.view(n, *([1] * (xb.ndim - 1)))
    partner = torch.from_numpy(rng.permutation(n))
    blended = lam * xb + (1 - lam) * xb[partner]
    if clean_fraction <= 0:
        return blended
    keep = torch.from_numpy(rng.random(n) < clean_fraction).view(n, *([1] * (xb.ndim - 1)))
    return torch.where(keep, xb, blended)


def _teacher_logits(teacher: Any, xb: Any) -> Any:
    import torch

    with torch.no_grad():
        out = teacher(xb)
    return out[0] if isinstance(out, (list, tuple)) else out


def _train_mode_frozen_bn(model: Any) -> None:
    """Train mode, except batch-norms keep their running statistics (small batches would ruin them)."""
    import torch

    model.train()
    for m in model.modules():
        if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)):
            m.eval()
