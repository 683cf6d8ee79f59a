"""A tiny PyTorch model with every structure pruning and quantization must handle (stem, inverted-residual
block with depthwise conv, concat of two branches, head), its ONNX export, and helpers; shared by the
pruning and QAT tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

nn = torch.nn


class Tiny(nn.Module):
    """Stem, an inverted-residual block (expand, depthwise, project, add), a concat of two branches, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.left = nn.Conv2d(16, 24, 3, padding=1)
        self.right = nn.Conv2d(16, 24, 1)
        self.head = nn.Sequential(nn.Conv2d(48, 64, 1), nn.ReLU())
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.dw(self.expand(x)))
        x = torch.cat([torch.relu(self.left(x)), torch.relu(self.right(x))], 1)
        return self.fc(self.head(x).mean((2, 3)))


def tiny(redundant: bool = False) -> Tiny:
    """A seeded Tiny; ``redundant``: the second half of every prunable channel group is dead (zero weights,
    zero batch-norm scale and shift), so channel pruning at 0.5 must remove exactly those and change nothing."""
    torch.manual_seed(0)
    m = Tiny().eval()
    with torch.no_grad():
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.1, 0.1)
                bn.running_var.uniform_(0.5, 1.5)
        if redundant:
            for conv, bns in ((m.expand[0], (m.expand[1], m.dw[1])), (m.left, ()), (m.right, ()), (m.head[0], ())):
                half = conv.out_channels // 2
                conv.weight[half:] = 0
                if conv.bias is not None:
                    conv.bias[half:] = 0
                for bn in bns:
                    bn.weight[half:] = 0
                    bn.bias[half:] = 0
                    bn.running_mean[half:] = 0
    return m


X = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32))


def cosine(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def tiny_onnx_file(path: Path) -> Path:
    """``tiny(redundant=True)`` exported to ONNX at ``path`` (input ``input``, output ``logits``)."""
    torch.onnx.export(tiny(True), (X,), str(path), input_names=["input"], output_names=["logits"],
                      opset_version=17, dynamo=False)  # fmt: skip
    return path
