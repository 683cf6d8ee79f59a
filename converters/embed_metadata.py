"""Write edge_sdk's record of an artifact *inside* the artifact, so a file copied alone still runs correctly.

The record (task, preprocessing, labels, input layout, source hash, conversion summary; see
``edge_sdk.metadata`` for the reader) goes where each format keeps metadata:

- ONNX: ``ModelProto.metadata_props`` entries ``edge_sdk.<key>`` (JSON values), other entries kept;
- TFLite: a ``metadata`` entry named ``edge_sdk`` with a buffer holding JSON (the flatbuffer is rebuilt with
  LiteRT's schema object API, the way TensorFlow's ``flatbuffer_utils`` does; other metadata entries kept);
- OpenVINO IR: ``<rt_info><edge_sdk><key value="JSON"/>`` in the .xml (the .bin is untouched), which
  ``model.get_rt_info(["edge_sdk", key])`` returns.

Every file is rewritten atomically. The preprocessing stored is fitted to the artifact's own input tensor
(layout and static size: a TFLite file from an NCHW source is NHWC; dtype and quantization: a full-integer
TFLite file with int8 input gets ``dtype: int8`` and its input's ``quant`` scale / zero point, so the device
feeds it quantized pixels, not floats).
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


def embed(path: Path, metadata: dict[str, Any], suffix: str | None = None) -> dict[str, Any]:
    """Write ``metadata`` into the model file at ``path`` (an .onnx, .tflite or OpenVINO .xml) atomically;
    return the record as written (preprocessing fitted to the file's input, ``input_layout`` set).
    ``suffix``: the format, for a temp file whose name does not say it (``".onnx"``)."""
    path = Path(path)
    writers = {".onnx": _embed_onnx, ".tflite": _embed_tflite, ".xml": _embed_openvino}
    kind = suffix or path.suffix
    if kind not in writers:
        raise ConversionError(f"cannot embed metadata in {path.name}: only .onnx, .tflite and OpenVINO .xml")
    return writers[kind](path, metadata)


def fit_to_input(
    metadata: dict[str, Any],
    shape: Sequence[int | None] | None,
    dtype: str | None = None,
    quant: tuple[float, int] | None = None,
) -> dict[str, Any]:
    """``metadata`` with ``input_layout`` from the first input's shape and the stored preprocessing fitted to
    that input: an image spec's layout and static size taken from the shape (the spec a source was converted
    with may be NCHW; its TFLite artifact is NHWC), and the input's ``dtype`` (numpy name; None: unknown, the
    spec's kept) with its ``quant`` (scale, zero point) for an int8/uint8 input, so the spec describes what the
    artifact really takes (a full-integer TFLite file with int8 input is fed quantized pixels)."""
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
    if isinstance(pre, dict) and pre.get("kind", "image") == "image":
        pre = dict(pre)
        if layout:
            pre["layout"] = layout
            if all(isinstance(d, int) and d > 0 for d in hw):
                pre["size"] = list(hw)
        if dtype in IMAGE_DTYPES:
            pre["dtype"] = dtype
            pre["quant"] = None
            if dtype in ("int8", "uint8"):
                if quant is not None:
                    pre["quant"] = {"scale": float(quant[0]), "zero_point": int(quant[1])}
                elif pre.get("mean") not in ([0.0], [0], None) or pre.get("std") not in ([1.0], [1], None):
                    log.warning("the %s input's quantization (scale, zero point) is unknown: the device will round "
                                "the normalised pixels ((x - mean) / std) to %s as they are", dtype, dtype)  # fmt: skip
        out["preprocessing"] = pre
    elif isinstance(pre, dict) and pre.get("kind") == "audio" and dtype in ("float32", "float16"):
        out["preprocessing"] = {**pre, "dtype": dtype}
    return out


#: input dtypes an image spec can produce (``edge_sdk.preprocess.DTYPES``)
IMAGE_DTYPES = ("float32", "float16", "uint8", "int8")
#: preprocessing fields :func:`fit_to_input` takes from the file's input tensor
FITTED_FIELDS = ("layout", "size", "dtype", "quant")


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
    shape = dtype = quant = None
    if inputs and inputs[0].type.HasField("tensor_type"):
        tensor_type = inputs[0].type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        dtype = _onnx_dtype(tensor_type.elem_type)
        if dtype in ("int8", "uint8"):
            quant = _onnx_input_quant(model, inputs[0].name)
    record = fit_to_input(metadata, shape, dtype, quant)
    kept = [p for p in model.metadata_props if not p.key.startswith(ONNX_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in record.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = ONNX_PREFIX + key, _json(value)
    write_bytes_atomic(path, model.SerializeToString())
    return record


def _onnx_dtype(elem_type: int) -> str | None:
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        return None


def _onnx_input_quant(model: Any, name: str) -> tuple[float, int] | None:
    """(scale, zero point) of a quantized graph input: those of the ``DequantizeLinear`` reading it (scalar
    initializers or Constant nodes); None when no such node, per-axis parameters, or several that differ."""
    from onnx import numpy_helper

    consts = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = node.attribute[0].t
    found = set()
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or not node.input or node.input[0] != name:
            continue
        zero_name = node.input[2] if len(node.input) > 2 else ""
        if len(node.input) < 2 or node.input[1] not in consts or (zero_name and zero_name not in consts):
            return None  # computed at run time: unknown here
        try:  # an initializer kept in external data is not read here: unknown
            scale = numpy_helper.to_array(consts[node.input[1]])
            zero = numpy_helper.to_array(consts[zero_name]) if zero_name else np.zeros(())
        except (OSError, ValueError, TypeError):
            return None
        if scale.size != 1 or zero.size != 1:
            return None
        found.add((float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0])))
    return found.pop() if len(found) == 1 else None


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
    shape = dtype = quant = None
    if graph.inputs is not None and len(graph.inputs):
        tensor = graph.tensors[int(graph.inputs[0])]
        sig = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
        shape = [int(d) if d >= 0 else None for d in (sig if sig is not None else [])]
        names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
        dtype = names.get(tensor.type)
        q = tensor.quantization
        if dtype in ("int8", "uint8") and q is not None and q.scale is not None and len(q.scale) == 1:
            zero = q.zeroPoint if q.zeroPoint is not None and len(q.zeroPoint) else [0]
            quant = (float(q.scale[0]), int(zero[0]))
    record = fit_to_input(metadata, shape, dtype, quant)
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


#: IR ``element_type`` -> numpy dtype name
OV_DTYPES = {"f32": "float32", "f16": "float16", "u8": "uint8", "i8": "int8", "i32": "int32", "i64": "int64"}


# ---- OpenVINO IR --------------------------------------------------------------------------------------------------
def _embed_openvino(path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    root = ET.fromstring(path.read_bytes())
    shape = dtype = None
    for layer in root.iter("layer"):
        if layer.get("type") == "Parameter":
            data = layer.find("data")
            text = data.get("shape", "") if data is not None else ""
            shape = [int(d) if d.strip().isdigit() else None for d in text.split(",")] if text else None
            dtype = OV_DTYPES.get(data.get("element_type", "") if data is not None else "")
            break
    record = fit_to_input(metadata, shape, dtype)  # an IR input's quantization is in the graph, not the tensor
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
