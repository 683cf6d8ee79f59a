"""``edge-sdk info`` and ``bench`` as a user runs them: tables, JSON, one-line errors."""

from __future__ import annotations

import json
import os

import pytest


def test_info_table_and_json(cli, three_formats):
    r = cli("info", str(three_formats["tflite_int8"]))
    assert r.returncode == 0, r.stderr
    assert "full integer (int8 I/O)" in r.stdout
    assert "CONV_2D" in r.stdout and "DEPTHWISE_CONV_2D" in r.stdout
    assert "MACs          73.77K" in r.stdout  # 16*16*8*27 + 16*16*8*9 + 8*5
    r = cli("info", str(three_formats["onnx"]), "--json")
    info = json.loads(r.stdout)
    assert info["format"] == "onnx" and info["macs"] == 73768
    assert info["params"] == 8 * 27 + 8 * 9 + 8 * 5  # conv, depthwise, dense kernels (zero biases folded away)
    assert info["inputs"][0]["shape"] == [None, 16, 16, 3]
    assert info["quantization"] == "none (float)"


def test_info_macs_agree_across_formats(cli, three_formats):
    macs = {
        fmt: json.loads(cli("info", str(three_formats[fmt]), "--json").stdout)["macs"]
        for fmt in ("onnx", "tflite", "openvino")
    }
    assert set(macs.values()) == {73768}, macs


def test_bench_single_and_comparison(cli, three_formats):
    r = cli("bench", str(three_formats["onnx"]), "--runs", "20", "--warmup", "2", "--json")
    assert r.returncode == 0, r.stderr
    [res] = json.loads(r.stdout)  # always a list (issue 14)
    for key in ("load_ms", "first_inference_ms", "p50_ms", "p90_ms", "p99_ms", "throughput_ips", "peak_rss_mb"):
        assert res[key] > 0, key
    assert res["p50_ms"] <= res["p90_ms"] <= res["p99_ms"]
    assert res["runs"] == 20 and res["backend"] == "onnxruntime"
    r = cli("bench", str(three_formats["onnx"]), str(three_formats["tflite"]), "--backend", "onnxruntime,openvino",
            "--runs", "5")  # fmt: skip
    # tflite is not readable by onnxruntime: that pair is skipped, and said so
    assert r.returncode == 0 and "on onnxruntime: onnxruntime cannot read tflite files" in r.stdout
    r = cli("bench", str(three_formats["onnx"]), "--runs", "3", "--input-shape", "image=2,16,16,3", "--json")
    assert json.loads(r.stdout)[0]["input_shapes"] == {"image": [2, 16, 16, 3]}


def test_bench_comparison_table(cli, three_formats):
    r = cli("bench", str(three_formats["onnx"]), "--backend", "onnxruntime,openvino", "--runs", "10")
    assert r.returncode == 0, r.stderr
    assert "fastest p50" in r.stdout
    lines = [ln for ln in r.stdout.splitlines() if "net.onnx" in ln]
    assert any("onnxruntime" in ln for ln in lines) and any("openvino" in ln for ln in lines)


def _write(name: str, data: bytes):
    def make(folder):
        (folder / name).write_bytes(data)
        return folder / name

    return make


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.onnx", "error: model file not found"),
        (lambda d: d, "is a directory, not a model file"),
        (_write("e.onnx", b""), "model file is empty"),
        (_write("r.tflite", b"\0" + os.urandom(999)), "a '.tflite' name suggests tflite, but the content is not"),
        (_write("r.xml", b"\0" + os.urandom(999)), "a '.xml' name suggests openvino, but the content is not"),
        (_write("r.onnx", b"\0" + os.urandom(999)), "is not a valid ONNX model"),
    ],
)
@pytest.mark.parametrize("verb", ["info", "bench"])
def test_bad_input_one_line_no_traceback(cli, tmp_path, make, message, verb):
    path = make(tmp_path)
    r = cli(verb, str(path))
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith(f"edge-sdk {verb}: error: ")


def test_bad_input_shape_and_runs(cli, three_formats):
    r = cli("bench", str(three_formats["onnx"]), "--input-shape", "image=2,x")
    assert r.returncode == 2 and "--input-shape 'image=2,x' is not NAME=D1,D2,..." in r.stderr
    r = cli("bench", str(three_formats["onnx"]), "--input-shape", "nope=1,16,16,3", "--runs", "1")
    assert r.returncode == 2 and "names unknown input(s) ['nope']" in r.stderr
    r = cli("bench", str(three_formats["onnx"]), "--runs", "0")
    assert r.returncode == 2 and "--runs must be >= 1" in r.stderr


def test_external_data_escape_via_cli(cli, tmp_path):
    import builders

    path = builders.onnx_with_external_data(tmp_path / "m", "../../etc/passwd")
    r = cli("info", str(path))
    assert r.returncode == 2
    assert "external data at '../../etc/passwd', outside the model's folder" in r.stderr


def test_help_is_instant_and_lists_verbs(cli):
    r = cli("--help")
    assert r.returncode == 0
    for verb in ("info", "bench"):
        assert verb in r.stdout


def test_onnx_macs_follow_shapes_computed_at_run_time(tmp_path):
    """Torch exports that compute padding from the input shape still get exact MACs (symbolic inference)."""
    import openvino as ov
    import torch

    from edge_sdk.summary import summarize

    class SamePad(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]
            pad_h = max((h + 1) // 2 * 2 + 1 - h, 0)
            pad_w = max((w + 1) // 2 * 2 + 1 - w, 0)
            x = torch.nn.functional.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
            return self.conv(x)

    onnx_path = tmp_path / "same.onnx"
    torch.onnx.export(SamePad().eval(), (torch.randn(1, 3, 32, 32),), str(onnx_path), dynamo=False)
    ov.save_model(ov.convert_model(str(onnx_path)), str(tmp_path / "same.xml"))
    expected = 16 * 16 * 8 * 3 * 3 * 3
    assert summarize(onnx_path).macs == expected == summarize(tmp_path / "same.xml").macs


def test_incomplete_shape_inference_writes_nothing_into_the_current_folder(tmp_path, monkeypatch):
    """ORT's symbolic inference saves ``sym_shape_infer_temp.onnx`` into the cwd when a custom op stops it."""
    from onnx import TensorProto, helper

    from edge_sdk.summary import summarize
    from edge_sdk.summary.onnx_summary import ort_symbolic_shapes

    weight = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], [0.1] * 216)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Mystery", ["c"], ["y"], domain="com.vendor")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.vendor", 1)])
    path = tmp_path / "custom.onnx"
    path.write_bytes(model.SerializeToString())
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert ort_symbolic_shapes(model)[1] is False
    assert summarize(path).macs == 8 * 8 * 8 * 3 * 3 * 3  # onnx's inference still sizes the Conv
    assert list(cwd.iterdir()) == []
