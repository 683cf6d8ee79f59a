"""TFLite backend through LiteRT: ``ai_edge_litert``, else ``tflite_runtime``, else ``tensorflow.lite``.

Options:

- ``delegate``: ``"xnnpack"`` (default, built into the interpreter), ``"none"`` (reference
  kernels), ``"gpu"``, ``"edgetpu"``, or a path to an external delegate library.
- ``delegate_options``: dict passed to ``load_delegate`` (e.g. ``{"device": "usb"}`` for EdgeTPU).
"""

from __future__ import annotations

import ctypes
import importlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge_sdk.backends import module_available
from edge_sdk.backends.base import Backend
from edge_sdk.errors import BackendOptionError, BackendUnavailableError, ModelLoadError, first_line
from edge_sdk.formats import ModelFile
from edge_sdk.tensor_spec import QuantParams, TensorSpec, guess_layout

#: the interpreter modules tried in order (the first one importable is used)
INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")

#: well-known delegate names -> shared library to load
DELEGATE_LIBRARIES = {
    "gpu": "libtensorflowlite_gpu_delegate.so",
    "edgetpu": "libedgetpu.so.1",
    "hexagon": "libhexagon_interface.so",
}
_DELEGATE_HELP = {
    "gpu": "build or install the TFLite GPU delegate library (libtensorflowlite_gpu_delegate.so)",
    "edgetpu": "install the Edge TPU runtime (Debian package libedgetpu1-std) and plug in the Coral device",
    "hexagon": "install Qualcomm's Hexagon delegate library",
}


def import_interpreter_module() -> tuple[Any, str]:
    """The first importable LiteRT/TFLite interpreter module and its name."""
    errors = []
    for name in INTERPRETER_MODULES:
        top = name.split(".")[0]
        if not module_available(top):
            continue
        try:
            mod = importlib.import_module(name)
        except Exception as e:  # a broken install (e.g. numpy ABI mismatch) -> try the next one
            errors.append(f"{name}: {first_line(e)}")
            continue
        return mod, name
    raise BackendUnavailableError("litert", "tflite", "; ".join(errors) or "none of " + ", ".join(INTERPRETER_MODULES))


def _spec(d: dict[str, Any]) -> TensorSpec:
    sig = d.get("shape_signature", d["shape"])
    dims = tuple(int(x) if x >= 0 else None for x in sig)
    qp = d.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), dtype=np.float32)
    zps = np.asarray(qp.get("zero_points", []), dtype=np.int64)
    quant = None
    if scales.size == 1:
        quant = QuantParams(float(scales[0]), int(zps[0]) if zps.size else 0)
    elif scales.size > 1:
        quant = QuantParams(scales, zps, int(qp.get("quantized_dimension", 0)))
    return TensorSpec(d["name"], dims, np.dtype(d["dtype"]), guess_layout(dims), quant)


def flex_ops(path: str | Path) -> list[str]:
    """The Select TF ops (custom ops ``Flex<Op>``) a TFLite file uses, sorted; [] when none or unreadable."""
    import mmap

    from edge_sdk.formats.tflite_format import _MODEL_OPCODES, _Flat

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            fb = _Flat(mm)
            codes = fb.tables(fb.u32(0), _MODEL_OPCODES, "operator_codes vector")
            names = {fb.string(t, 1, "custom_code") for t in codes if fb.field(t, 1) is not None}
    except Exception:  # noqa: BLE001 - only for naming ops in a message; the load error stands either way
        return []
    return sorted(n for n in names if n.startswith("Flex"))


class LiteRTBackend(Backend):
    name = "litert"
    formats = ("tflite",)
    extra = "tflite"

    @classmethod
    def is_available(cls) -> bool:
        return any(module_available(m.split(".")[0]) for m in INTERPRETER_MODULES)

    def __init__(self, model_file: ModelFile, *, threads: int | None, device: str, options: Mapping[str, Any]) -> None:
        mod, self._module_name = import_interpreter_module()
        opts = dict(options)
        delegate = str(opts.pop("delegate", "xnnpack"))
        delegate_options = dict(opts.pop("delegate_options", {}))
        opts.pop("verbose", None)
        if opts:
            raise BackendOptionError(
                f"unknown litert option(s): {', '.join(sorted(opts))}; known: delegate, delegate_options"
            )
        kwargs: dict[str, Any] = {"model_path": str(model_file.path), "num_threads": threads}
        if delegate == "none":
            resolver = getattr(mod, "OpResolverType", None)
            if resolver is not None:
                kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif delegate != "xnnpack":
            kwargs["experimental_delegates"] = [self._load_delegate(mod, delegate, delegate_options)]
        self._delegate = delegate
        try:
            self._interp = mod.Interpreter(**kwargs)
            self._interp.allocate_tensors()
        except Exception as e:
            flex = flex_ops(model_file.path) if "TensorFlow op" in str(e) or "Flex" in str(e) else []
            if flex:  # a file converted with Select TF ops: name them and the runtimes that have the Flex delegate
                raise ModelLoadError(
                    f"{model_file.path.name} holds TensorFlow (Select TF / Flex) op(s) {', '.join(flex)}, which "
                    f"need the Flex delegate; {self._module_name} has none (the ai-edge-litert wheel cannot load "
                    "such a file): run it with TensorFlow's tf.lite.Interpreter from a build that links the Flex "
                    "delegate, or a LiteRT build with Flex (Android: tensorflow-lite-select-tf-ops), or replace "
                    "these ops in the source model and convert without --tf-select-ops"
                ) from None
            raise ModelLoadError(f"LiteRT could not load {model_file.path.name}: {first_line(e)}") from None
        try:
            in_details = self._interp.get_input_details()
            out_details = self._interp.get_output_details()
            self.inputs = [_spec(d) for d in in_details]
            self.outputs = [_spec(d) for d in out_details]
        except Exception as e:  # bad tensor indexes (ValueError), names that are not UTF-8 (UnicodeDecodeError)
            raise ModelLoadError(
                f"LiteRT could not describe the inputs/outputs of {model_file.path.name}: {first_line(e)}"
            ) from None
        self._in_idx = [d["index"] for d in in_details]
        self._in_shape = [tuple(int(v) for v in d["shape"]) for d in in_details]
        self._out_idx = [d["index"] for d in out_details]

    @staticmethod
    def _load_delegate(mod: Any, delegate: str, options: dict[str, Any]) -> Any:
        library = DELEGATE_LIBRARIES.get(delegate, delegate)
        try:
            # Open it ourselves first: LiteRT's Delegate leaves a half-built object (and an
            # "Exception ignored in __del__" message) when the library cannot be opened.
            ctypes.CDLL(library)
            return mod.load_delegate(library, options)
        except (ValueError, OSError, RuntimeError) as e:
            how = _DELEGATE_HELP.get(delegate, "check the delegate library path")
            raise BackendOptionError(
                f"TFLite delegate '{delegate}' could not be loaded from {library}: {first_line(e)}; {how}"
            ) from None

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        interp = self._interp
        for i, (idx, x) in enumerate(zip(self._in_idx, feeds)):
            if x.shape != self._in_shape[i]:
                interp.resize_tensor_input(idx, x.shape, strict=True)
                interp.allocate_tensors()
                self._in_shape[i] = x.shape
            interp.set_tensor(idx, x)
        interp.invoke()
        return [interp.get_tensor(idx) for idx in self._out_idx]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "runtime": self._module_name, "delegate": self._delegate}


BACKEND = LiteRTBackend
