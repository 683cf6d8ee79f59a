"""A detector-style ONNX exported with dynamic height/width, whose anchor grid is computed from the input
shape (as YOLO heads do), converted at the size the user gives with --input-shape."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edge_sdk as es  # noqa: E402
from converters import convert  # noqa: E402


class GridHead(torch.nn.Module):
    """Two strided convs, then boxes decoded against a grid built from the feature map's own shape."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 6, 3, 2, 1))

    def forward(self, x):  # noqa: ANN001
        f = self.body(x)
        b, c, h, w = f.shape
        ys, xs = torch.meshgrid(torch.arange(h, dtype=f.dtype), torch.arange(w, dtype=f.dtype), indexing="ij")
        grid = torch.stack([xs, ys]).reshape(1, 2, h * w)
        f = f.reshape(b, c, h * w)
        xy = (f[:, :2].sigmoid() + grid) * 4.0  # stride 4
        return torch.cat([xy, f[:, 2:].sigmoid()], 1)  # (1, 6, anchors)


@pytest.fixture(scope="module")
def dynamic_detector(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("det") / "det.onnx"
    torch.onnx.export(GridHead().eval(), (torch.randn(1, 3, 64, 64),), str(path), input_names=["images"],
                      output_names=["output0"], dynamic_axes={"images": {2: "height", 3: "width"},
                      "output0": {2: "anchors"}}, opset_version=17, dynamo=False)  # fmt: skip
    with es.load(path) as m:
        assert m.inputs[0].shape[2:] == (None, None)
    return path


def test_dynamic_onnx_fixed_to_the_given_shape_onnx_and_openvino(dynamic_detector, tmp_path):
    result = convert(dynamic_detector, to=["onnx", "openvino"], precision=["fp32", "int8-dynamic"],
                     input_shapes={"images": (1, 3, 96, 128)}, output_dir=tmp_path, progress=False)  # fmt: skip
    assert result.passed, [a.failures for a in result.artifacts]
    for a in result.artifacts:
        with es.load(a.path) as m:
            assert m.inputs[0].shape == (1, 3, 96, 128), a.path.name
            out = m(np.zeros((1, 3, 96, 128), np.float32))
        assert out.shape == (1, 6, 24 * 32), a.path.name  # the grid follows the given size, not the export's
        assert a.metrics[0].cosine > 0.999


@pytest.mark.slow
def test_dynamic_onnx_fixed_to_the_given_shape_tflite(dynamic_detector, tmp_path):
    result = convert(dynamic_detector, to=["tflite"], precision=["fp32"], input_shapes={"images": (1, 3, 96, 128)},
                     output_dir=tmp_path, progress=False)  # fmt: skip
    assert result.passed and result.artifact("tflite", "fp32").metrics[0].cosine > 0.9999


def test_unknown_input_name_in_input_shape_is_named(dynamic_detector, tmp_path):
    from edge_sdk.errors import SourceModelError

    expected = r"--input-shape names unknown input\(s\) \['image'\]; inputs: \['images'\]"
    with pytest.raises(SourceModelError, match=expected):
        convert(dynamic_detector, to=["onnx"], input_shapes={"image": (1, 3, 96, 128)}, output_dir=tmp_path)
