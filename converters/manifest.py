"""``OUT/manifest.json``: what was converted, how, with which tools, and how close each artifact is."""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from converters.atomic import write_bytes_atomic

TOOL_PACKAGES = (
    "edge-sdk", "numpy", "torch", "tensorflow-cpu", "keras", "ai-edge-litert", "ai-edge-quantizer", "litert-torch",
    "onnx", "onnxruntime", "onnxscript", "tf2onnx", "openvino", "nncf",
)  # fmt: skip


def tool_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in TOOL_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_manifest(output_dir: Path, content: dict[str, Any]) -> Path:
    content = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **content}
    content["tools"] = tool_versions()
    path = output_dir / "manifest.json"
    write_bytes_atomic(path, (json.dumps(content, indent=2, default=_jsonable) + "\n").encode())
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and value != value:
        return None
    return str(value)
