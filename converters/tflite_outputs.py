"""A multi-output TFLite artifact's outputs put in the source model's order.

TFLite lists a subgraph's outputs in an order of its own (``PartitionedCall:1`` before ``PartitionedCall:0``), so
"the first output" of a two-output model was the logits in the ONNX and OpenVINO artifacts (the source's order)
and the probabilities in the TFLite one, silently: validation pairs outputs by their values, a user by position.
Each source output is paired with the artifact output that holds it (as validation does), and the file's output
list is permuted into the source's order (the signature, which maps names to tensors, is unchanged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converters.layout import pair_outputs


def put_outputs_in_source_order(path: Path, source: Any, held: Any) -> list[int] | None:
    """Permute ``path``'s outputs into ``source``'s order (``held``: validation inputs with their reference outputs);
    the permutation applied (artifact index per source output), or None when the order was already the source's
    or the outputs cannot be paired one to one."""
    from converters.validate import _run_artifact

    if len(held.reference) < 2:
        return None
    outs, _ = _run_artifact(path, held.samples, [i.name for i in source.inputs])
    candidate = [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]
    try:
        order = pair_outputs(held.reference, candidate)
    except ValueError:
        return None
    if len(order) != len(candidate) or sorted(order) != list(range(len(candidate))) or order == sorted(order):
        return None
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    graph.outputs = np.asarray([graph.outputs[j] for j in order], dtype=np.asarray(graph.outputs).dtype)
    flatbuffer_utils.write_model(model, str(path))
    return order
