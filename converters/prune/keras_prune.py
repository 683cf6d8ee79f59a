"""Keras 3 magnitude pruning: zero the smallest kernel weights of Conv / Dense layers (channel pruning of a
Keras model goes through its ONNX export, see ``converters.prune.api``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from converters.prune.magnitude import layer_reports, zero_smallest
from converters.prune.select import Candidate, choose
from converters.prune.spec import PruneResult, PruneSpec, weights_gzip_size


def _kernel_layers(model: Any) -> list[tuple[Candidate, Any]]:
    """(candidate, layer) for every layer with a ``kernel`` (Conv, Dense, DepthwiseConv2D), in model order."""
    import keras

    out = []
    for layer in _flat_layers(model):
        w = getattr(layer, "kernel", None) if layer.weights else None
        if w is None:
            continue
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kind = "depthwise"
        else:
            kind = "linear" if len(w.shape) == 2 else "conv"
        out.append((Candidate(layer.name, kind, tuple(w.shape), int(np.prod(w.shape))), layer))
    return out


def _flat_layers(model: Any) -> list[Any]:
    layers = []
    for layer in model.layers:
        layers.extend(_flat_layers(layer) if hasattr(layer, "layers") and layer.layers else [layer])
    return layers


def _kernel(layer: Any) -> Any:
    return layer.kernel


def magnitude(model: Any, spec: PruneSpec, example_inputs: Any = None) -> PruneResult:
    """A pruned clone of ``model`` (a Keras model or a ``.keras``/``.h5`` path); the original is untouched."""
    import keras

    if not isinstance(model, keras.Model):
        model = keras.saving.load_model(str(model), compile=False)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    layers = _kernel_layers(clone)
    cands = [c for c, _ in layers]
    reasons = choose(cands, spec, framework="Keras")
    before = {c.name: np.asarray(_kernel(layer)) for c, layer in layers}
    gz_before = weights_gzip_size(model.get_weights())
    after = zero_smallest({n: w for n, w in before.items() if not reasons[n]}, spec)
    for c, layer in layers:
        if c.name in after:
            _kernel(layer).assign(after[c.name])
    n_params = sum(w.size for w in clone.get_weights())
    return PruneResult(
        model=clone,
        framework="keras",
        spec=spec,
        layers=layer_reports(cands, reasons, before, after),
        params_before=n_params,
        params_after=n_params,
        weights_gzip_before=gz_before,
        weights_gzip_after=weights_gzip_size(clone.get_weights()),
        notes=["magnitude pruning keeps every tensor's shape: a dense runtime does the same work"],
    )
