"""``convert(progress=callable)``: each artifact is reported as soon as it is made (the demo prints one line each)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from converters import convert


def _matmul(path):
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_progress_callable_gets_each_validated_artifact_in_order(tmp_path):
    seen = []

    def on_artifact(report):
        assert report.path.exists(), "reported before the file was published"
        seen.append((report.path.name, report.passed))

    result = convert(str(_matmul(tmp_path / "mm.onnx")), to=["onnx", "openvino"], precision=["fp32", "fp16"],
                     output_dir=tmp_path / "out", progress=on_artifact)  # fmt: skip
    assert seen == [(a.path.name, True) for a in result.artifacts]
    assert [name for name, _ in seen] == ["mm_fp32.onnx", "mm_fp16.onnx", "mm_fp32.xml", "mm_fp16.xml"]
