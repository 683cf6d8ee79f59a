"""Stage 2, prepare the data: calibration for int8 and held-out inputs for validation, of the user's kind.

The user's own data (``--calib`` without ``--held-out``) is split 80/20; without user data, realistic
inputs per input kind (:mod:`converters.realistic_inputs`); random values only as a last resort, marked.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from converters.calibration import CalibrationSet, load_calibration
from converters.sources import SourceModel
from converters.stateful import roll_state, with_default_extras
from converters.validate import HeldOut
from edge_sdk.errors import ConversionError
from edge_sdk.preprocess import AudioSpec

log = logging.getLogger("edge_sdk")

#: share of the user's own data (``--calib`` without ``--held-out``) kept apart for validation
HELD_OUT_SHARE = 0.2
MIN_SPLIT_SAMPLES = 5
GENERATED_CALIBRATION_SAMPLES = 64
#: fewer samples of the user's own than this to validate on: the agreement figures are said to be rough
FEW_VALIDATION_SAMPLES = 20


def prepare_data(
    source: SourceModel, calibration: Any, held_out: Any, preprocess: Any, n: int, needs_calibration: bool
) -> tuple[CalibrationSet | None, HeldOut]:
    """(calibration set or None, held-out inputs without their reference outputs yet)."""
    calib_data, held_part = split_user_data(calibration, held_out, source, preprocess, n)
    calib = make_calibration(calib_data, source, preprocess) if needs_calibration else None
    held = held_part or held_out_inputs(held_out, source, preprocess, n)
    if (held_part is not None or held_out is not None) and len(held.samples) < FEW_VALIDATION_SAMPLES:
        kept = f" ({HELD_OUT_SHARE:.0%} of --calib kept apart)" if held_part is not None else ""
        log.warning("validating on only %d sample(s) of your data%s: agreement figures (top-1, cosine) from so few "
                    "are rough; give --held-out with %d+ samples", len(held.samples), kept, 50)  # fmt: skip
    return calib, held


def split_user_data(
    calibration: Any, held_out: Any, source: SourceModel, preprocess: Any, n: int
) -> tuple[Any, HeldOut | None]:
    """The user's own data split 80/20 (deterministic, seeded): calibration part, validation part.

    Validation on data of the user's kind, never on the samples the int8 scales were fitted to. Audio is
    split by recording (a state is carried within one), other data by sample. Without user data, or
    with ``held_out`` given, or too few samples to split: (calibration, None).
    """
    generated = isinstance(calibration, str) and (calibration == "synthetic" or calibration.startswith("photos"))
    user = calibration is not None and not generated
    if not user or held_out is not None:
        return calibration, None
    cs = load_calibration(calibration, source.inputs, preprocess=preprocess)
    if len(cs.samples) < MIN_SPLIT_SAMPLES:
        log.warning("only %d samples in %s: all used for calibration; validation uses generated inputs",
                    len(cs.samples), cs.origin)  # fmt: skip
        return cs, None
    by_group = cs.kind == "wav" and len(set(cs.groups)) >= 2
    keys = sorted(set(cs.groups)) if by_group else list(range(len(cs.samples)))
    order = np.random.default_rng(0).permutation(len(keys))
    held_keys = {keys[i] for i in order[: max(1, round(len(keys) * HELD_OUT_SHARE))]}
    key_of = cs.groups if by_group else list(range(len(cs.samples)))
    pick = [i for i, k in enumerate(key_of) if k in held_keys]
    rest = [i for i, k in enumerate(key_of) if k not in held_keys]
    subset = lambda idx: [cs.groups[i] for i in idx] if cs.groups else []  # noqa: E731
    held_cs = replace(cs, samples=[cs.samples[i] for i in pick], groups=subset(pick))
    held = HeldOut(as_streamed(source, held_cs), f"held-out {HELD_OUT_SHARE:.0%} of {cs.origin} "
                   f"({len(pick)} of {len(cs.samples)} samples, seeded split)", cs.synthetic)  # fmt: skip
    calib = replace(cs, samples=[cs.samples[i] for i in rest], groups=subset(rest), notes=list(cs.notes))
    calib.notes.append(f"{len(pick)} of {len(cs.samples)} samples kept apart for validation")
    return calib, held


def make_calibration(calibration: Any, source: SourceModel, preprocess: Any) -> CalibrationSet:
    if calibration is None:
        raise ConversionError(
            "int8 needs calibration data: pass --calib PATH (images, .npy/.npz, WAV folder) "
            "or --calib synthetic to accept random data explicitly (the result is then marked synthetic)"
        )
    if isinstance(calibration, str) and calibration == "synthetic":
        cs = _generated_calibration(source, preprocess)
    else:
        cs = load_calibration(calibration, source.inputs, preprocess=preprocess)
    return replace(cs, samples=as_streamed(source, cs))


def _generated_calibration(source: SourceModel, preprocess: Any) -> CalibrationSet:
    """``--calib synthetic``: no data from the user, so the best we can generate, from the calibration split:
    photo crops for image inputs, speech for audio, token ids inside the vocabulary; random values only for
    inputs of no known kind. Marked synthetic: int8 scales from it are a guess about the user's data."""
    from converters.realistic_inputs import realistic_samples

    samples, origin, _ = realistic_samples(source, GENERATED_CALIBRATION_SAMPLES, preprocess=preprocess, seed=0,
                                           split="calibration")  # fmt: skip
    cs = CalibrationSet(samples, "synthetic", f"generated: {origin}", synthetic=True,
                        input_names=[s.name for s in source.inputs])  # fmt: skip
    cs.notes.append("generated calibration (no --calib data): int8 scales may not fit your data")
    log.warning(cs.notes[-1])
    return cs


#: generated samples the int8-dynamic fallback ranks layers on when the user gave no calibration data
RANKING_SAMPLES = 16


def ranking_samples(source: SourceModel, preprocess: Any) -> CalibrationSet:
    """Samples to rank an int8-dynamic model's layers on when the user gave none: generated from the calibration
    split as ``--calib synthetic`` does (photos, speech, in-vocabulary tokens), never the held-out ones. Made only
    when plain int8-dynamic misses its tolerance; no scale is fitted to them, so no warning."""
    from converters.realistic_inputs import realistic_samples

    samples, origin, _ = realistic_samples(source, RANKING_SAMPLES, preprocess=preprocess, seed=0,
                                           split="calibration")  # fmt: skip
    cs = CalibrationSet(samples, "synthetic", f"generated: {origin}", synthetic=True,
                        input_names=[s.name for s in source.inputs])  # fmt: skip
    return replace(cs, samples=as_streamed(source, cs))


def as_streamed(source: SourceModel, cs: CalibrationSet) -> list[list[Any]]:
    """``cs``'s samples as the model sees them in use: audio windows get the source's extra inputs, and a
    recurrent state is carried window to window (see :mod:`converters.stateful`)."""
    samples = with_default_extras(source, cs.samples) if cs.kind == "wav" else cs.samples
    return roll_state(source, samples, cs.groups)


def held_out_inputs(held_out: Any, source: SourceModel, preprocess: Any, n: int) -> HeldOut:
    """Validation inputs: the user's ``held_out``, else real speech / photos / realistic inputs per kind."""
    if held_out is not None:
        cs = load_calibration(held_out, source.inputs, preprocess=preprocess, limit=n, role="held-out")
        return HeldOut(as_streamed(source, cs), cs.origin, cs.synthetic)
    if isinstance(preprocess, AudioSpec):
        from converters import datasets

        windows = datasets.held_out_speech(preprocess, n)
        if windows:
            samples = roll_state(source, with_default_extras(source, [[w] for w in windows]), [0] * len(windows))
            return HeldOut(samples, "held-out speech (espeak-ng), state carried", False)
    if preprocess is not None and hasattr(preprocess, "size") and len(source.inputs) == 1:
        from converters import datasets

        if datasets.available_photos():
            images = datasets.held_out_images(n, preprocess.size)
            return HeldOut([[preprocess.apply(im)] for im in images], "held-out real photo crops", False)
    from converters.realistic_inputs import realistic_samples

    samples, origin, synthetic = realistic_samples(source, n, preprocess=preprocess)
    if synthetic:
        log.warning("validating on partly random inputs (%s): pass --held-out or --calib with your own data", origin)
    return HeldOut(samples, origin, synthetic)
