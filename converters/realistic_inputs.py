"""Inputs of the kind a model sees in use, for validation (and int8 calibration) when the user gave none.

Each input gets a role from its dtype, shape and name (the source's own argument names where it has
them, e.g. ``forward(input_ids, attention_mask)``):

- ``token_ids``: integers within the vocabulary read from the embedding table (:mod:`converters.vocab`),
  with realistic lengths: a sample uses ``L`` of its ``S`` positions and pads the rest with 0;
- ``attention_mask`` (1 for the ``L`` used positions), ``token_type_ids`` (0), ``position_ids`` (0..S-1);
- ``image``: held-out crops of real photos through the model's preprocessing (guessed ImageNet
  normalisation when it has none, and said so);
- ``waveform``: held-out real speech (espeak-ng), ``log_mel``: its log-mel spectrogram;
- anything else: seeded random values, the last resort, marked synthetic per input. Integer and
  boolean inputs are never filled with random floats.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edge_sdk.tensor_spec import TensorSpec

log = logging.getLogger("edge_sdk")

DEFAULT_SEQUENCE = 32  # a dynamic sequence dim gets this many positions
MIN_WAVEFORM = 1000  # a float input with this many samples (and nothing else) is audio
MEL_BANDS = (40, 64, 80, 128)


@dataclass(frozen=True)
class InputRole:
    """What one input holds, and how realistic data for it is made."""

    name: str
    role: str  # token_ids | attention_mask | token_type_ids | position_ids | image | waveform | log_mel | random
    vocab: int | None = None
    synthetic: bool = False
    note: str = ""


def argument_names(source: Any) -> list[str]:
    """The names the source gives its inputs: ``forward``'s parameters for PyTorch, else the input names."""
    names = [s.name for s in source.inputs]
    if source.kind == "torch":
        try:
            params = [p.name for p in inspect.signature(source.obj.forward).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]  # fmt: skip
            return params[: len(names)] + names[len(params) :]
        except (TypeError, ValueError):
            return names
    if source.kind == "pt2":
        try:
            spec = source.obj.call_spec.in_spec  # (args, kwargs) pytree; its leaves follow forward's order
            sig = inspect.signature(source.obj.module().forward)
            params = [p for p in sig.parameters if p != "self"]
            return params[: len(names)] + names[len(params) :] if spec is not None else names
        except Exception:  # noqa: BLE001 - names are a hint only
            return names
    return names


def input_roles(source: Any, preprocess: Any = None) -> list[InputRole]:
    """One :class:`InputRole` per input of ``source``."""
    from converters.vocab import vocab_sizes

    vocab = vocab_sizes(source)
    ids_vocab = min(vocab.values()) if vocab else None
    roles = []
    for spec, arg in zip(source.inputs, argument_names(source)):
        name = arg.lower()
        kind = np.dtype(spec.dtype).kind
        if "mask" in name:
            roles.append(InputRole(spec.name, "attention_mask"))
        elif "type" in name or "segment" in name:
            roles.append(InputRole(spec.name, "token_type_ids"))
        elif "position" in name:
            roles.append(InputRole(spec.name, "position_ids"))
        elif kind in "iu":
            if spec.name in vocab:
                roles.append(InputRole(spec.name, "token_ids", vocab[spec.name]))
            else:  # no table found for this input: stay inside the smallest one the model has, or {0, 1}
                rows = ids_vocab or 2
                roles.append(InputRole(spec.name, "token_ids", rows, synthetic=True,
                                       note=f"no embedding table found for it: ids in [0, {rows})"))  # fmt: skip
        elif kind == "b":
            roles.append(InputRole(spec.name, "attention_mask"))
        elif _is_image(spec):
            guessed = preprocess is None or not hasattr(preprocess, "size")
            roles.append(InputRole(spec.name, "image", note="normalisation guessed (ImageNet)" if guessed else ""))
        elif _waveform_length(spec):
            roles.append(InputRole(spec.name, "waveform"))
        elif _mel_shape(spec):
            roles.append(InputRole(spec.name, "log_mel"))
        else:
            roles.append(InputRole(spec.name, "random", synthetic=True))
    return roles


def realistic_samples(
    source: Any, n: int, *, preprocess: Any = None, seed: int = 12345, split: str = "held_out"
) -> tuple[list[list[np.ndarray]], str, bool]:
    """``n`` samples (one array per input), a description of where they came from, and whether any is random."""
    roles = input_roles(source, preprocess)
    rng = np.random.default_rng(seed)
    shapes = _concrete_shapes(source.inputs)
    lengths = _lengths(shapes, roles, n, rng)
    columns = [_column(role, shape, spec, n, rng, lengths, preprocess, split)
               for role, shape, spec in zip(roles, shapes, source.inputs)]  # fmt: skip
    samples = [[col[i] for col in columns] for i in range(n)]
    parts = [f"{r.name}: {_describe(r)}" for r in roles]
    synthetic = any(r.synthetic for r in roles)
    return samples, "; ".join(parts), synthetic


def _describe(role: InputRole) -> str:
    text = {
        "token_ids": f"token ids within the vocabulary ({role.vocab}), realistic lengths",
        "attention_mask": "attention mask of the used positions",
        "token_type_ids": "segment 0",
        "position_ids": "positions 0..S-1",
        "image": "held-out real photo crops",
        "waveform": "held-out speech (espeak-ng)",
        "log_mel": "log-mel of held-out speech (espeak-ng)",
        "random": "seeded random values (synthetic)",
    }[role.role]
    return f"{text}, {role.note}" if role.note else text


def _concrete_shapes(inputs: Sequence[TensorSpec]) -> list[tuple[int, ...]]:
    """Shapes with batch 1 and every other dynamic dim the same default sequence length."""
    out = []
    for s in inputs:
        dims = [(1 if i == 0 else DEFAULT_SEQUENCE) if d is None else d for i, d in enumerate(s.shape)]
        out.append(tuple(dims))
    return out


def _sequence_dim(shape: tuple[int, ...]) -> int:
    return shape[-1] if shape else 1


def _lengths(shapes: list[tuple[int, ...]], roles: list[InputRole], n: int, rng: np.random.Generator) -> np.ndarray:
    """Per sample, how many of the sequence positions are used (shared by ids and mask)."""
    seqs = [_sequence_dim(s) for s, r in zip(shapes, roles) if r.role in ("token_ids", "attention_mask")]
    seq = max(seqs) if seqs else 1
    low = max(1, min(seq, max(2, seq // 4)))
    return rng.integers(low, seq + 1, size=n)


def _column(role: InputRole, shape: tuple[int, ...], spec: TensorSpec, n: int, rng: np.random.Generator,
            lengths: np.ndarray, preprocess: Any, split: str) -> list[np.ndarray]:  # fmt: skip
    dtype = np.dtype(spec.dtype)
    seq = _sequence_dim(shape)
    used = [np.arange(seq) < min(int(L), seq) for L in lengths]
    if role.role == "token_ids":
        vocab = max(1, role.vocab or 2)
        low = 1 if vocab > 2 else 0  # 0 is the padding id of most tokenizers
        return [np.where(u, rng.integers(low, vocab, size=shape), 0).astype(dtype) for u in used]
    if role.role == "attention_mask":
        return [np.broadcast_to(u, shape).astype(dtype) for u in used]
    if role.role == "token_type_ids":
        return [np.zeros(shape, dtype) for _ in range(n)]
    if role.role == "position_ids":
        return [np.broadcast_to(np.arange(seq), shape).astype(dtype) for _ in range(n)]
    if role.role == "image":
        return _images(spec, shape, n, preprocess, split)
    if role.role in ("waveform", "log_mel"):
        clips = _speech_windows(shape, n, role.role)
        if clips is not None:
            return [c.astype(dtype) for c in clips]
    return [rng.standard_normal(shape).astype(dtype) for _ in range(n)]


def _is_image(spec: TensorSpec) -> bool:
    shape = spec.shape
    if len(shape) != 4 or np.dtype(spec.dtype).kind != "f":
        return False
    nchw = shape[1] in (1, 3) and all(d is None or d >= 8 for d in shape[2:])
    nhwc = shape[3] in (1, 3) and all(d is None or d >= 8 for d in shape[1:3])
    return nchw or nhwc


def _waveform_length(spec: TensorSpec) -> int:
    shape = [d for d in spec.shape if d != 1]
    if np.dtype(spec.dtype).kind != "f" or len(spec.shape) > 3 or len(shape) != 1 or shape[0] is None:
        return 0
    return shape[0] if shape[0] >= MIN_WAVEFORM else 0


def _mel_shape(spec: TensorSpec) -> bool:
    s = spec.shape
    return np.dtype(spec.dtype).kind == "f" and len(s) == 3 and s[0] in (1, None) and s[1] in MEL_BANDS


def _images(spec: TensorSpec, shape: tuple[int, ...], n: int, preprocess: Any, split: str) -> list[np.ndarray]:
    from converters import datasets
    from edge_sdk.preprocess import PreprocessSpec

    nchw = shape[1] in (1, 3) and not (shape[3] in (1, 3) and shape[1] > 3)
    h, w = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
    channels = shape[1] if nchw else shape[3]
    if not datasets.available_photos():
        rng = np.random.default_rng(0)
        return [rng.standard_normal(shape).astype(spec.dtype) for _ in range(n)]
    spec_pp = (
        preprocess
        if hasattr(preprocess, "size")
        else PreprocessSpec(
            size=(h, w), mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), layout="NCHW" if nchw else "NHWC"
        )
    )
    pick = datasets.held_out_images if split == "held_out" else datasets.calibration_images
    batch = max(1, shape[0])
    crops = []
    for im in pick(n * batch, spec_pp.size):
        x = np.asarray(spec_pp.apply(im), dtype=np.float32)
        crops.append(x.mean(axis=1 if nchw else 3, keepdims=True) if channels == 1 else x)
    out = []
    for i in range(n):  # a batch of distinct crops per sample when the input takes a batch
        x = np.concatenate(crops[i * batch : (i + 1) * batch])
        out.append(x.reshape(shape).astype(spec.dtype) if x.size == int(np.prod(shape)) else x.astype(spec.dtype))
    return out


def _speech_windows(shape: tuple[int, ...], n: int, role: str) -> list[np.ndarray] | None:
    """``n`` windows of held-out speech shaped like the input (waveform or log-mel), None without espeak-ng."""
    from converters.datasets import HELD_OUT_UTTERANCES
    from edge_sdk.audio.default_media import make_speech_clip
    from edge_sdk.errors import EdgeSDKError

    try:
        clip, _ = make_speech_clip(HELD_OUT_UTTERANCES, seed=7, sample_rate=16000)
    except EdgeSDKError:
        return None
    if role == "waveform":
        size = int(np.prod(shape))
        hop = max(1, (len(clip) - size) // max(1, n)) if len(clip) > size else 1
        wins = [np.resize(clip[i * hop : i * hop + size], size) for i in range(n)]
        return [w.reshape(shape) for w in wins]
    from edge_sdk.audio.logmel import log_mel

    bands, frames = shape[1], shape[2] or 3000
    mel = log_mel(clip, 16000, n_mels=bands).T  # (bands, frames)
    out = []
    for i in range(n):
        start = (i * max(1, mel.shape[1] // max(1, n))) % max(1, mel.shape[1])
        rolled = np.roll(mel, -start, axis=1)
        win = np.tile(rolled, (1, -(-frames // rolled.shape[1])))[:, :frames]  # repeat in time, never across bands
        out.append(win.reshape(shape))
    return out
