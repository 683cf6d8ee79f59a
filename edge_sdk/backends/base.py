"""The contract every runtime backend implements.

A backend owns one native session/interpreter/compiled model. The
:class:`edge_sdk.model.Model` wrapper does the user-facing work (input checks,
quantization, naming); a backend's ``run`` is the thinnest possible call into
its runtime, so the SDK adds as little as possible per inference.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from edge_sdk.formats import ModelFile
from edge_sdk.tensor_spec import TensorSpec


class Backend(ABC):
    """One loaded model inside one runtime."""

    #: registry key, e.g. ``"onnxruntime"``
    name: ClassVar[str]
    #: formats this runtime reads, in the registry's format names
    formats: ClassVar[tuple[str, ...]]
    #: the ``pip install "edge-sdk[extra]"`` that provides the runtime
    extra: ClassVar[str]

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @classmethod
    @abstractmethod
    def is_available(cls) -> bool:
        """True when the runtime can be imported (without importing it if possible)."""

    @abstractmethod
    def __init__(
        self, model_file: ModelFile, *, threads: int | None, device: str, options: Mapping[str, Any]
    ) -> None: ...

    @abstractmethod
    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run once; ``feeds`` are in ``self.inputs`` order, outputs in ``self.outputs`` order."""

    def describe(self) -> dict[str, Any]:
        """What the runtime actually uses (providers, delegate, device), for ``info`` and logs."""
        return {"backend": self.name}

    def close(self) -> None:
        """Release the native objects; the default drops references."""
        for attr in list(vars(self)):
            if attr not in ("inputs", "outputs"):
                setattr(self, attr, None)
