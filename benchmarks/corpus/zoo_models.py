"""Our own zoo models (real pretrained weights), converted by name: ``zoo:efficientnet-lite0``,
``zoo:centerface``, ``zoo:silero-vad``. Images calibrate on photo crops (``photos:N``) and validate on the
zoo's default held-out crops; Silero VAD calibrates on a folder of espeak-ng WAVs and validates on the
default held-out speech."""

from __future__ import annotations

from pathlib import Path

from ._common import Builder, Case, speech_windows


def _image(name: str, desc: str) -> Builder:
    def build(workdir: Path, n_calib: int, n_held: int) -> Case:
        return Case(f"zoo:{name}", None, f"photos:{n_calib}", None, "classifier" if "lite" in name else "detector",
                    "real pretrained weights", desc)  # fmt: skip

    build.__doc__ = f"zoo:{name}"
    return build


def silero_vad(workdir: Path, n_calib: int, n_held: int) -> Case:
    """zoo:silero-vad (stateful LSTM, 512-sample windows at 16 kHz): calibration from espeak-ng WAVs."""
    from edge_sdk.audio.wav import write_wav

    folder = workdir / "calib_wavs"
    folder.mkdir(parents=True, exist_ok=True)
    for i, w in enumerate(speech_windows("calibration", 4, 3.0)):
        write_wav(folder / f"speech_{i}.wav", w, 16000)
    return Case("zoo:silero-vad", None, str(folder), None, "audio", "real weights, state carried",
                "audio 1x576 + state")  # fmt: skip


ARCHS: dict[str, Builder] = {
    "zoo_efficientnet_lite0": _image("efficientnet-lite0", "image 1x3x224x224"),
    "zoo_centerface": _image("centerface", "image 1x3x480x640"),
    "zoo_silero_vad": silero_vad,
}
