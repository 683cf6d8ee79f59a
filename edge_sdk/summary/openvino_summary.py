"""OpenVINO IR summary from ``Core.read_model`` (not compiled, not run)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from edge_sdk.backends.openvino_backend import _spec
from edge_sdk.errors import BackendUnavailableError, ModelLoadError, first_line
from edge_sdk.formats import ModelFile
from edge_sdk.summary import ModelSummary, numel


def _shape(output: object) -> list[int | None]:
    ps = output.get_partial_shape()  # type: ignore[attr-defined]
    if not ps.rank.is_static:
        return []
    return [d.get_length() if d.is_static else None for d in ps]


def summarize(model_file: ModelFile) -> ModelSummary:
    try:
        import openvino as ov
    except ImportError as e:
        raise BackendUnavailableError("openvino", "openvino", first_line(e)) from None
    try:
        model = ov.Core().read_model(str(model_file.path))
    except Exception as e:
        raise ModelLoadError(f"OpenVINO could not read {model_file.path.name}: {first_line(e)}") from None
    ops: Counter = Counter()
    weight_dtypes: Counter = Counter()
    params = 0
    macs = 0
    for node in model.get_ordered_ops():
        kind = node.get_type_name()
        if kind in ("Parameter", "Result"):
            continue
        if kind == "Constant":
            n = numel(_shape(node.output(0)))
            try:
                dtype = np.dtype(node.get_output_element_type(0).to_dtype()) if n > 1 else None
            except (IndexError, RuntimeError, TypeError):  # dynamic/undefined type: to_dtype raises map::at
                dtype = None
            if dtype is not None and dtype.kind in "fiu" and dtype != np.int64:
                params += n
                weight_dtypes[dtype.name] += n
            continue
        ops[kind] += 1
        try:
            out = numel(_shape(node.output(0)))
            if kind == "Convolution":
                macs += out * numel(_shape(node.input_value(1))[1:])
            elif kind == "GroupConvolution":
                macs += out * numel(_shape(node.input_value(1))[2:])
            elif kind == "MatMul":
                a = _shape(node.input_value(0))
                k = a[-2] if node.get_attributes().get("transpose_a") else a[-1]
                macs += out * (k or 1)
        except (IndexError, RuntimeError):
            continue
    inputs = [_spec(p, i) for i, p in enumerate(model.inputs)]
    outputs = [_spec(p, i) for i, p in enumerate(model.outputs)]
    return ModelSummary(
        path=str(model_file.path),
        format="openvino",
        size_bytes=model_file.size,
        inputs=inputs,
        outputs=outputs,
        ops=ops,
        params=params,
        weight_dtypes=weight_dtypes,
        macs=macs,
        macs_note="Convolution/GroupConvolution/MatMul, batch as stored (dynamic dims counted as 1)",
    )
