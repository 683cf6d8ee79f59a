"""``keras.applications`` models with ``weights=None``, saved to ``.keras`` and converted from the file.

Each gets the input scaling its application expects (MobileNetV2/NASNet: [-1, 1]; ResNet50: caffe BGR
mean subtraction; DenseNet: torch mean/std; MobileNetV3/EfficientNetV2/ConvNeXt: 0..255 with the
preprocessing built into the model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._common import Builder, Case, normalise, photos, set_keras_bn_stats
from .heads import HEAD_CROPS, HEAD_SEED, fit_keras_head, photo_labels

_SCALING: dict[str, dict[str, Any]] = {
    "tf": {"mean": 1.0, "std": 1.0, "scale": 1 / 127.5},  # x / 127.5 - 1
    "caffe": {"mean": (103.939, 116.779, 123.68), "std": 1.0, "scale": 1.0, "bgr": True},
    "torch": {},  # ImageNet mean/std on [0, 1]
    "raw": {"mean": 0.0, "std": 1.0, "scale": 1.0},  # 0..255, the model rescales
}


def _app(factory: str, scaling: str, size: int = 224, note: str = "", **kwargs: Any) -> Builder:
    def build(workdir: Path, n_calib: int, n_held: int) -> Case:
        import keras

        norm = {**_SCALING[scaling], "layout": "NHWC"}
        keras.utils.set_random_seed(0)  # the same random weights every run: a cell's figure is reproducible
        # logits, as torchvision/timm models give: a softmax over 1000 random-weight classes is nearly uniform
        model = getattr(keras.applications, factory)(weights=None, input_shape=(size, size, 3),
                                                     classifier_activation=None, **kwargs)  # fmt: skip
        set_keras_bn_stats(model, normalise(photos("calibration", 16, size, seed=7), **norm))
        head = fit_keras_head(model, normalise(photos("calibration", HEAD_CROPS, size, seed=HEAD_SEED), **norm),
                              photo_labels(HEAD_CROPS))  # fmt: skip
        notes = f"{note}; head {head} fitted on photos".lstrip("; ") if head else note
        path = workdir / f"{factory.lower()}.keras"
        model.save(path)
        calib = normalise(photos("calibration", n_calib, size), **norm)
        held = normalise(photos("held_out", n_held, size), **norm)
        return Case(path, None, calib, held, "classifier", notes, f"image 1x{size}x{size}x3 ({scaling} scaling)")

    build.__doc__ = f"keras.applications.{factory}(weights=None, input_shape=({size}, {size}, 3), logits out)"
    return build


ARCHS: dict[str, Builder] = {
    "keras_mobilenet_v2": _app("MobileNetV2", "tf"),
    "keras_mobilenet_v3_small": _app("MobileNetV3Small", "raw"),
    "keras_mobilenet_v3_large": _app("MobileNetV3Large", "raw"),
    "keras_efficientnet_v2_b0": _app("EfficientNetV2B0", "raw"),
    "keras_resnet50": _app("ResNet50", "caffe"),
    "keras_densenet121": _app("DenseNet121", "torch"),
    "keras_nasnet_mobile": _app("NASNetMobile", "tf"),
    "keras_convnext_tiny": _app("ConvNeXtTiny", "raw"),
}

SMALL: dict[str, Builder] = {
    "keras_mobilenet_v2_a035_96": _app("MobileNetV2", "tf", size=96, note="alpha 0.35", alpha=0.35),
}
