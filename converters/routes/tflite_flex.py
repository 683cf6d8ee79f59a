"""TFLite files that keep TensorFlow ops ("Select TF ops", custom ops named ``Flex<Op>``): the warning they carry,
and running them for validation.

``convert(..., tf_select_ops=True)`` / ``edge-sdk convert --tf-select-ops`` lets TFLiteConverter keep an op TFLite
has no builtin for as a TensorFlow op. The device then needs the Flex delegate: TensorFlow's
``tf.lite.Interpreter`` from a build that links it, or a LiteRT build with Flex (Android:
``tensorflow-lite-select-tf-ops``). The ``ai-edge-litert`` wheel has none, and neither has tensorflow-cpu 2.21's
``tf.lite.Interpreter``, so validation runs the file in a Python whose TensorFlow has it: ``$EDGE_SDK_FLEX_PYTHON``,
this one when its TensorFlow links the delegate, else onnx2tf's environment (TensorFlow 2.19 does).
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_sdk.backends.litert_backend import flex_ops
from edge_sdk.errors import ConversionError

log = logging.getLogger("edge_sdk.convert")

__all__ = ["flex_ops", "flex_warning", "run_with_flex"]


def flex_warning(ops: Sequence[str]) -> str:
    """The warning a TFLite artifact with Flex ops carries (log, manifest route, embedded record)."""
    return (f"Flex ops {', '.join(ops)}: the device needs the Flex delegate (TensorFlow's tf.lite.Interpreter, or a "
            "LiteRT build with Flex; the ai-edge-litert wheel cannot load this file)")  # fmt: skip


def note_flex_ops(path: Path, ctx: Any, tool: str) -> list[str]:
    """Record the Flex ops in ``path`` (a TFLite artifact made with SELECT_TF_OPS) in the route's tool, which the
    manifest and the artifact's embedded record carry. Returns the ops ([] when it needs none)."""
    ops = flex_ops(path)
    if ops:  # the warning is logged when the artifact is validated (run_with_flex), outside the tools' quiet output
        ctx.used_tool["tflite"] = f"{tool} with SELECT_TF_OPS; {flex_warning(ops)}"
    return ops


#: runs in the Flex-capable Python: argv = model, feeds .npz (n, then "<sample>_<input>"), outputs .npz
_WORKER = r"""
import sys
import numpy as np
import tensorflow as tf
model, feeds_path, out_path = sys.argv[1:4]
data = np.load(feeds_path)
interp = tf.lite.Interpreter(model_path=model)
ins = interp.get_input_details()
shapes = [tuple(int(v) for v in d["shape"]) for d in ins]
interp.allocate_tensors()
outs = {}
for s in range(int(data["n"])):
    for i, d in enumerate(ins):
        x = data[f"{s}_{i}"]
        if x.shape != shapes[i]:
            interp.resize_tensor_input(d["index"], x.shape, strict=True)
            interp.allocate_tensors()
            shapes[i] = x.shape
        interp.set_tensor(d["index"], x)
    interp.invoke()
    for j, d in enumerate(interp.get_output_details()):
        y = interp.get_tensor(d["index"])
        scale, zero = d["quantization"]
        outs[f"{s}_{j}"] = (y.astype(np.float32) - zero) * scale if scale and y.dtype.kind in "iu" else y
np.savez(out_path, **outs)
"""


def run_with_flex(artifact: Path, samples: Sequence[Sequence[np.ndarray]],
                  source_names: Sequence[str]) -> tuple[list[list[np.ndarray]], list[str]]:  # fmt: skip
    """Each sample's outputs (dequantized) of a TFLite file with Flex ops, and the output names, run by TensorFlow's
    interpreter with the Flex delegate in another process."""
    from converters.cleanup import run_tool
    from converters.layout import adapt_feeds

    log.warning("%s: %s", artifact.name, flex_warning(flex_ops(artifact)))
    inputs, outputs = _specs(artifact)
    python = flex_python(artifact)
    feeds = {"n": np.array(len(samples))}
    for s, sample in enumerate(samples):
        for i, x in enumerate(adapt_feeds(sample, inputs, source_names)):
            feeds[f"{s}_{i}"] = x
    with tempfile.TemporaryDirectory(prefix="edge-sdk-flex-") as tmp:
        work = Path(tmp)
        np.savez(work / "feeds.npz", **feeds)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = run_tool([python, "-c", _WORKER, str(artifact), str(work / "feeds.npz"), str(work / "outs.npz")],
                        env=env)  # fmt: skip
        if proc.returncode != 0 or not (work / "outs.npz").exists():
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            raise ConversionError(
                f"validating {artifact.name} (Flex ops {', '.join(flex_ops(artifact))}) with {python} failed: "
                f"{lines[-1].strip() if lines else 'no message'}; set EDGE_SDK_FLEX_PYTHON to a Python whose "
                "TensorFlow links the Flex delegate"
            )
        with np.load(work / "outs.npz") as got:
            outs = [[got[f"{s}_{j}"] for j in range(len(outputs))] for s in range(len(samples))]
    return outs, [o.name for o in outputs]


def _specs(artifact: Path) -> tuple[list[Any], list[Any]]:
    """Input and output TensorSpecs of ``artifact``: the interpreter reads them without preparing the Flex nodes."""
    from edge_sdk.backends.litert_backend import _spec, import_interpreter_module

    mod, _ = import_interpreter_module()
    interp = mod.Interpreter(model_path=str(artifact))
    return [_spec(d) for d in interp.get_input_details()], [_spec(d) for d in interp.get_output_details()]


def flex_python(artifact: Path) -> str:
    """A Python whose TensorFlow runs Flex ops: $EDGE_SDK_FLEX_PYTHON, this one, or onnx2tf's environment's."""
    chosen = os.environ.get("EDGE_SDK_FLEX_PYTHON")
    if chosen:
        return chosen
    if tensorflow_has_flex():
        return sys.executable
    from converters.routes.onnx_routes import onnx2tf_executable

    try:
        beside = onnx2tf_executable().parent / "python"
    except ConversionError:
        beside = None
    if beside is not None and beside.exists():
        return str(beside)
    raise ConversionError(
        f"validating {artifact.name} needs TensorFlow with the Flex delegate (it holds Flex ops "
        f"{', '.join(flex_ops(artifact))}); this environment's TensorFlow has none: run `make onnx2tf` (its "
        "TensorFlow 2.19 links it) or set EDGE_SDK_FLEX_PYTHON to a Python whose TensorFlow does"
    )


def tensorflow_has_flex() -> bool:
    """Whether this environment's TensorFlow links the Flex delegate (``TF_AcquireFlexDelegate``)."""
    spec = importlib.util.find_spec("tensorflow")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for lib in ("libtensorflow_cc.so.2", "python/_pywrap_tensorflow_internal.so"):
            path = Path(folder) / lib
            if path.exists():
                try:
                    if hasattr(ctypes.CDLL(str(path)), "TF_AcquireFlexDelegate"):
                        return True
                except OSError:
                    continue
    return False
