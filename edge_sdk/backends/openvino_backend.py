"""OpenVINO backend: reads IR (.xml), ONNX and TFLite, compiles for a device.

Options:

- ``device`` (the ``load`` argument): ``"cpu"``/``"auto"`` -> ``CPU``; or an OpenVINO
  device name: ``"GPU"``, ``"NPU"``, ``"AUTO"``, ``"HETERO:NPU,CPU"``.
- ``performance_hint``: ``"LATENCY"`` (default) | ``"THROUGHPUT"`` | ``"CUMULATIVE_THROUGHPUT"``.
- ``cache_dir``: folder for compiled-model caching (warm start). By default a per-user folder
  keyed by model hash, device and precision (see ``edge_sdk.cache``); ``None`` turns it off.
- ``inference_precision``: ``"f32"`` (default) | ``"bf16"`` | ``"f16"``. OpenVINO's own default on
  CPUs with AVX512-BF16/AMX is bf16, which silently changes an fp32 model's outputs; we
  keep fp32 models in fp32 unless asked.
- ``config``: extra properties passed to ``compile_model``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from edge_sdk.backends import module_available
from edge_sdk.backends.base import Backend
from edge_sdk.cache import DEFAULT, resolve_cache_dir
from edge_sdk.errors import BackendOptionError, BackendUnavailableError, ModelLoadError, first_line
from edge_sdk.formats import ModelFile
from edge_sdk.tensor_spec import TensorSpec, guess_layout

_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


def ov_device_name(device: str) -> str:
    """edge_sdk device names -> OpenVINO device names."""
    return {"auto": "CPU", "cpu": "CPU", "gpu": "GPU", "npu": "NPU"}.get(device, device)


def _spec(port: Any, index: int) -> TensorSpec:
    pshape = port.get_partial_shape()
    dims = tuple(d.get_length() if d.is_static else None for d in pshape) if pshape.rank.is_static else ()
    names = port.get_names()
    name = port.get_any_name() if names else port.get_node().get_friendly_name() or f"tensor_{index}"
    return TensorSpec(name, dims, np.dtype(port.get_element_type().to_dtype()), guess_layout(dims))


class OpenVINOBackend(Backend):
    name = "openvino"
    formats = ("openvino", "onnx", "tflite")
    extra = "openvino"

    @classmethod
    def is_available(cls) -> bool:
        return module_available("openvino")

    def __init__(self, model_file: ModelFile, *, threads: int | None, device: str, options: Mapping[str, Any]) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise BackendUnavailableError(self.name, self.extra, first_line(e)) from None
        opts = dict(options)
        opts.pop("verbose", None)
        hint = str(opts.pop("performance_hint", "LATENCY")).upper()
        if hint not in _HINTS:
            raise BackendOptionError(f"performance_hint must be one of {_HINTS}, got {hint!r}")
        precision = str(opts.pop("inference_precision", "f32")).lower()
        if precision not in ("f32", "bf16", "f16"):
            raise BackendOptionError(f"inference_precision must be f32, bf16 or f16, got {precision!r}")
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        cache_dir = opts.pop("cache_dir", DEFAULT)
        config.update(dict(opts.pop("config", {})))
        if opts:
            raise BackendOptionError(
                f"unknown openvino option(s): {', '.join(sorted(opts))}; "
                "known: performance_hint, inference_precision, cache_dir, config"
            )
        self._core = ov.Core()
        self._device = ov_device_name(device)
        self._cache_dir = resolve_cache_dir(cache_dir, model_file, self.name, self._device, precision)
        if self._cache_dir is not None:
            self._core.set_property({"CACHE_DIR": str(self._cache_dir)})
        available = self._core.available_devices
        base = self._device.split(":")[0].split(".")[0]
        if base not in ("AUTO", "HETERO", "MULTI", "BATCH") and base not in available:
            raise BackendOptionError(
                f"OpenVINO device '{self._device}' is not available on this machine "
                f"(available: {', '.join(available)}); install its driver or choose another device"
            )
        try:
            # compile from the path: with a cache, OpenVINO then skips reading as well as compiling
            self._compiled = self._core.compile_model(str(model_file.path), self._device, config)
        except Exception as e:
            raise ModelLoadError(f"OpenVINO could not load {model_file.path.name}: {first_line(e)}") from None
        try:
            self._request = self._compiled.create_infer_request()
            self.inputs = [_spec(p, i) for i, p in enumerate(self._compiled.inputs)]
            self.outputs = [_spec(p, i) for i, p in enumerate(self._compiled.outputs)]
        except Exception as e:  # dynamic element types (IndexError: map::at), names that are not UTF-8
            raise ModelLoadError(
                f"OpenVINO could not describe the inputs/outputs of {model_file.path.name}: {first_line(e)}"
            ) from None
        self._n_out = len(self.outputs)

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        request = self._request
        request.infer(dict(enumerate(feeds)), share_inputs=True)
        return [request.get_output_tensor(i).data.copy() for i in range(self._n_out)]

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "device": self._device,
            "execution_devices": list(self._compiled.get_property("EXECUTION_DEVICES")),
            "threads": int(self._compiled.get_property("INFERENCE_NUM_THREADS")) if self._device == "CPU" else None,
            "cache_dir": str(self._cache_dir) if self._cache_dir else None,
        }


BACKEND = OpenVINOBackend
