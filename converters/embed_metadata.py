"""Write edge_sdk's record of an artifact *inside* the artifact, so a file copied alone still runs correctly.

The record (task, preprocessing, labels, input layout, source hash, conversion summary; see
``edge_sdk.metadata`` for the reader) goes where each format keeps metadata:

- ONNX: ``ModelProto.metadata_props`` entries ``edge_sdk.<key>`` (JSON values), other entries kept;
- TFLite: a ``metadata`` entry named ``edge_sdk`` with a buffer holding JSON (the flatbuffer is rebuilt with
  LiteRT's schema object API, the way TensorFlow's ``flatbuffer_utils`` does; other metadata entries kept);
- OpenVINO IR: ``<rt_info><edge_sdk><key value="JSON"/>`` in the .xml (the .bin is untouched), which
  ``model.get_rt_info(["edge_sdk", key])`` returns.

Every file is rewritten atomically. The preprocessing stored is fitted to the artifact's own input tensor
(layout and static size: a TFLite file from an NCHW source is NHWC).
"""

from __future__ import annotations

import json
import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converters.atomic import write_bytes_atomic
from edge_sdk.errors import ConversionError
from edge_sdk.metadata import KEY, LABEL_SETS, ONNX_PREFIX, SCHEMA, TASK_ALIASES

log = logging.getLogger("edge_sdk")


def artifact_metadata(
    source: Any,
    preprocess: Any,
    target: str,
    precision: str,
    metrics: Sequence[Any] = (),
    failures: Sequence[str] = (),
    *,
    tool: str | None = None,
    quantizer: str | None = None,
    labels: Sequence[str] | None = None,
    task: str | None = None,
) -> dict[str, Any]:
    """The record of one artifact converted from ``source`` (a ``converters.sources.SourceModel``);
    ``labels`` / ``task``: given to the conversion (default: the source's, e.g. a zoo model's)."""
    task = task or source.task
    from importlib import metadata as dist

    try:
        version = dist.version("edge-sdk")
    except dist.PackageNotFoundError:
        version = "unknown"
    record = {
        "schema": SCHEMA,
        "task": TASK_ALIASES.get(task, task) if task else None,
        "preprocessing": preprocess.to_dict() if preprocess is not None else None,
        "labels": label_field(labels if labels is not None else source.labels),
        "source": {"sha256": source.sha256, "kind": source.kind,
                   "model": source.description or (source.path.name if source.path else None)},  # fmt: skip
        "conversion": {
            "target": target, "precision": precision, "tool": tool, "quantizer": quantizer,
            "passed": not failures, "failures": list(failures), "validation": [m.to_dict() for m in metrics],
            "edge_sdk": version,  # no timestamp: the same model and data give byte-identical files (signing, caches)
        },
    }  # fmt: skip
    return finite({k: v for k, v in record.items() if v is not None})


def label_field(labels: Sequence[str] | None) -> str | list[str] | None:
    """A shipped label set by name (``"imagenet-1k"``), other class names as the list itself."""
    if not labels:
        return None
    names = list(labels)
    for name, load in LABEL_SETS.items():
        if len(names) > 100 and names == load():
            return name
    return names


def embed(path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Write ``metadata`` into the model file at ``path`` (an .onnx, .tflite or OpenVINO .xml) atomically;
    return the record as written (preprocessing fitted to the file's input, ``input_layout`` set)."""
    path = Path(path)
    writers = {".onnx": _embed_onnx, ".tflite": _embed_tflite, ".xml": _embed_openvino}
    if path.suffix not in writers:
        raise ConversionError(f"cannot embed metadata in {path.name}: only .onnx, .tflite and OpenVINO .xml")
    return writers[path.suffix](path, metadata)


def fit_to_input(metadata: dict[str, Any], shape: Sequence[int | None] | None) -> dict[str, Any]:
    """``metadata`` with ``input_layout`` from the first input's shape and an image spec's layout and static
    size taken from it (the spec a source was converted with may be NCHW; its TFLite artifact is NHWC)."""
    out = dict(metadata)
    shape = list(shape or [])
    layout = None
    if len(shape) == 4 and shape[1] == 3 and shape[3] != 3:
        layout, hw = "NCHW", shape[2:4]
    elif len(shape) == 4 and shape[3] == 3:
        layout, hw = "NHWC", shape[1:3]
    out.pop("input_layout", None)
    if layout:
        out["input_layout"] = layout
    pre = out.get("preprocessing")
    if layout and isinstance(pre, dict) and pre.get("kind", "image") == "image":
        pre = {**pre, "layout": layout}
        if all(isinstance(d, int) and d > 0 for d in hw):
            pre["size"] = list(hw)
        out["preprocessing"] = pre
    return out


def _json(value: Any) -> str:
    return json.dumps(finite(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def finite(value: Any) -> Any:
    """``value`` with NaN and +-Infinity (an exact match's SNR) as None: strict JSON, readable anywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


# ---- ONNX ---------------------------------------------------------------------------------------------------------
def _embed_onnx(path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # external tensors keep their location, untouched
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    shape = None
    if inputs and inputs[0].type.HasField("tensor_type"):
        dims = inputs[0].type.tensor_type.shape.dim
        shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    record = fit_to_input(metadata, shape)
    kept = [p for p in model.metadata_props if not p.key.startswith(ONNX_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in record.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = ONNX_PREFIX + key, _json(value)
    write_bytes_atomic(path, model.SerializeToString())
    return record


# ---- TFLite -------------------------------------------------------------------------------------------------------
def _tflite_schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError:
            raise ConversionError(
                "embedding metadata in a .tflite file needs LiteRT's flatbuffer schema: pip install ai-edge-litert"
            ) from None
    return schema


def _embed_tflite(path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    import flatbuffers

    schema = _tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    if any((b.offset or 0) > 1 for b in model.buffers or []):
        log.warning("%s keeps its weights past the flatbuffer (> 2 GB): its metadata is left to the manifest",
                    path.name)  # fmt: skip
        return fit_to_input(metadata, None)
    graph = model.subgraphs[0]
    shape = None
    if graph.inputs is not None and len(graph.inputs):
        tensor = graph.tensors[int(graph.inputs[0])]
        sig = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
        shape = [int(d) if d >= 0 else None for d in (sig if sig is not None else [])]
    record = fit_to_input(metadata, shape)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(_json(record).encode(), dtype=np.uint8)
    entries = [m for m in model.metadata or [] if (m.name or b"").decode() != KEY]
    model.buffers.append(buffer)  # an old edge_sdk buffer stays (empty of meaning, a few bytes); indexes keep
    entry = schema.MetadataT()
    entry.name, entry.buffer = KEY, len(model.buffers) - 1
    model.metadata = [*entries, entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    write_bytes_atomic(path, bytes(builder.Output()))
    return record


# ---- OpenVINO IR --------------------------------------------------------------------------------------------------
def _embed_openvino(path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    root = ET.fromstring(path.read_bytes())
    shape = None
    for layer in root.iter("layer"):
        if layer.get("type") == "Parameter":
            data = layer.find("data")
            text = data.get("shape", "") if data is not None else ""
            shape = [int(d) if d.strip().isdigit() else None for d in text.split(",")] if text else None
            break
    record = fit_to_input(metadata, shape)
    rt = root.find("rt_info")
    if rt is None:
        rt = ET.SubElement(root, "rt_info")
    for old in rt.findall(KEY):
        rt.remove(old)
    node = ET.SubElement(rt, KEY)
    for key, value in record.items():
        ET.SubElement(node, key, value=_json(value))
    ET.indent(rt, space="\t", level=1)
    write_bytes_atomic(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))
    return record
