"""Small audio models defined here: a keyword-spotting CNN and a GRU classifier, both on 40-mel log-mel
features of 1 s of speech (49 frames of 25 ms / 20 ms), 12 classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import Builder, Case, log_mels, set_torch_bn_stats, speech_windows

MEL = {"n_fft": 512, "win_length": 400, "hop_length": 320, "n_mels": 40, "center": False}


def _features(split: str, n: int, seed: int = 0) -> np.ndarray:
    return log_mels(speech_windows(split, n, 1.0, seed=seed), **MEL)  # (n, 49, 40)


def kws_cnn(workdir: Path, n_calib: int, n_held: int) -> Case:
    """Conv-BN-ReLU x4 (depthwise-separable after the first), global average pool, 12-way linear."""
    import torch
    from torch import nn

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]  # fmt: skip

    model = nn.Sequential(
        nn.Conv2d(1, 64, (10, 4), (2, 2), (5, 1), bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        *block(64, 64, 1), *block(64, 64, 1), *block(64, 64, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 12),
    )  # fmt: skip
    bn = _features("calibration", 16, seed=7)[:, None]
    set_torch_bn_stats(model, [(bn,)])
    calib, held = _features("calibration", n_calib)[:, None], _features("held_out", n_held)[:, None]
    return Case(model, (torch.from_numpy(held[:1]),), calib, held, "classifier", "DS-CNN style, espeak-ng speech",
                "log-mel 1x1x49x40")  # fmt: skip


def gru_audio(workdir: Path, n_calib: int, n_held: int) -> Case:
    """2-layer GRU (hidden 64) over 49 log-mel frames, 12-way linear on the last step."""
    import torch
    from torch import nn

    class GRUClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(40, 64, num_layers=2, batch_first=True)
            self.fc = nn.Linear(64, 12)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y, _ = self.gru(x)
            return self.fc(y[:, -1])

    torch.manual_seed(0)
    calib, held = _features("calibration", n_calib), _features("held_out", n_held)
    model = GRUClassifier().eval()
    return Case(model, (torch.from_numpy(held[:1]),), calib, held, "classifier", "espeak-ng speech",
                "log-mel 1x49x40")  # fmt: skip


ARCHS: dict[str, Builder] = {"kws_cnn": kws_cnn, "gru_audio": gru_audio}
SMALL: dict[str, Builder] = {"kws_cnn": kws_cnn}
