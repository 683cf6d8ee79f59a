"""torchvision classification, detection and segmentation models, random weights (``weights=None``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._common import Builder, Case, install_torchvision_shim, torch_image_case


def _tv() -> Any:
    install_torchvision_shim()
    import torchvision

    return torchvision.models


def _classifier(factory: str, size: int = 224, note: str = "", **kwargs: Any) -> Builder:
    def build(workdir: Path, n_calib: int, n_held: int) -> Case:
        model = getattr(_tv(), factory)(weights=None, **kwargs)
        return torch_image_case(model, n_calib, n_held, size, "classifier", note)

    build.__doc__ = f"torchvision.models.{factory}(weights=None{''.join(f', {k}={v}' for k, v in kwargs.items())})"
    return build


def _vit(workdir: Path, n_calib: int, n_held: int) -> Case:
    """torchvision VisionTransformer (the ViT-B/16 code) at ViT-S width: patch 16, hidden 384, 6 layers, 6 heads."""
    model = _tv().VisionTransformer(image_size=224, patch_size=16, num_layers=6, num_heads=6, hidden_dim=384,
                                    mlp_dim=1536)  # fmt: skip
    return torch_image_case(model, n_calib, n_held, 224, "classifier", "ViT-B/16 code at hidden 384, 6 layers")


def _ssdlite(workdir: Path, n_calib: int, n_held: int) -> Case:
    """SSDlite320-MobileNetV3-Large: backbone + head (box regression, class logits), not the NMS postprocess."""
    import torch

    det = _tv().detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)

    class BackboneHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.head = det.backbone, det.head

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.head(list(self.backbone(x).values()))
            return out["bbox_regression"], out["cls_logits"]

    # torchvision's detector normalises inside (GeneralizedRCNNTransform); this wrapper takes normalised input
    return torch_image_case(BackboneHead(), n_calib, n_held, 320, "detector", "backbone+head, no NMS")


def _segmenter(factory: str, size: int = 224) -> Builder:
    def build(workdir: Path, n_calib: int, n_held: int) -> Case:
        import torch

        seg = getattr(_tv().segmentation, factory)(weights=None, weights_backbone=None, num_classes=21)

        class Out(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.seg = seg

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.seg(x)["out"]

        return torch_image_case(Out(), n_calib, n_held, size, "segmenter", "21 classes, 'out' head")

    build.__doc__ = f"torchvision.models.segmentation.{factory}(weights=None, num_classes=21)['out']"
    return build


ARCHS: dict[str, Builder] = {
    "tv_resnet18": _classifier("resnet18"),
    "tv_mobilenet_v2": _classifier("mobilenet_v2"),
    "tv_mobilenet_v3_small": _classifier("mobilenet_v3_small"),
    "tv_mobilenet_v3_large": _classifier("mobilenet_v3_large"),
    "tv_efficientnet_b0": _classifier("efficientnet_b0"),
    "tv_regnet_x_400mf": _classifier("regnet_x_400mf"),
    "tv_regnet_y_400mf": _classifier("regnet_y_400mf"),
    "tv_mnasnet1_0": _classifier("mnasnet1_0"),
    "tv_shufflenet_v2_x1_0": _classifier("shufflenet_v2_x1_0"),
    "tv_squeezenet1_1": _classifier("squeezenet1_1"),
    "tv_convnext_tiny": _classifier("convnext_tiny"),
    # ViT-B/16's structure at ViT-S width and 6 layers: the same ops, a third of the time on 2 cores
    "tv_vit_s16_6l": _vit,
    "tv_swin_t": _classifier("swin_t"),
    "tv_ssdlite320_mobilenet_v3": _ssdlite,
    "tv_lraspp_mobilenet_v3": _segmenter("lraspp_mobilenet_v3_large"),
    "tv_deeplabv3_mobilenet_v3": _segmenter("deeplabv3_mobilenet_v3_large"),
}

#: small and fast, for the test subset
SMALL: dict[str, Builder] = {
    "tv_squeezenet1_1_112": _classifier("squeezenet1_1", size=112),
    "tv_mobilenet_v3_small_96": _classifier("mobilenet_v3_small", size=96),
}
