"""Give a TFLite file without a SignatureDef one, built from its main subgraph's input and output tensors.

Files from older converters and MediaPipe-era models often carry no SignatureDef, and ai-edge-quantizer
(like LiteRT's signature runners) addresses a model only through one: re-quantizing such a file failed
with 'Invalid signature_key provided: "serving_default"'. The added signature names each input and output
by its tensor name; the graph itself is untouched, so the outputs are bit-identical.
"""

from __future__ import annotations

import re
from pathlib import Path

from edge_sdk.errors import ConversionError, first_line

SIGNATURE_KEY = "serving_default"


def has_signature(path: Path) -> bool:
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    return model.SignatureDefsLength() > 0


def with_signature(src: Path, dst: Path) -> bool:
    """Write ``src`` to ``dst`` with a ``serving_default`` SignatureDef added if it has none; True if added."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    buf = Path(src).read_bytes()
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    except Exception as e:  # noqa: BLE001 - a corrupt file is the user's input: say so
        raise ConversionError(f"{Path(src).name} is not a readable TFLite flatbuffer: {first_line(e)}") from None
    if model.signatureDefs:
        dst.write_bytes(buf)
        return False
    graph = model.subgraphs[0]
    sig = schema.SignatureDefT()
    sig.signatureKey = SIGNATURE_KEY
    sig.subgraphIndex = 0
    sig.inputs = [_tensor_map(graph, i, f"input_{k}") for k, i in enumerate(graph.inputs)]
    sig.outputs = [_tensor_map(graph, i, f"output_{k}") for k, i in enumerate(graph.outputs)]
    model.signatureDefs = [sig]
    builder = flatbuffers.Builder(len(buf) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(builder.Output())
    return True


def _tensor_map(graph: object, index: int, fallback: str) -> object:
    from tensorflow.lite.python import schema_py_generated as schema

    t = schema.TensorMapT()
    raw = graph.tensors[index].name  # type: ignore[attr-defined]
    name = raw.decode() if isinstance(raw, bytes) else (raw or "")
    t.name = re.sub(r"[^A-Za-z0-9_]", "_", name.split(";")[0]).strip("_") or fallback
    t.tensorIndex = int(index)
    return t
