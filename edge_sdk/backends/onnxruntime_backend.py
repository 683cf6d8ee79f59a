"""ONNX Runtime backend: an ``InferenceSession`` with execution providers in priority order.

Options (``edge_sdk.load(..., **options)``):

- ``providers``: list of provider names or ``(name, {option: value})`` pairs, best first,
  e.g. ``[("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]``.
  A provider that this onnxruntime build lacks is an error unless ``device="auto"``,
  where it is skipped with a logged warning.
- ``graph_optimization_level``: ``"disable" | "basic" | "extended" | "all"`` (default ``"all"``).
- ``session_config``: extra ``SessionOptions.add_session_config_entry`` pairs.
- ``cache_dir``: where EPs that compile the model keep their result (TensorRT engine and timing
  cache, OpenVINO EP blobs, Core ML compiled models). By default a per-user folder keyed by model
  hash, provider and precision (see ``edge_sdk.cache``); ``None`` turns it off. Options given
  explicitly in ``providers`` win. The CPU EP compiles nothing, so it uses no cache.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from edge_sdk._dtypes import ORT_TYPES
from edge_sdk.backends import module_available
from edge_sdk.backends.base import Backend
from edge_sdk.cache import DEFAULT, resolve_cache_dir
from edge_sdk.errors import BackendOptionError, BackendUnavailableError, ModelLoadError, first_line
from edge_sdk.formats import ModelFile
from edge_sdk.tensor_spec import TensorSpec, guess_layout

log = logging.getLogger("edge_sdk")

_OPT_LEVELS = ("disable", "basic", "extended", "all")
#: which pip package brings a provider that the default wheel lacks
PROVIDER_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu (with TensorRT libraries)",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "DmlExecutionProvider": "onnxruntime-directml",
    "QNNExecutionProvider": "onnxruntime-qnn",
    "CoreMLExecutionProvider": "onnxruntime (macOS build)",
    "NnapiExecutionProvider": "onnxruntime-android",
}


def _spec(arg: Any) -> TensorSpec:
    dims = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
    names = tuple(d if isinstance(d, str) else None for d in arg.shape)
    dtype = ORT_TYPES.get(arg.type)
    if dtype is None:
        raise ModelLoadError(f"tensor '{arg.name}' has type {arg.type}, which edge_sdk does not map to numpy")
    return TensorSpec(arg.name, dims, dtype, guess_layout(dims), None, names)


#: provider -> (option naming its cache folder, other options that turn the cache on)
CACHE_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "TensorrtExecutionProvider": (
        "trt_engine_cache_path",
        {"trt_engine_cache_enable": True, "trt_timing_cache_enable": True},
    ),
    "OpenVINOExecutionProvider": ("cache_dir", {}),
    "CoreMLExecutionProvider": ("ModelCacheDirectory", {}),
}


def _with_caches(providers: list[Any], cache_dir: Any, model_file: ModelFile) -> list[Any]:
    """Fill in the cache options of providers that compile the model (explicit options win)."""
    out = []
    for entry in providers:
        name, opts = (entry[0], dict(entry[1])) if isinstance(entry, tuple) else (entry, {})
        if name in CACHE_OPTIONS and CACHE_OPTIONS[name][0] not in opts:
            precision = "fp16" if str(opts.get("trt_fp16_enable", "")).lower() in ("1", "true") else "default"
            folder = resolve_cache_dir(
                cache_dir, model_file, "onnxruntime", name.replace("ExecutionProvider", ""), precision
            )
            if folder is not None:
                key, extra = CACHE_OPTIONS[name]
                opts = {**extra, **opts, key: str(folder)}
                if name == "TensorrtExecutionProvider":
                    opts.setdefault("trt_timing_cache_path", str(folder))
        out.append((name, opts) if opts else name)
    return out


def _resolve_providers(requested: Any, available: list[str], strict: bool) -> list[Any]:
    if requested is None:
        return ["CPUExecutionProvider"]
    if isinstance(requested, (str, tuple)):
        requested = [requested]
    chosen: list[Any] = []
    for entry in requested:
        name = entry[0] if isinstance(entry, tuple) else entry
        if name in available:
            chosen.append(entry)
            continue
        hint = PROVIDER_PACKAGES.get(name, "an onnxruntime build that includes it")
        msg = (
            f"execution provider '{name}' is not in this onnxruntime build "
            f"(available: {', '.join(available)}); install {hint}"
        )
        if strict:
            raise BackendOptionError(msg)
        log.warning("%s; falling back", msg)
    if not any((e[0] if isinstance(e, tuple) else e) == "CPUExecutionProvider" for e in chosen):
        chosen.append("CPUExecutionProvider")
    return chosen


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = ("onnx",)
    extra = "onnx"

    @classmethod
    def is_available(cls) -> bool:
        return module_available("onnxruntime")

    def __init__(self, model_file: ModelFile, *, threads: int | None, device: str, options: Mapping[str, Any]) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailableError(self.name, self.extra, str(e)) from None
        opts = dict(options)
        so = ort.SessionOptions()
        so.log_severity_level = 3 if not opts.pop("verbose", False) else 1
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        level = opts.pop("graph_optimization_level", "all")
        if level not in _OPT_LEVELS:
            raise BackendOptionError(f"graph_optimization_level must be one of {_OPT_LEVELS}, got {level!r}")
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        for key, value in dict(opts.pop("session_config", {})).items():
            so.add_session_config_entry(str(key), str(value))
        providers = _resolve_providers(opts.pop("providers", None), ort.get_available_providers(), device != "auto")
        providers = _with_caches(providers, opts.pop("cache_dir", DEFAULT), model_file)
        if opts:
            raise BackendOptionError(
                f"unknown onnxruntime option(s): {', '.join(sorted(opts))}; "
                "known: providers, graph_optimization_level, session_config, cache_dir"
            )
        try:
            self._session = ort.InferenceSession(str(model_file.path), sess_options=so, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelLoadError(f"onnxruntime could not load {model_file.path.name}: {first_line(e)}") from None
        try:
            self.inputs = [_spec(a) for a in self._session.get_inputs()]
            self.outputs = [_spec(a) for a in self._session.get_outputs()]
        except ModelLoadError:
            raise
        except Exception as e:  # e.g. a name that is not UTF-8 (UnicodeDecodeError from the binding)
            raise ModelLoadError(
                f"onnxruntime could not describe the inputs/outputs of {model_file.path.name}: {first_line(e)}"
            ) from None
        self._input_names = [s.name for s in self.inputs]
        self._output_names = [s.name for s in self.outputs]

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self._session.run(self._output_names, dict(zip(self._input_names, feeds)))

    def describe(self) -> dict[str, Any]:
        threads = self._session.get_session_options().intra_op_num_threads  # 0: ORT's default (every core)
        return {"backend": self.name, "providers": self._session.get_providers(), "threads": threads}


BACKEND = OnnxRuntimeBackend
