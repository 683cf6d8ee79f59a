"""Stateful models (recurrent state fed back as an input): real states for calibration and validation.

A streaming model such as Silero VAD takes ``(audio window, state)`` and returns
``(probability, new state)``. Calibrating or validating it with zero or random states
measures the wrong thing: int8 ranges for the state come out as [0, 0] and the model
forgets everything. Here the original model is run over each recording window by window,
its state output fed back, so every sample carries the state it has in real use.
"""

from __future__ import annotations

import numpy as np

from converters.sources import SourceModel


def state_links(source: SourceModel, reference: list[np.ndarray]) -> list[tuple[int, int]]:
    """(input index, output index) pairs where an output is the next call's input.

    An extra input (not the first) pairs with the output of the same shape whose name
    extends the input's (``state`` -> ``stateN``, ``h0`` -> ``h0_out``), or, failing that,
    with the only output of that shape.
    """
    links = []
    names = source.output_names or [f"output_{i}" for i in range(len(reference))]
    for i, spec in enumerate(source.inputs[1:], start=1):
        same = [j for j, r in enumerate(reference) if tuple(r.shape) == tuple(spec.concrete_shape())]
        named = [j for j in same if j < len(names) and names[j].startswith(spec.name)]
        pick = named or (same if len(same) == 1 else [])
        if pick:
            links.append((i, pick[0]))
    return links


def default_extras(source: SourceModel) -> list[np.ndarray]:
    """Values for inputs after the first when the data gives only the first (audio windows): the
    source's example input (e.g. Silero's ``sr`` = 16000; zeros for a state), else zeros."""
    extras = []
    for i, spec in enumerate(source.inputs[1:], start=1):
        if i < len(source.example_inputs):
            extras.append(np.asarray(source.example_inputs[i]))
        else:
            extras.append(np.zeros(spec.concrete_shape(), spec.dtype))
    return extras


def with_default_extras(source: SourceModel, samples: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """``samples`` with every input after the first replaced by :func:`default_extras`."""
    extras = default_extras(source)
    return [[s[0], *extras] for s in samples]


def roll_state(source: SourceModel, samples: list[list[np.ndarray]], groups: list[int]) -> list[list[np.ndarray]]:
    """``samples`` with each state input replaced by what the original produced on the previous window.

    State starts from the sample's own value (zeros from WAV framing) at the first window of
    every group (recording). Returns ``samples`` unchanged when the model has no state link.
    """
    if not samples or len(source.inputs) < 2 or len(groups) != len(samples):
        return samples
    links = state_links(source, source.run(samples[0]))
    if not links:
        return samples
    rolled: list[list[np.ndarray]] = []
    carried: dict[int, np.ndarray] = {}
    for k, sample in enumerate(samples):
        if k == 0 or groups[k] != groups[k - 1]:
            carried = {}
        feed = [carried.get(i, x) for i, x in enumerate(sample)]
        rolled.append(feed)
        outputs = source.run(feed)
        carried = {i: np.asarray(outputs[j]).astype(sample[i].dtype) for i, j in links}
    return rolled
