"""The public conversion corpus: architectures from the families people bring, each one small builder.

``REGISTRY`` maps an architecture name to its builder; ``builder(workdir, n_calib, n_held)`` returns a
:class:`Case` (model or model file, example inputs, calibration and held-out data, output kind).
``SUBSET`` is the fast set the test suite converts. ``benchmarks/coverage.py`` runs them.
"""

from __future__ import annotations

from . import audio_models, hf_models, keras_models, timm_models, torchvision_models, yolo_models, zoo_models
from ._common import Builder, Case

FAMILIES = {
    "torchvision": torchvision_models,
    "keras": keras_models,
    "timm": timm_models,
    "transformers": hf_models,
    "audio": audio_models,
    "yolo": yolo_models,
    "zoo": zoo_models,
}

#: name -> (family, builder), the whole corpus
REGISTRY: dict[str, tuple[str, Builder]] = {
    name: (family, fn) for family, mod in FAMILIES.items() for name, fn in mod.ARCHS.items()
}
#: small/fast variants (smaller inputs) that only the test subset uses
SMALL: dict[str, tuple[str, Builder]] = {
    name: (family, fn) for family, mod in FAMILIES.items() for name, fn in getattr(mod, "SMALL", {}).items()
}
#: the fast subset the test suite runs (fp32 and int8-dynamic, all three targets)
SUBSET = (
    "tv_squeezenet1_1_112",
    "tv_mobilenet_v3_small_96",
    "keras_mobilenet_v2_a035_96",
    "kws_cnn",
    "hf_bert_tiny",
    "yolov8n_160",
)


def get(name: str) -> tuple[str, Builder]:
    """(family, builder) of ``name``, from the corpus or its small variants; KeyError naming the known ones."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name in SMALL:
        return SMALL[name]
    raise KeyError(f"no architecture {name!r} in the corpus; known: {', '.join([*REGISTRY, *SMALL])}")


__all__ = ["FAMILIES", "REGISTRY", "SMALL", "SUBSET", "Builder", "Case", "get"]
