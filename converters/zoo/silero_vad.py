"""Silero VAD voice-activity detector (ONNX, MIT), files inside pip package ``silero-vad``.

Stateful streaming at 16 kHz: each call takes 512 new samples preceded by the previous
64 (``input`` ``(1, 576)`` float32 in [-1, 1]; zeros before the first window), and the
LSTM ``state`` ``(2, 1, 128)`` float32 returned by the previous call (zeros at the start).
It returns ``output`` ``(1, 1)``, the speech probability of the window, and ``stateN`` to
feed back as ``state``. See :class:`edge_sdk.preprocess.AudioSpec` for the windowing.

Variants (all give the same probabilities, checked to 1e-7):

- ``16k`` (default, ``silero_vad_openvino_16k.onnx``): 16 kHz only, static shapes, no
  ``sr`` input and no ``If`` control flow: the one to convert to TFLite / OpenVINO / int8.
- ``op16`` (``silero_vad.onnx``, what ``silero_vad.load_silero_vad(onnx=True)`` uses):
  dynamic batch/length, an extra scalar int64 input ``sr`` (8000 or 16000) selecting an
  ``If`` branch; at 8 kHz the window is 256 + 32 context samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converters.zoo.base import ZooEntry
from edge_sdk.errors import ZooError
from edge_sdk.preprocess import AudioSpec

VARIANTS = {"16k": "silero_vad_openvino_16k.onnx", "op16": "silero_vad.onnx"}
SAMPLE_RATE, WINDOW, CONTEXT = 16000, 512, 64


class SileroVAD(ZooEntry):
    name = "silero-vad"
    task = "vad"
    source_format = "onnx"
    description = "Silero VAD: speech probability per 32 ms window at 16 kHz, stateful (LSTM state carried)"
    license = "MIT"
    packages = (("silero-vad", "silero_vad", tuple(f"data/{f}" for f in VARIANTS.values())),)
    input_names = ("input", "state")
    outputs = {
        "output": "(1, 1) speech probability of the 512-sample window",
        "stateN": "(2, 1, 128) LSTM state: feed back as 'state' on the next call",
    }
    options = {"variant": "16k"}

    def _variant(self, variant: str) -> str:
        if variant not in VARIANTS:
            raise ZooError(f"silero-vad variant {variant!r} is unknown; choose {' or '.join(VARIANTS)}")
        return VARIANTS[variant]

    def input_names_for(self, *, variant: str = "16k") -> tuple[str, ...]:
        self._variant(variant)
        return ("input", "state", "sr") if variant == "op16" else ("input", "state")

    def preprocess(self, **opts: Any) -> AudioSpec:
        return AudioSpec(sample_rate=SAMPLE_RATE, window=WINDOW, context=CONTEXT)

    def example_inputs(self, *, variant: str = "16k") -> list[np.ndarray]:
        t = np.arange(CONTEXT + WINDOW, dtype=np.float32) / SAMPLE_RATE
        noise = np.random.default_rng(0).standard_normal(t.size).astype(np.float32)
        audio = (0.2 * np.sin(2 * np.pi * 220.0 * t) + 0.01 * noise).astype(np.float32)[None]
        inputs = [audio, np.zeros((2, 1, 128), np.float32)]
        if self.input_names_for(variant=variant)[-1] == "sr":
            inputs.append(np.array(SAMPLE_RATE, dtype=np.int64))
        return inputs

    def _materialize(self, cache_dir: Path, *, variant: str = "16k") -> Path:
        """A copy of the packaged file carrying the entry's record (task vad, the 16 kHz windowing), so that
        it runs alone; written once into ``cache_dir``."""
        src = self.package_file(0, f"data/{self._variant(variant)}")
        return self.write_copy(src, cache_dir / f"silero-vad-{variant}.onnx", self.record(src, variant=variant))


ENTRY = SileroVAD()
