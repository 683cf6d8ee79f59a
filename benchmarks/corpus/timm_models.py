"""``timm`` models with ``pretrained=False`` at their default input size."""

from __future__ import annotations

from pathlib import Path

from ._common import Builder, Case, install_torchvision_shim, torch_image_case


def _timm(name: str) -> Builder:
    def build(workdir: Path, n_calib: int, n_held: int) -> Case:
        install_torchvision_shim()  # timm imports torchvision
        import timm

        model = timm.create_model(name, pretrained=False)
        cfg = model.pretrained_cfg
        size = tuple(cfg.get("input_size", (3, 224, 224))[1:])
        mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
        return torch_image_case(model, n_calib, n_held, size, "classifier", mean=mean, std=std)

    build.__doc__ = f"timm.create_model('{name}', pretrained=False)"
    return build


ARCHS: dict[str, Builder] = {
    "timm_mobilevit_xxs": _timm("mobilevit_xxs"),
    "timm_efficientformerv2_s0": _timm("efficientformerv2_s0"),
    "timm_efficientformer_l1": _timm("efficientformer_l1"),
    "timm_levit_128s": _timm("levit_128s"),
    "timm_ghostnet_100": _timm("ghostnet_100"),
}
