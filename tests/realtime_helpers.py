"""Helpers for the real-time tests: tiny models, clips made with ffmpeg, free ports, child servers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np


def onnx_colour_classifier(path: Path, size: int = 32, classes: int = 10) -> Path:
    """x[1,3,S,S] -> mean over H,W -> [1,3] @ W[3,C] -> logits[1,C]: the class follows the colour."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((3, classes), np.float32)
    w[0, 0], w[1, 1], w[2, 2] = 10, 10, 10
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["logits"]),
        ],
        "colour",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


class SlowModel:
    """A real Model that takes at least ``seconds`` per run (a stand-in for a heavy network)."""

    def __init__(self, model: Any, seconds: float) -> None:
        self._m, self.seconds = model, seconds
        self.inputs, self.outputs, self.path = model.inputs, model.outputs, model.path

    def run(self, feeds: Any, **kw: Any) -> dict[str, np.ndarray]:
        t = time.perf_counter()
        out = self._m.run(feeds, **kw)
        left = self.seconds - (time.perf_counter() - t)
        if left > 0:
            time.sleep(left)
        return out

    def warmup(self, runs: int = 1) -> None:
        self._m.warmup(runs)

    def close(self) -> None:
        self._m.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def make_clip(path: Path, seconds: float = 2.0, size: str = "320x240", rate: int = 30, gop: int = 15) -> Path:
    """An H.264 MP4 test pattern made by ffmpeg."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc=size={size}:rate={rate}", "-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264",
         "-g", str(gop), str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
