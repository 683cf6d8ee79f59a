"""Trained classifier heads for the corpus's random-weight classifiers: a linear probe on real photos.

A classifier with random weights everywhere has near-tied logits: its top-1 class on a photo is decided by
noise, so any perturbation (fp16 rounding, int8) flips it, and top-1 agreement then measures nothing about
the conversion. A trained model is decisive on the images it knows. The corpus gets there the way a linear
probe does: the backbone keeps its random weights (BatchNorm statistics from real photos), and the head's
layer(s) producing the class logits are fitted, by ridge regression on the backbone's features, to tell the
sample photos apart (one class per photo, on calibration-split crops). The other classes keep their random
rows, scaled to a trained model's logit spread. Held-out crops of those photos are then classified with a
real margin, like a trained model on its own kind of data; cosine and SNR are measured as before.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

HEAD_CROPS = 256  # calibration-split crops the head is fitted on (another seed than calibration and BN crops)
HEAD_SEED = 11
#: the photo's class logit in the fit; held-out crops get less (a trained ImageNet model's top-1 logit is 10-25):
#: at 10, a MobileNet-class backbone left held-out margins too small on 40-80% of the crops
TARGET_LOGIT = 20.0
OTHER_LOGIT_STD = 1.5  # spread of the untrained classes' logits, as in a trained model
RIDGE = 0.01  # regularisation, relative to the mean feature energy


def photo_labels(n: int) -> np.ndarray:
    """Class of each of the first ``n`` crops of a split: crops go round-robin over the installed photos."""
    from converters import datasets

    return np.arange(n) % len(datasets.available_photos())


def class_rows(n_photos: int, n_classes: int) -> np.ndarray:
    """The logit rows the photos are mapped to, spread over the classes (not just the first few)."""
    return np.linspace(0, n_classes - 1, n_photos).round().astype(int)


def fit_linear(
    features: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """New (weight (C, D), bias (C,)) for a linear layer: rows of the photo classes by ridge regression to
    ``TARGET_LOGIT`` on their photo and 0 elsewhere, the other rows the random ones rescaled."""
    x = features.reshape(len(features), -1).astype(np.float64)
    w, b = weight.astype(np.float64).copy(), bias.astype(np.float64).copy()
    random_logits = x @ w.T + b
    spread = float(random_logits.std()) or 1.0
    w *= OTHER_LOGIT_STD / spread
    b = (b - random_logits.mean()) * OTHER_LOGIT_STD / spread
    rows = class_rows(int(labels.max()) + 1, w.shape[0])
    targets = np.zeros((len(x), len(rows)))
    targets[np.arange(len(x)), labels] = TARGET_LOGIT
    mu = x.mean(0)
    xc = x - mu
    gram = xc @ xc.T
    lam = RIDGE * float(np.trace(gram)) / len(x)
    alpha = np.linalg.solve(gram + lam * np.eye(len(x)), targets - targets.mean(0))  # dual form: N << D
    w_fit = (xc.T @ alpha).T
    w[rows] = w_fit
    b[rows] = targets.mean(0) - w_fit @ mu
    return w.astype(np.float32), b.astype(np.float32)


def fit_torch_heads(model: Any, images: np.ndarray, labels: np.ndarray, n_classes: int = 1000) -> list[str]:
    """Fit every ``nn.Linear`` with ``n_classes`` outputs (LeViT / EfficientFormer have two, averaged) on
    ``images`` (normalised, NCHW); the model must already be in eval mode. Returns the fitted layers' names."""
    import torch

    heads = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.out_features == n_classes}
    feats: dict[str, list[np.ndarray]] = {n: [] for n in heads}
    hooks = [m.register_forward_hook(_keep_input(feats[n])) for n, m in heads.items()]
    try:
        with torch.no_grad():
            for i in range(0, len(images), 16):
                model(torch.from_numpy(images[i : i + 16]))
    finally:
        for h in hooks:
            h.remove()
    fitted = []
    for name, m in heads.items():
        x = np.concatenate(feats[name])
        if x.ndim != 2:  # a Linear applied per token/position: not a pooled classifier head
            continue
        fitted.append(name)
        bias = m.bias.detach().numpy() if m.bias is not None else np.zeros(n_classes, np.float32)
        w, b = fit_linear(x, labels, m.weight.detach().numpy(), bias)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(w))
            if m.bias is None:
                m.bias = torch.nn.Parameter(torch.from_numpy(b))
            else:
                m.bias.copy_(torch.from_numpy(b))
    return fitted


def _keep_input(store: list[np.ndarray]) -> Callable[..., None]:
    def hook(module: Any, args: tuple[Any, ...], output: Any) -> None:
        store.append(args[0].detach().numpy().copy())

    return hook


def fit_keras_head(model: Any, images: np.ndarray, labels: np.ndarray, n_classes: int = 1000) -> str | None:
    """Fit a Keras application's logits layer (``predictions`` Dense, or MobileNetV3's 1x1 ``logits`` conv) on
    ``images`` (normalised, NHWC). Returns the layer's name, None when the model has neither."""
    import keras

    weighted = [(layer, layer.get_weights()) for layer in model.layers]
    dense = [layer for layer, w in weighted if len(w) == 2 and w[0].shape[-1] == n_classes]
    if not dense:
        return None
    layer = dense[-1]
    features = keras.Model(model.inputs, layer.input).predict(images, batch_size=16, verbose=0)
    kernel, bias = layer.get_weights()
    c = kernel.shape[-1]
    w, b = fit_linear(features, labels, kernel.reshape(-1, c).T, bias)
    layer.set_weights([w.T.reshape(kernel.shape), b])
    return layer.name
