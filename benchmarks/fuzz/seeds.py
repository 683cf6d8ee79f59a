"""Seed models for the loader fuzzer, built in code (no model files in git) and cached on disk.

Each seed is a folder ``<cache>/<format>/<name>/`` holding the model file (``.onnx``, ``.tflite``,
``.xml``) and its companions (``.bin``, external data). Building needs the converter libraries
(onnx, tensorflow, openvino), so it runs once in a child process (``python seeds.py <dir>``) and
is reused while :data:`SEEDS_VERSION` and the library versions stay the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

#: bump when a seed changes, so old caches are not reused
SEEDS_VERSION = 2
MAIN_SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}
FORMATS = tuple(MAIN_SUFFIX)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edge_sdk_fuzz`` (or ``~/.cache/edge_sdk_fuzz``)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edge_sdk_fuzz"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"v{SEEDS_VERSION}"]
    for pkg in ("onnx", "tensorflow-cpu", "tensorflow", "openvino"):
        try:
            parts.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            pass
    return hashlib.sha256(";".join(parts).encode()).hexdigest()[:12]


def ensure_seeds(cache_dir: Path, formats: tuple[str, ...] = FORMATS) -> dict[str, list[dict[str, bytes]]]:
    """Seed models per format, as ``{format: [{"__name__": b"...", filename: bytes, ...}]}``, sorted by name.

    Builds the cache in a child process the first time (about half a minute for TFLite).
    """
    root = cache_dir / f"seeds-{_versions()}"
    done = root / "done.json"
    if not done.is_file():
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), str(root)],
            capture_output=True, text=True, env=env, timeout=900,
        )  # fmt: skip
        if proc.returncode != 0 or not done.is_file():
            raise RuntimeError(f"building fuzz seeds failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    seeds: dict[str, list[dict[str, bytes]]] = {}
    for fmt in formats:
        entries = []
        for folder in sorted((root / fmt).iterdir()):
            files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
            entries.append({"__name__": folder.name.encode(), **files})
        seeds[fmt] = entries
    return seeds


def main_file(files: dict[str, bytes], fmt: str) -> str:
    """Name of the model file in a seed's or case's file set."""
    return next(n for n in files if n.endswith(MAIN_SUFFIX[fmt]))


# --------------------------------------------------------------------------- ONNX


def _onnx_seeds(out: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def arr(name: str, *shape: int, dtype=np.float32) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(dtype), name)

    def vi(name: str, elem: int, shape: list) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, elem, shape)

    def save(name: str, model: onnx.ModelProto, **kw) -> None:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        model.metadata_props.add(key="task", value="classify")
        onnx.checker.check_model(model)
        onnx.save(model, str(folder / f"{name}.onnx"), **kw)

    opset = [helper.make_opsetid("", 17)]
    mlp = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
            helper.make_node("Add", ["h", "b"], ["z"], name="add"),
            helper.make_node("Relu", ["z"], ["y"], name="relu"),
        ],
        "mlp", [vi("x", TensorProto.FLOAT, ["batch", 16])], [vi("y", TensorProto.FLOAT, ["batch", 4])],
        [arr("w", 16, 4), arr("b", 4)],
        value_info=[vi("h", TensorProto.FLOAT, ["batch", 4])],
    )  # fmt: skip
    save("mlp", helper.make_model(mlp, opset_imports=opset, ir_version=8))
    external = {"all_tensors_to_one_file": True, "location": "weights.data", "size_threshold": 0}
    save("mlp_external", helper.make_model(mlp, opset_imports=opset, ir_version=8), save_as_external_data=True,
         **external)  # fmt: skip

    conv = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("GlobalAveragePool", ["p"], ["g"]),
            helper.make_node("Flatten", ["g"], ["y"], axis=1),
        ],
        "conv", [vi("x", TensorProto.FLOAT, [1, 3, 8, 8])], [vi("y", TensorProto.FLOAT, [1, 4])],
        [arr("w", 4, 3, 3, 3), arr("b", 4)],
    )  # fmt: skip
    save("conv", helper.make_model(conv, opset_imports=opset, ir_version=8))

    then_g = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["t"])],
        "then",
        [],
        [vi("t", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.float32([2]), "two")],
    )
    else_g = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"])], "else", [], [vi("e", TensorProto.FLOAT, [1, 4])]
    )
    if_g = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
            helper.make_node("Greater", ["s", "zero"], ["c"]),
            helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g),
        ],
        "if", [vi("x", TensorProto.FLOAT, [1, 4])], [vi("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.float32(0), "zero")],
    )  # fmt: skip
    save("if_subgraph", helper.make_model(if_g, opset_imports=opset, ir_version=8))

    qdq = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
            helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]),
            helper.make_node("Conv", ["xd", "wd"], ["c"], kernel_shape=[3, 3]),
            helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["yq"]),
            helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
        ],
        "qdq", [vi("x", TensorProto.FLOAT, [1, 2, 6, 6])], [vi("y", TensorProto.FLOAT, [1, 3, 4, 4])],
        [
            numpy_helper.from_array(np.float32(0.05), "xs"), numpy_helper.from_array(np.int8(0), "xz"),
            numpy_helper.from_array(rng.integers(-127, 127, (3, 2, 3, 3)).astype(np.int8), "wq"),
            numpy_helper.from_array(np.float32(0.01), "ws"), numpy_helper.from_array(np.int8(0), "wz"),
            numpy_helper.from_array(np.float32(0.1), "ys"), numpy_helper.from_array(np.int8(0), "yz"),
        ],
    )  # fmt: skip
    save("int8_qdq", helper.make_model(qdq, opset_imports=opset, ir_version=8))

    # a model-local function, a sparse initializer and two typed inputs
    fn = helper.make_function(
        "local", "Scale", ["a"], ["b"],
        [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.float32([3]), "k")),
         helper.make_node("Mul", ["a", "k"], ["b"])],
        opset,
    )  # fmt: skip
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.float32([1.5, -2.0]), "sp"), numpy_helper.from_array(np.int64([1, 5]), "sp_idx"),
        [2, 4],
    )  # fmt: skip
    fn_g = helper.make_graph(
        [
            helper.make_node("Scale", ["a"], ["s"], domain="local"),
            helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["s", "nf"], ["t"]),
            helper.make_node("Add", ["t", "sp"], ["y"]),
        ],
        "fn", [vi("a", TensorProto.FLOAT, [2, 4]), vi("n", TensorProto.INT64, [2, 4])],
        [vi("y", TensorProto.FLOAT, [2, 4])], sparse_initializer=[sparse],
    )  # fmt: skip
    save("function_sparse", helper.make_model(fn_g, opset_imports=[*opset, helper.make_opsetid("local", 1)],
                                              functions=[fn], ir_version=8))  # fmt: skip


# --------------------------------------------------------------------------- TFLite


def _tflite_seeds(out: Path) -> None:
    import tensorflow as tf

    tf.random.set_seed(0)
    rng = np.random.default_rng(0)
    w = tf.constant(rng.standard_normal((16, 4)).astype(np.float32))
    b = tf.constant(rng.standard_normal(4).astype(np.float32))
    k = tf.constant(rng.standard_normal((3, 3, 3, 4)).astype(np.float32) * 0.3)

    @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32, name="x")])
    def dense(x):
        return {"y": tf.nn.relu(tf.matmul(x, w) + b)}

    @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.float32, name="x")])
    def dense_dynamic(x):
        return {"y": tf.nn.relu(tf.matmul(x, w) + b)}

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32, name="image")])
    def conv(x):
        y = tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME"))
        y = tf.nn.avg_pool2d(y, 2, 2, "VALID")
        return {"logits": tf.reshape(y, [1, -1])}

    @tf.function(
        input_signature=[tf.TensorSpec([1, 4], tf.float32, name="a"), tf.TensorSpec([1, 4], tf.int32, name="n")]
    )
    def two_io(a, n):
        nf = tf.cast(n, tf.float32)
        return {"sum": a + nf, "prod": a * nf}

    def convert(fn, int8: bool = False, fp16: bool = False) -> bytes:
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
        if fp16:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        if int8:
            shape = [1, 8, 8, 3]

            def representative():
                r = np.random.default_rng(1)
                for _ in range(8):
                    yield [r.random(shape, dtype=np.float32)]

            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        return conv.convert()

    for name, data in [
        ("dense", convert(dense)),
        ("dense_dynamic", convert(dense_dynamic)),
        ("conv", convert(conv)),
        ("conv_int8", convert(conv, int8=True)),
        ("conv_fp16", convert(conv, fp16=True)),
        ("two_io", convert(two_io)),
    ]:
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / name / f"{name}.tflite").write_bytes(data)


# --------------------------------------------------------------------------- OpenVINO


def _openvino_seeds(out: Path, onnx_dir: Path) -> None:
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)

    def save(name: str, model: ov.Model) -> None:
        (out / name).mkdir(parents=True, exist_ok=True)
        model.set_rt_info("classify", ["model_info", "model_type"])
        ov.save_model(model, str(out / name / f"{name}.xml"), compress_to_fp16=False)

    x = ops.parameter([1, 16], np.float32, name="x")
    y = ops.relu(ops.add(ops.matmul(x, ops.constant(rng.standard_normal((16, 4)).astype(np.float32)), False, False),
                         ops.constant(rng.standard_normal(4).astype(np.float32))))  # fmt: skip
    save("mlp", ov.Model([y], [x], "mlp"))

    x = ops.parameter([-1, 16], np.float32, name="x")
    y = ops.matmul(x, ops.constant(rng.standard_normal((16, 4)).astype(np.float32)), False, False)
    save("mlp_dynamic", ov.Model([ops.relu(y)], [x], "mlp_dynamic"))

    x = ops.parameter([1, 3, 8, 8], np.float32, name="image")
    c = ops.convolution(x, ops.constant(rng.standard_normal((4, 3, 3, 3)).astype(np.float32)), [1, 1], [1, 1], [1, 1],
                        [1, 1])  # fmt: skip
    y = ops.reshape(ops.relu(c), ops.constant(np.int64([1, -1])), False)
    save("conv", ov.Model([y], [x], "conv"))

    # int8 weights (Const i8 -> Convert -> Multiply) and FakeQuantize on the activations
    x = ops.parameter([1, 16], np.float32, name="x")
    lo, hi = ops.constant(np.float32(-4)), ops.constant(np.float32(4))
    xq = ops.fake_quantize(x, lo, hi, lo, hi, 256)
    wq = ops.constant(rng.integers(-127, 127, (16, 4)).astype(np.int8))
    wd = ops.multiply(ops.convert(wq, "f32"), ops.constant(np.float32(0.02)))
    save("int8_weights", ov.Model([ops.matmul(xq, wd, False, False)], [x], "int8_weights"))

    for name in ("conv", "if_subgraph"):
        save(f"from_onnx_{name}", ov.convert_model(str(onnx_dir / name / f"{name}.onnx")))


def build_all(root: Path) -> None:
    """Build every seed under ``root`` (a fresh folder), then write ``done.json``."""
    root.mkdir(parents=True, exist_ok=True)
    _onnx_seeds(root / "onnx")
    _tflite_seeds(root / "tflite")
    _openvino_seeds(root / "openvino", root / "onnx")
    (root / "done.json").write_text(json.dumps({"version": SEEDS_VERSION}))


if __name__ == "__main__":
    build_all(Path(sys.argv[1]))
