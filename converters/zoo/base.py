"""What every zoo entry is: metadata, an installed check that imports nothing, and ``materialize``.

Every model file ``materialize`` writes carries the entry's record inside it (task, preprocessing, labels, the
packaged file's sha256; :mod:`converters.embed_metadata`, as ``edge-sdk convert`` writes it), so the file runs
correctly when copied alone. The record has no timestamp: the same package gives byte-identical files, and a
cached file is reused only while it carries the record the installed package gives (a file cached by an older
edge_sdk without one, or from another package version, is written again under the same name).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from converters.atomic import open_atomic
from edge_sdk.errors import ZooError, ZooPackageMissingError
from edge_sdk.preprocess import AnySpec


def default_cache_dir() -> Path:
    """``$EDGE_SDK_CACHE_DIR/zoo``, else ``$XDG_CACHE_HOME/edge_sdk/zoo``, else ``~/.cache/edge_sdk/zoo``."""
    env = os.environ.get("EDGE_SDK_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "zoo"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edge_sdk" / "zoo"


def find_package_dir(module: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


#: zoo files are written like every converter output: temp name in the same folder, then rename
atomic_path = open_atomic


@dataclass
class ZooModel:
    """A materialized zoo model with everything a converter needs to run and check it."""

    name: str
    task: str
    source_format: str  # "torch" (model is an nn.Module), else the file's suffix: "onnx", "pt2"
    model: Any
    example_inputs: list[np.ndarray]
    input_names: list[str]
    output_names: list[str]
    preprocess: AnySpec
    labels: list[str] | None = None
    description: str = ""
    notes: dict[str, str] = field(default_factory=dict)


class ZooEntry:
    """One real pretrained model carried by pip packages. Subclasses set the class attributes
    and implement :meth:`_materialize`, :meth:`preprocess` and :meth:`example_inputs`."""

    name: ClassVar[str]
    task: ClassVar[str]
    source_format: ClassVar[str]
    description: ClassVar[str]
    license: ClassVar[str] = ""
    #: (pip name, import name, files inside the package that must exist); the first is "the" package
    packages: ClassVar[tuple[tuple[str, str, tuple[str, ...]], ...]]
    input_names: ClassVar[tuple[str, ...]]
    #: output name -> what it means
    outputs: ClassVar[dict[str, str]]
    #: option name -> default
    options: ClassVar[dict[str, Any]] = {}

    @property
    def package(self) -> str:
        """The pip package that carries the model's weights."""
        return self.packages[0][0]

    def missing_package(self) -> str | None:
        """The first required pip package (or packaged file) that is absent; imports nothing."""
        for pip_name, module, files in self.packages:
            folder = find_package_dir(module)
            if folder is None or not all((folder / f).is_file() for f in files):
                return pip_name
        return None

    def is_installed(self) -> bool:
        return self.missing_package() is None

    def require(self) -> None:
        """Raise ZooPackageMissingError naming the pip package to install, if one is missing."""
        missing = self.missing_package()
        if missing is not None:
            raise ZooPackageMissingError(f"zoo model '{self.name}'", missing)

    def package_file(self, index: int, relpath: str) -> Path:
        """A file inside the ``index``-th package (after :meth:`require`)."""
        folder = find_package_dir(self.packages[index][1])
        if folder is None:
            raise ZooPackageMissingError(f"zoo model '{self.name}'", self.packages[index][0])
        return folder / relpath

    def resolve_options(self, opts: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(opts) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise ZooError(f"zoo model '{self.name}' has no option {', '.join(unknown)}; its options: {known}")
        return {**self.options, **opts}

    def record(self, source: Path, **opts: Any) -> dict[str, Any]:
        """edge_sdk's record of the model file made from ``source`` (the packaged file) with ``opts``: what
        every file :meth:`materialize` writes carries inside it (read back by ``edge_sdk.metadata``)."""
        from converters.embed_metadata import finite, label_field
        from converters.sources import file_sha256
        from edge_sdk.metadata import SCHEMA, TASK_ALIASES

        origin = {"sha256": file_sha256(source), "kind": "zoo", "model": self.name, "package": self.package,
                  "file": source.name}  # fmt: skip
        record = {
            "schema": SCHEMA,
            "task": TASK_ALIASES.get(self.task, self.task),
            "preprocessing": self.preprocess(**opts).to_dict(),
            "labels": label_field(self.labels()),
            "source": origin,
        }
        return finite({k: v for k, v in record.items() if v is not None})

    @staticmethod
    def carries(path: Path, record: dict[str, Any]) -> bool:
        """Whether the file at ``path`` exists and carries ``record`` (the preprocessing fields that embedding
        fits to the file's own input aside): a cached file that can be reused as it is."""
        from converters.embed_metadata import FITTED_FIELDS
        from edge_sdk.errors import ModelMetadataError
        from edge_sdk.metadata import read_embedded

        if not path.is_file():
            return False
        try:
            meta = read_embedded(path)
        except ModelMetadataError:
            return False
        if meta is None:
            return False
        mine, want = meta.to_dict(), dict(record)
        if not isinstance(mine.get("preprocessing"), dict) or not isinstance(want.get("preprocessing"), dict):
            return False
        for d in (mine, want):
            d["preprocessing"] = {k: v for k, v in d["preprocessing"].items() if k not in FITTED_FIELDS}
        return all(mine.get(k) == want.get(k) for k in ("schema", "task", "labels", "source", "preprocessing"))

    def write_copy(self, source: Path, path: Path, record: dict[str, Any]) -> Path:
        """``source`` copied to ``path`` (atomically) with ``record`` embedded; kept if it already carries it."""
        import shutil

        from converters.embed_metadata import embed

        if path.suffix == ".onnx" and importlib.util.find_spec("onnx") is None and not self.carries(path, record):
            # a device without the `onnx` package (ONNX Runtime alone): the packaged file as it is, no copy;
            # `zoo:NAME` still applies the entry's preprocessing and task, only a copied file lacks them
            logging.getLogger("edge_sdk").info("%s: the onnx package is missing, metadata not embedded", path.name)
            return source
        if not self.carries(path, record):
            with atomic_path(path) as tmp:
                shutil.copyfile(source, tmp)
                embed(tmp, record, suffix=path.suffix)
        return path

    def materialize(self, cache_dir: str | os.PathLike[str] | None = None, **opts: Any) -> Any:
        """The model itself: a file Path (ONNX; a PyTorch entry's with ``export="onnx"``, or its .pt2 with
        ``export=True``) or a torch module.

        Files this writes go to ``cache_dir`` (default :func:`default_cache_dir`), atomically; an ONNX file
        carries the entry's record inside it (:meth:`record`).
        """
        self.require()
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return self._materialize(folder, **self.resolve_options(opts))

    def load(self, cache_dir: str | os.PathLike[str] | None = None, **opts: Any) -> ZooModel:
        """:meth:`materialize` plus example inputs, preprocessing, labels and I/O names."""
        model = self.materialize(cache_dir, **opts)
        o = self.resolve_options(opts)
        return ZooModel(
            name=self.name,
            task=self.task,
            source_format=model.suffix.lstrip(".") if isinstance(model, Path) else "torch",
            model=model,
            example_inputs=self.example_inputs(**o),
            input_names=list(self.input_names_for(**o)),
            output_names=list(self.outputs),
            preprocess=self.preprocess(**o),
            labels=self.labels(),
            description=self.description,
            notes=dict(self.outputs),
        )

    def input_names_for(self, **opts: Any) -> tuple[str, ...]:
        return self.input_names

    def labels(self) -> list[str] | None:
        return None

    def preprocess(self, **opts: Any) -> AnySpec:  # pragma: no cover - every entry overrides
        raise NotImplementedError

    def example_inputs(self, **opts: Any) -> list[np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _materialize(self, cache_dir: Path, **opts: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """JSON-ready metadata (no heavy imports)."""
        return {
            "name": self.name,
            "task": self.task,
            "format": self.source_format,
            "package": self.package,
            "packages": [p[0] for p in self.packages],
            "installed": self.is_installed(),
            "license": self.license,
            "description": self.description,
            "inputs": list(self.input_names),
            "outputs": dict(self.outputs),
            "options": {
                k: v if isinstance(v, (str, int, float, type(None))) else list(v) for k, v in self.options.items()
            },
        }
