"""TFLite summary from the interpreter's own op and tensor tables (no inference is run)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from edge_sdk._quiet import native_stderr
from edge_sdk.backends.litert_backend import _spec, import_interpreter_module
from edge_sdk.errors import ModelLoadError, first_line
from edge_sdk.formats import ModelFile
from edge_sdk.summary import ModelSummary, numel


def summarize(model_file: ModelFile) -> ModelSummary:
    mod, name = import_interpreter_module()
    try:
        with native_stderr():
            interp = mod.Interpreter(model_path=str(model_file.path))
    except Exception as e:
        raise ModelLoadError(f"LiteRT could not read {model_file.path.name}: {first_line(e)}") from None
    tensors = {d["index"]: d for d in interp.get_tensor_details()}
    op_list = interp._get_ops_details()  # public API has no op table; this one is stable since TF 2.5
    ops = Counter(op["op_name"] for op in op_list)
    produced = {i for op in op_list for i in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    weight_dtypes: Counter = Counter()
    params = 0
    for idx, d in tensors.items():
        if idx in produced or idx in graph_inputs:
            continue
        n = numel(d["shape"])
        if n > 1 and np.dtype(d["dtype"]).kind in "fiu":
            params += n
            weight_dtypes[np.dtype(d["dtype"]).name] += n
    macs = 0
    for op in op_list:
        kind, ins, outs = op["op_name"], op["inputs"], op["outputs"]
        try:
            out = numel(tensors[outs[0]]["shape"])
            if kind == "CONV_2D":
                macs += out * numel(tensors[ins[1]]["shape"][1:])
            elif kind == "DEPTHWISE_CONV_2D":
                w = tensors[ins[1]]["shape"]
                macs += out * int(w[1]) * int(w[2])
            elif kind == "FULLY_CONNECTED":
                macs += out * int(tensors[ins[1]]["shape"][-1])
            elif kind == "BATCH_MATMUL":
                macs += out * int(tensors[ins[0]]["shape"][-1])
            elif kind == "TRANSPOSE_CONV":
                w = tensors[ins[1]]["shape"]
                macs += numel(tensors[ins[2]]["shape"]) * int(w[0]) * int(w[1]) * int(w[2])
        except (KeyError, IndexError):
            continue
    return ModelSummary(
        path=str(model_file.path),
        format="tflite",
        size_bytes=model_file.size,
        inputs=[_spec(d) for d in interp.get_input_details()],
        outputs=[_spec(d) for d in interp.get_output_details()],
        ops=ops,
        params=params,
        weight_dtypes=weight_dtypes,
        macs=macs,
        macs_note="CONV_2D/DEPTHWISE/FULLY_CONNECTED/BATCH_MATMUL/TRANSPOSE_CONV at the stored shapes",
        extra={"runtime": name, "signatures": list(interp.get_signature_list())},
    )
