"""Runtime type names -> numpy dtypes (one table per runtime spelling)."""

from __future__ import annotations

import numpy as np

#: ONNX Runtime's "tensor(float)" spelling
ORT_TYPES: dict[str, np.dtype] = {
    f"tensor({k})": np.dtype(v)
    for k, v in {
        "float": "float32",
        "float16": "float16",
        "double": "float64",
        "int8": "int8",
        "uint8": "uint8",
        "int16": "int16",
        "uint16": "uint16",
        "int32": "int32",
        "uint32": "uint32",
        "int64": "int64",
        "uint64": "uint64",
        "bool": "bool",
    }.items()
}

#: ONNX TensorProto.DataType numbers
ONNX_ELEM_TYPES: dict[int, np.dtype] = {
    1: np.dtype("float32"),
    2: np.dtype("uint8"),
    3: np.dtype("int8"),
    4: np.dtype("uint16"),
    5: np.dtype("int16"),
    6: np.dtype("int32"),
    7: np.dtype("int64"),
    9: np.dtype("bool"),
    10: np.dtype("float16"),
    11: np.dtype("float64"),
    12: np.dtype("uint32"),
    13: np.dtype("uint64"),
}

#: bytes per element of ONNX TensorProto.DataType (for parameter sizes)
ONNX_ELEM_BYTES: dict[int, float] = {
    1: 4,
    2: 1,
    3: 1,
    4: 2,
    5: 2,
    6: 4,
    7: 8,
    9: 1,
    10: 2,
    11: 8,
    12: 4,
    13: 8,
    16: 2,
    21: 0.5,
    22: 0.5,
}
