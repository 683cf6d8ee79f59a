"""How many token ids each integer input of a source model may take, read from its embedding tables.

Validation and calibration must feed token ids the model can look up: a random integer outside the
vocabulary is an ``IndexError`` in PyTorch and an undefined gather in a runtime. Every kind of source
stores the table its ids index: ``nn.Embedding`` modules (found by running the example inputs with
hooks), ``aten.embedding`` in an ExportedProgram, ``Gather`` on an initializer in ONNX, ``Embedding``
layers in Keras, ``GATHER`` on a constant in TFLite. Returns input name -> rows of the table it feeds.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger("edge_sdk")

#: ops an id tensor passes through unchanged in meaning between the input and its embedding lookup
_ID_PASS_THROUGH = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity", "Expand", "Clip", "Abs",
                    "CAST", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "view", "unsqueeze", "squeeze", "reshape",
                    "_to_copy", "to", "clone", "expand", "contiguous", "alias", "flatten", "type_as"}  # fmt: skip


def vocab_sizes(source: Any) -> dict[str, int]:
    """Input name -> vocabulary size, for the integer inputs that feed an embedding table (best effort)."""
    finder = {"torch": _torch_module, "pt2": _exported_program, "onnx": _onnx, "keras": _keras, "tflite": _tflite}
    fn = finder.get(source.kind)
    if fn is None:
        return {}
    try:
        return {k: int(v) for k, v in fn(source).items() if int(v) > 0}
    except Exception as e:  # noqa: BLE001 - a lookup failure only loses realism; the caller says what it used
        log.debug("vocabulary lookup failed on a %s source: %s", source.kind, e)
        return {}


def _int_inputs(source: Any) -> list[int]:
    return [i for i, s in enumerate(source.inputs) if np.dtype(s.dtype).kind in "iu"]


def _torch_module(source: Any) -> dict[str, int]:
    """Run the example inputs with a hook on every nn.Embedding; an input matches the table it reached."""
    import torch

    module = source.obj
    tables = [m for m in module.modules() if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))]
    if not tables or not source.example_inputs:
        return {}
    seen: list[tuple[int, Any]] = []
    hooks = [t.register_forward_hook(lambda m, args, out: seen.append((m.num_embeddings, args[0]))) for t in tables]
    try:
        with torch.no_grad():
            module(*[torch.from_numpy(np.ascontiguousarray(x)) for x in source.example_inputs])
    finally:
        for h in hooks:
            h.remove()
    found: dict[str, int] = {}
    for i in _int_inputs(source):
        x = torch.from_numpy(np.ascontiguousarray(source.example_inputs[i]))
        rows = [n for n, ids in seen if ids.shape == x.shape and torch.equal(ids.to(x.dtype), x)]
        if rows:
            found[source.inputs[i].name] = min(rows)
    return found


def _exported_program(source: Any) -> dict[str, int]:
    """``aten.embedding(weight, ids)`` nodes whose ids trace back to a user input of the program."""
    ep = source.obj
    user_inputs = list(ep.graph_signature.user_inputs)
    found: dict[str, int] = {}
    for node in ep.graph.nodes:
        if node.op != "call_function" or "embedding" not in str(node.target):
            continue
        weight, ids = node.args[0], node.args[1]
        rows = getattr(weight.meta.get("val"), "shape", [0])[0]
        while getattr(ids, "op", None) == "call_function" and _fx_name(ids.target) in _ID_PASS_THROUGH:
            ids = ids.args[0]
        if getattr(ids, "op", None) == "placeholder" and ids.name in user_inputs:
            name = source.inputs[user_inputs.index(ids.name)].name
            found[name] = min(found.get(name, rows), int(rows))
    return found


def _fx_name(target: Any) -> str:
    return str(getattr(target, "__name__", target)).split(".")[0]


def _onnx(source: Any) -> dict[str, int]:
    """``Gather(table, ids)`` with ``table`` an initializer or Constant, ``ids`` traced back to a graph input."""
    import onnx

    graph = onnx.load(str(source.path), load_external_data=False).graph
    tables = {t.name: list(t.dims) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].t.dims:
            tables[n.output[0]] = list(n.attribute[0].t.dims)
    producer = {o: n for n in graph.node for o in n.output}
    inputs = {i.name for i in graph.input}
    found: dict[str, int] = {}
    for n in graph.node:
        if n.op_type != "Gather" or len(n.input) < 2 or n.input[0] not in tables:
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
        ids = n.input[1]
        while ids in producer and producer[ids].op_type in _ID_PASS_THROUGH:
            ids = producer[ids].input[0]
        if ids in inputs and axis == 0 and tables[n.input[0]]:
            found[ids] = min(found.get(ids, tables[n.input[0]][0]), tables[n.input[0]][0])
    return found


def _keras(source: Any) -> dict[str, int]:
    """``Embedding`` layers whose input is one of the model's inputs (functional models)."""
    import keras

    model = source.obj
    by_id = {id(t): s.name for t, s in zip(model.inputs, source.inputs)}
    found: dict[str, int] = {}
    for layer in model._flatten_layers(include_self=False):
        if not isinstance(layer, keras.layers.Embedding):
            continue
        for node in getattr(layer, "_inbound_nodes", []):
            for t in node.input_tensors:
                if id(t) in by_id:
                    found[by_id[id(t)]] = min(found.get(by_id[id(t)], layer.input_dim), layer.input_dim)
    return found


def _tflite(source: Any) -> dict[str, int]:
    """``GATHER`` ops on a constant table whose indices come (through casts/reshapes) from a subgraph input."""
    from edge_sdk.backends.litert_backend import import_interpreter_module

    mod, _ = import_interpreter_module()
    interp = mod.Interpreter(model_path=str(source.path))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()
    producer = {o: op for op in ops for o in op["outputs"]}
    inputs = {d["index"]: d["name"] for d in interp.get_input_details()}
    found: dict[str, int] = {}
    for op in ops:
        if op["op_name"] != "GATHER" or len(op["inputs"]) < 2 or op["inputs"][0] in producer:
            continue
        table, ids = op["inputs"][0], op["inputs"][1]
        if table in inputs:
            continue
        while ids in producer and producer[ids]["op_name"] in _ID_PASS_THROUGH:
            ids = producer[ids]["inputs"][0]
        if ids in inputs and len(tensors[table]["shape"]):
            rows = int(tensors[table]["shape"][0])
            found[inputs[ids]] = min(found.get(inputs[ids], rows), rows)
    return found
