"""What a model says about itself: task, preprocessing, labels, input layout, source and conversion summary.

``edge-sdk convert`` writes this record *inside* every artifact, so a file copied alone still carries it:

- ONNX: ``metadata_props`` entries ``edge_sdk.<key>``, each value JSON;
- TFLite: a ``metadata`` entry named ``edge_sdk`` whose buffer holds one JSON object;
- OpenVINO IR: ``<rt_info><edge_sdk><key value="JSON"/>...`` (what ``model.get_rt_info(["edge_sdk", key])`` reads).

The device reads it here without any runtime: the ONNX file's top-level protobuf fields (graph skipped by its
length), the TFLite flatbuffer's metadata table, the IR's ``<rt_info>``. The embedded record takes precedence
over the folder's ``manifest.json``, which stays the conversion record and is applied only to a file it lists
with the content on disk (:func:`read_manifest`).
"""

from __future__ import annotations

import json
import logging
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge_sdk.cache import FULL_HASH_BYTES, sha256_file
from edge_sdk.errors import LabelsError, ModelMetadataError, PreprocessError

log = logging.getLogger("edge_sdk.pipeline")

#: the name under which edge_sdk stores its record in every format
KEY = "edge_sdk"
#: ONNX metadata_props keys are ``edge_sdk.<field>``
ONNX_PREFIX = KEY + "."
SCHEMA = 1
#: the record's fields, in display order
FIELDS = ("schema", "task", "preprocessing", "labels", "input_layout", "source", "conversion")
#: an embedded record larger than this is refused (a label list of 100k names is ~2 MB)
MAX_METADATA_BYTES = 16 * 1024**2
#: task names a zoo entry or an older manifest may use -> the pipeline's task
TASK_ALIASES = {"classification": "classify", "detect-faces": "detect", "detection": "detect"}
#: the CLI flags that set what a model does not carry (named in every warning about a guess)
OVERRIDE_FLAGS = "--size HxW, --mean, --std, --resize stretch|letterbox, --channels rgb|bgr, --labels FILE"


def _imagenet() -> list[str]:
    from edge_sdk.labels import imagenet_labels

    return imagenet_labels()


#: label sets stored by name instead of as a list
LABEL_SETS: dict[str, Callable[[], list[str]]] = {"imagenet-1k": _imagenet}


@dataclass(frozen=True)
class ModelMetadata:
    """edge_sdk's record of a model: what to feed it, what it does, where it came from.

    ``origin`` is ``"embedded"`` (inside the model file) or ``"manifest"`` (the folder's manifest.json, which
    lists this very file); ``where`` names that file. ``labels`` is a label-set name (``"imagenet-1k"``) or
    the class names themselves.
    """

    origin: str
    where: str
    task: str | None = None
    preprocessing: dict[str, Any] | None = None
    labels: str | list[str] | None = None
    input_layout: str | None = None
    source: dict[str, Any] | None = None
    conversion: dict[str, Any] | None = None
    schema: int = SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, origin: str, where: str) -> ModelMetadata:
        """Check the types of a stored record; a wrong one is a :class:`ModelMetadataError` naming it."""
        if not isinstance(data, dict):
            raise ModelMetadataError(f"{where}: edge_sdk metadata must be a JSON object, got {type(data).__name__}")
        expect: dict[str, tuple[type, ...]] = {
            "schema": (int,), "task": (str,), "preprocessing": (dict,), "labels": (str, list),
            "input_layout": (str,), "source": (dict,), "conversion": (dict,),
        }  # fmt: skip
        for key, types in expect.items():
            value = data.get(key)
            if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
                raise ModelMetadataError(
                    f"{where}: edge_sdk metadata field '{key}' is a {type(value).__name__}, expected "
                    f"{' or '.join(t.__name__ for t in types)}; convert the model again or override it on the CLI "
                    f"({OVERRIDE_FLAGS}, --task)"
                )
        labels = data.get("labels")
        if isinstance(labels, list) and not all(isinstance(n, str) for n in labels):
            raise ModelMetadataError(f"{where}: edge_sdk metadata 'labels' must be a list of strings")
        task = data.get("task")
        return cls(
            origin=origin,
            where=where,
            task=TASK_ALIASES.get(task, task) if task else None,
            preprocessing=data.get("preprocessing"),
            labels=labels,
            input_layout=data.get("input_layout"),
            source=data.get("source"),
            conversion=data.get("conversion"),
            schema=data.get("schema") or SCHEMA,
            extra={k: v for k, v in data.items() if k not in FIELDS},
        )

    def preprocess_spec(self) -> Any:
        """The stored :class:`~edge_sdk.preprocess.PreprocessSpec` (or AudioSpec), or None when none is stored."""
        if self.preprocessing is None:
            return None
        from edge_sdk.preprocess import spec_from_dict

        try:
            return spec_from_dict(self.preprocessing)
        except PreprocessError as e:
            raise PreprocessError(f"{self.where}: stored preprocessing is not usable: {e}") from None

    def label_names(self) -> list[str] | None:
        """The class names: the named set's, or the stored list; None when no labels are stored."""
        if self.labels is None:
            return None
        if isinstance(self.labels, list):
            return list(self.labels)
        if self.labels not in LABEL_SETS:
            raise LabelsError(
                f"{self.where} names the label set '{self.labels}', which this edge_sdk does not ship "
                f"(known: {', '.join(LABEL_SETS)}); pass --labels FILE (labels= in Python)"
            )
        return LABEL_SETS[self.labels]()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: where it came from, then the record's fields."""
        return {
            "origin": self.origin, "where": self.where, "schema": self.schema, "task": self.task,
            "preprocessing": self.preprocessing, "labels": self.labels, "input_layout": self.input_layout,
            "source": self.source, "conversion": self.conversion, **self.extra,
        }  # fmt: skip


# ---- reading the record inside a model file ---------------------------------------------------------------------
def sniff_format(path: Path) -> str:
    """``onnx``, ``tflite`` or ``openvino`` from the file's first bytes (IR is XML; TFLite has ``TFL3``)."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"<"):
        return "openvino"
    return "onnx"


def read_embedded(path: str | os.PathLike[str], fmt: str | None = None) -> ModelMetadata | None:
    """The edge_sdk record inside a model file, or None when it carries none.

    Reads only what it needs (no runtime, no tensor payloads); a malformed record is a
    :class:`~edge_sdk.errors.ModelMetadataError` naming the file and field.
    """
    p = Path(path)
    readers = {"onnx": _onnx_record, "tflite": _tflite_record, "openvino": _openvino_record}
    try:
        fmt = fmt or sniff_format(p)
        if fmt not in readers:
            return None
        data = readers[fmt](p)
    except (OSError, ValueError) as e:  # missing, unreadable, empty (mmap of 0 bytes)
        raise ModelMetadataError(f"cannot read the metadata of {p}: {e}") from None
    if data is None:
        return None
    return ModelMetadata.from_dict(data, "embedded", str(p))


def _loads(text: bytes | str, where: str) -> Any:
    if len(text) > MAX_METADATA_BYTES:
        raise ModelMetadataError(f"{where} is {len(text)} bytes, above the {MAX_METADATA_BYTES}-byte limit")
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelMetadataError(
            f"{where} is not valid JSON ({e}); convert the model again, or override on the CLI ({OVERRIDE_FLAGS})"
        ) from None


def _onnx_record(path: Path) -> dict[str, Any] | None:
    """``ModelProto.metadata_props`` (field 14: key 1, value 2) entries ``edge_sdk.*``; the graph is skipped."""
    from edge_sdk.formats.onnx_wire import WireError, iter_fields

    entries: dict[str, bytes] = {}
    problem = ""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        try:  # the mmap is indexed and sliced (bytes copies), never viewed: it always closes
            for fnum, wtype, val in iter_fields(mm):  # type: ignore[arg-type]
                if fnum != 14 or wtype != 2:
                    continue
                key = value = b""
                for f2, w2, v2 in iter_fields(mm, *val):  # type: ignore[arg-type,misc]
                    if w2 == 2 and f2 in (1, 2):
                        a, b = v2  # type: ignore[misc]
                        if f2 == 1:
                            key = mm[a:b]
                        else:
                            value = mm[a:b]
                if key.startswith(ONNX_PREFIX.encode()):
                    entries[key[len(ONNX_PREFIX) :].decode("utf-8", "replace")] = value
        except WireError as e:
            problem = str(e)
    if problem:
        raise ModelMetadataError(f"{path}: cannot read its metadata_props: {problem}")
    if not entries:
        return None
    return {k: _loads(v, f"{path.name}: metadata_props '{ONNX_PREFIX}{k}'") for k, v in entries.items()}


def _tflite_record(path: Path) -> dict[str, Any] | None:
    """The buffer of the flatbuffer's ``metadata`` entry named ``edge_sdk`` (Model field 6: name 0, buffer 1)."""
    import struct

    from edge_sdk.formats.tflite_format import _MODEL_BUFFERS, _Corrupt, _Flat

    raw: bytes | None = None
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        fb = _Flat(mm)
        try:
            root = fb.u32(0, "root table offset")
            for entry in fb.tables(root, 6, "metadata vector"):
                if fb.string(entry, 0, "metadata name") != KEY:
                    continue
                index = fb.scalar(entry, 1, "I", 0)
                buffers = fb.tables(root, _MODEL_BUFFERS, "buffers vector")
                if index >= len(buffers):
                    raise _Corrupt(f"metadata '{KEY}' names buffer {index}, but the model has {len(buffers)}")
                start, size = fb.vector(buffers[index], 0, 1, f"buffer {index} data")
                if not size:  # a buffer stored past the flatbuffer (models > 2 GB): offset + size
                    start, size = fb.scalar(buffers[index], 1, "Q", 0), fb.scalar(buffers[index], 2, "Q", 0)
                    if start + size > fb.n:
                        raise _Corrupt(f"buffer {index} runs past the end of the file")
                if size > MAX_METADATA_BYTES:
                    raise _Corrupt(f"metadata '{KEY}' is {size} bytes, above {MAX_METADATA_BYTES}")
                raw = mm[start : start + size]
        except (_Corrupt, struct.error) as e:
            raise ModelMetadataError(f"{path}: cannot read its TFLite metadata: {e}") from None
    if raw is None:
        return None
    data = _loads(raw, f"{path.name}: TFLite metadata '{KEY}'")
    if not isinstance(data, dict):
        raise ModelMetadataError(f"{path.name}: TFLite metadata '{KEY}' must hold a JSON object")
    return data


def _openvino_record(path: Path) -> dict[str, Any] | None:
    """``<net><rt_info><edge_sdk><KEY value="JSON"/>...`` of an IR .xml (DOCTYPE/ENTITY refused, as on load)."""
    import xml.etree.ElementTree as ET

    data = path.read_bytes()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ModelMetadataError(f"{path} declares a DOCTYPE/ENTITY; OpenVINO IR never does, refusing to parse it")
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, ValueError, LookupError) as e:
        raise ModelMetadataError(f"{path} is not valid OpenVINO IR XML: {e}") from None
    node = root.find(f"rt_info/{KEY}")
    if node is None:
        return None
    return {child.tag: _loads(child.get("value", ""), f"{path.name}: rt_info {KEY}/{child.tag}") for child in node}


# ---- the folder manifest ----------------------------------------------------------------------------------------
def read_manifest(model_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest next to a converted model, or {} when there is none, it is unreadable, or it does not
    describe this very file: a manifest is applied only if it records the file's sha256 (and its companion's,
    the .bin of an .xml) and the file on disk has it; a file replaced since, or copied over, is not its."""
    model_path = Path(model_path)
    path = model_path.parent / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    if not _describes(data, model_path):
        log.warning("%s does not record %s as it is now (replaced or copied over since): not applied", path,
                    model_path.name)  # fmt: skip
        return {}
    return data


def _describes(manifest: dict[str, Any], model_path: Path) -> bool:
    """Whether ``manifest`` records ``model_path`` (and its companions) with the content on disk."""
    name = model_path.name
    group = {name, model_path.with_suffix(".bin").name} if model_path.suffix == ".xml" else {name}
    if group & set(manifest.get("pending") or []):
        return False
    files = manifest.get("files")
    if isinstance(files, dict) and name in files:  # size + sha256 of every file, companions included
        records = {n: files[n] for n in group if n in files}
    else:  # a manifest from before file records: the artifact's own sha256
        records = {a["path"]: {"sha256": a.get("sha256")} for a in manifest.get("artifacts") or []
                   if isinstance(a, dict) and a.get("path") == name}  # fmt: skip
    if name not in records:
        return False
    for n, rec in records.items():
        p = model_path.parent / n
        if not isinstance(rec, dict) or not p.is_file():
            return False
        if "size" in rec and rec["size"] != p.stat().st_size:
            return False
        if n != name and p.stat().st_size > FULL_HASH_BYTES:
            continue  # a big .bin: its size is checked, its .xml (the graph) fully; not GBs read per start
        if rec.get("sha256") != sha256_file(p):
            return False
    return True


def manifest_metadata(model_path: str | os.PathLike[str]) -> ModelMetadata | None:
    """The manifest's record of this file: its own entry under ``files`` (keyed per file), else (a manifest
    written before per-file records) the run's top-level fields; None when the manifest does not list it."""
    p = Path(model_path)
    data = read_manifest(p)
    if not data:
        return None
    where = str(p.parent / "manifest.json")
    own = (data.get("files") or {}).get(p.name) if isinstance(data.get("files"), dict) else None
    if isinstance(own, dict) and isinstance(own.get("metadata"), dict):
        return ModelMetadata.from_dict(own["metadata"], "manifest", where)
    legacy = {k: data.get(k) for k in ("task", "preprocessing", "labels", "source")}
    if not any(v is not None for v in legacy.values()):
        return None
    return ModelMetadata.from_dict(legacy, "manifest", where)


def model_metadata(path: str | os.PathLike[str], fmt: str | None = None) -> ModelMetadata | None:
    """The record inside the file, else the manifest's record of it, else None."""
    return read_embedded(path, fmt) or manifest_metadata(path)


def metadata_of(model: Any) -> ModelMetadata | None:
    """A loaded model's record (:attr:`edge_sdk.Model.metadata`), or the one of any object with a ``path``."""
    if hasattr(model, "metadata"):
        return model.metadata
    return model_metadata(model.path)
