"""Install hints in our errors: never a CUDA torch, never a second OpenCV; the missing package is named."""

from __future__ import annotations

import re
from pathlib import Path

CONVERT_HINT = 'pip install "edge-sdk[convert]" --extra-index-url https://download.pytorch.org/whl/cpu'


def test_install_hints_never_pull_a_cuda_torch():
    from edge_sdk.errors import MissingExtraError, ZooPackageMissingError

    assert str(ZooPackageMissingError("zoo model 'x'", "torch")).endswith(
        'pip install "edge-sdk[zoo]" --extra-index-url https://download.pytorch.org/whl/cpu torch'
    )
    assert str(ZooPackageMissingError("sample images", "scikit-image")).endswith(
        'pip install "edge-sdk[zoo]" scikit-image'
    )
    assert str(MissingExtraError("this command", "convert", "torch")).endswith(CONVERT_HINT)


def test_no_install_hint_adds_a_second_opencv_or_a_bare_torch():
    root = Path(__file__).resolve().parents[1]
    bad = []
    for py in [*root.glob("edge_sdk/**/*.py"), *root.glob("converters/**/*.py"), *root.glob("devices/**/*.py")]:
        lines = py.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            context = " ".join(lines[max(0, n - 2) : n])  # a message split over two source lines
            if re.search(r"pip install (opencv-python|\"?torch)", line) and "uninstall" not in context:
                bad.append(f"{py.relative_to(root)}:{n}: {line.strip()}")
    assert not bad, bad
