"""Class-name lists: the 1000 ImageNet-1k and 80 COCO classes shipped with the package, or a labels file."""

from __future__ import annotations

import functools
import os

from edge_sdk.errors import LabelsError


@functools.lru_cache(maxsize=4)
def _packaged(name: str) -> tuple[str, ...]:
    try:  # the package's own folder: importlib.resources would import zipfile & co. on every CLI start
        with open(os.path.join(os.path.dirname(__file__), "data", name), encoding="utf-8") as f:
            text = f.read()
    except OSError:  # installed as a zip
        from importlib import resources

        text = resources.files("edge_sdk").joinpath("data", name).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def imagenet_labels() -> list[str]:
    """The ImageNet-1k class names in index order (0 = tench, 285 = Egyptian cat, 999 = toilet tissue)."""
    return list(_packaged("imagenet_labels.txt"))


def coco80_labels() -> list[str]:
    """COCO's 80 detection class names in the index order YOLO models use (0 = person, 2 = car, 79 = toothbrush);
    the file is ``edge_sdk/data/coco80_labels.txt``."""
    return list(_packaged("coco80_labels.txt"))


def load_labels(path: str | os.PathLike[str]) -> list[str]:
    """Read a labels file: one class name per line, in index order (blank trailing lines ignored)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in f]
    except FileNotFoundError:
        raise LabelsError(f"labels file {os.fspath(path)} does not exist; give a text file, one name a line") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LabelsError(f"cannot read labels file {os.fspath(path)}: {e}; it must be UTF-8 text") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise LabelsError(f"labels file {os.fspath(path)} is empty; it needs one class name per line")
    return [line.strip() for line in lines]
