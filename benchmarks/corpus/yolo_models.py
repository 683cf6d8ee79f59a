"""YOLO detectors built from ultralytics' architecture files (``yolov8n.yaml``, ``yolo11n.yaml``), nothing
downloaded. The Detect head is put in export mode as ultralytics' own exporter does (fused, ``export=True``,
static grid), so the output is the raw (1, 84, anchors) tensor before NMS."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ._common import Builder, Case, install_torchvision_shim, torch_image_case


def _yolo(yaml: str, size: int) -> Builder:
    def build(workdir: Path, n_calib: int, n_held: int) -> Case:
        os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))
        os.environ.setdefault("YOLO_OFFLINE", "1")
        install_torchvision_shim()
        from ultralytics.nn.modules.head import Detect
        from ultralytics.nn.tasks import DetectionModel

        model = DetectionModel(yaml, verbose=False)
        for p in model.parameters():
            p.requires_grad = False
        # BN statistics first (on the unfused model), then fuse Conv+BN as the exporter does
        case = torch_image_case(model, n_calib, n_held, size, "detector", f"{size}x{size}, raw head output, no NMS",
                                mean=0.0, std=1.0)  # fmt: skip
        model = model.eval().float().fuse()
        for m in model.modules():
            if isinstance(m, Detect):
                m.dynamic, m.export, m.format = False, True, "onnx"
                m.max_det = min(m.max_det, sum((size // int(s)) ** 2 for s in model.stride.tolist()))
        case.model = model
        return case

    build.__doc__ = f"ultralytics DetectionModel('{yaml}') at {size}x{size}, Detect head in export mode"
    return build


ARCHS: dict[str, Builder] = {"yolov8n": _yolo("yolov8n.yaml", 320), "yolo11n": _yolo("yolo11n.yaml", 320)}
SMALL: dict[str, Builder] = {"yolov8n_160": _yolo("yolov8n.yaml", 160)}
