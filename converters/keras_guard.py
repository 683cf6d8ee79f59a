"""Keras ``.keras`` / ``.h5`` sources: the config read within bounds; code runs only from Lambda layers, if allowed.

``keras.saving.load_model(..., safe_mode=False)`` turns off every check of Keras's safe mode: Python
lambdas anywhere, ``TorchModuleWrapper`` (a ``torch.load`` pickle), ``TFSMLayer`` (an external
SavedModel), lookup layers reading vocabulary files. ``allow_lambda=True`` (``--unsafe-allow-lambda``)
therefore never turns safe mode off: the config's built-in ``Lambda`` layers are routed to
:func:`trusted_lambda_class`, which deserializes that one layer's function with safe mode off, while
Keras keeps refusing everything else. :func:`unsafe_objects` names, before any loading, the objects
safe mode refuses, so the error says which layer and why.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from converters.untrusted_archives import check_zip_members, read_member
from edge_sdk.errors import ModelTooLargeError, SourceModelError
from edge_sdk.formats.budget import ENV_VAR, default_budget, human

#: a model config is JSON describing layers: a few MB for the largest real models
CONFIG_CAP = 64 * 1024**2
#: registered name the rewritten config gives built-in Lambda layers (a .keras file cannot name it itself:
#: only the custom_objects of this module's load resolve it)
TRUSTED_LAMBDA = "edge_sdk>TrustedLambda"
#: built-in layers whose deserialization Keras's safe mode refuses, and why
UNSAFE_CLASSES = {
    "TorchModuleWrapper": "a pickled torch module (torch.load would run its code)",
    "TFSMLayer": "an external SavedModel it would load and run",
}
LOOKUP_CLASSES = ("StringLookup", "IntegerLookup", "TextVectorization")


def keras_config(path: Path, limit: int | None = None) -> dict[str, Any]:
    """The model config stored in a .keras zip or an .h5 file, read without deserialising any layer.

    A .keras zip's members are checked against the memory budget and ``config.json`` is read with a cap
    (a zip bomb declares gigabytes); an .h5's fixed-size ``model_config`` attribute likewise."""
    path = Path(path)
    limit = default_budget() if limit is None else int(limit)
    cap = min(CONFIG_CAP, limit)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            check_zip_members(path, z, limit)
            return json.loads(read_member(path, z, "config.json", cap))
    import h5py

    with h5py.File(path, "r") as f:
        if "model_config" not in f.attrs:
            raise SourceModelError(f"{path.name} has no model_config: it is a weights-only file, not a model")
        size = f.attrs.get_id("model_config").get_storage_size()  # variable-length strings: bounded by the file
        if size > cap:
            raise ModelTooLargeError(
                f"{path.name}: its model_config attribute is {human(size)} ({size} bytes), more than a model "
                f"config may take ({human(cap)}); refused unread. Raise the budget with {ENV_VAR} if the file is yours"
            )
        raw = f.attrs["model_config"]
        return json.loads(raw if isinstance(raw, str) else raw.decode())


def _walk(config: Any, path: str = "") -> Any:
    """(dict, where) for every dict in a config, nested models included; ``where`` names the enclosing layer."""
    stack = [(config, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            inner = node.get("config")
            if "class_name" in node and isinstance(inner, dict) and isinstance(inner.get("name"), str):
                where = inner["name"]
            yield node, where
            stack.extend((v, where) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, where) for v in node)


def _is_builtin_lambda(node: dict[str, Any]) -> bool:
    module = node.get("module")
    return (
        node.get("class_name") == "Lambda"
        and node.get("registered_name") in (None, "Lambda")
        and (module is None or module == "keras.layers" or str(module).startswith("keras.src.layers"))
    )


def lambda_layers(config: Any) -> list[str]:
    """Names of Lambda layers anywhere in a Keras config (nested models included)."""
    return sorted(
        str(n.get("config", {}).get("name", "?")) for n, _ in _walk(config) if n.get("class_name") == "Lambda"
    )


def unsafe_objects(config: Any) -> list[str]:
    """What Keras's safe mode refuses in ``config`` other than built-in Lambda layers, as
    ``"layer 'name' (Class): why"`` lines; empty when only Lambda layers (or nothing) would run code."""
    found: list[str] = []
    allowed_lambdas: set[int] = set()
    for node, _ in _walk(config):
        if _is_builtin_lambda(node) and isinstance(node.get("config"), dict):
            for key in ("function", "output_shape"):
                fn = node["config"].get(key)
                if isinstance(fn, dict):
                    allowed_lambdas.add(id(fn))
    for node, where in _walk(config):
        cls = node.get("class_name")
        inner = node.get("config") if isinstance(node.get("config"), dict) else {}
        if cls in UNSAFE_CLASSES:
            found.append(f"layer '{where}' ({cls}): {UNSAFE_CLASSES[cls]}")
        elif cls == "__lambda__" and id(node) not in allowed_lambdas:
            found.append(f"layer '{where}': a Python lambda outside a Lambda layer's function (its bytecode would run)")
        elif cls == "Lambda" and not _is_builtin_lambda(node):
            found.append(f"layer '{where}' (Lambda subclass {node.get('registered_name')!r}): custom code")
        elif cls in LOOKUP_CLASSES and isinstance(inner.get("vocabulary"), str):
            found.append(
                f"layer '{where}' ({cls}): reads the vocabulary file {inner['vocabulary']!r} outside the model"
            )
    return found


def load_keras_model(path: Path, config: dict[str, Any], *, allow_lambda: bool, workdir: Path | None = None) -> Any:
    """``keras.saving.load_model`` in safe mode; with ``allow_lambda`` the built-in Lambda layers (and only
    they) deserialize their Python functions. ``config`` is :func:`keras_config`'s result for ``path``."""
    import keras

    path = Path(path)
    if not allow_lambda or not lambda_layers(config):
        return keras.saving.load_model(str(path), safe_mode=True, compile=False)
    trusted = trusted_lambda_class()
    if not zipfile.is_zipfile(path):  # legacy .h5: classes are looked up by class_name, custom objects first
        return keras.saving.load_model(str(path), custom_objects={"Lambda": trusted}, safe_mode=True, compile=False)
    from converters.atomic import temp_workdir

    for node, _ in _walk(config):
        if _is_builtin_lambda(node):
            node["registered_name"] = TRUSTED_LAMBDA
    with temp_workdir("edge-sdk-keras-", workdir) as tmp:
        copy = tmp / path.name
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                if info.filename == "config.json":
                    dst.writestr("config.json", json.dumps(config))
                else:
                    with src.open(info) as fin, dst.open(info.filename, "w", force_zip64=True) as fout:
                        shutil.copyfileobj(fin, fout, 1 << 20)
        return keras.saving.load_model(str(copy), custom_objects={TRUSTED_LAMBDA: trusted}, safe_mode=True,
                                       compile=False)  # fmt: skip


@lru_cache(maxsize=1)
def trusted_lambda_class() -> type:
    """A ``keras.layers.Lambda`` whose ``from_config`` turns safe mode off for that layer's own function only;
    what the function's config nests (``arguments``, named functions) stays under the caller's safe mode."""
    import keras

    class TrustedLambda(keras.layers.Lambda):
        @classmethod
        def from_config(cls, config: dict[str, Any], custom_objects: Any = None, safe_mode: Any = None) -> Any:
            return keras.layers.Lambda.from_config(config, custom_objects=custom_objects, safe_mode=False)

    return TrustedLambda
