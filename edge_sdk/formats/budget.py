"""Memory budget for untrusted model files: what a file *declares* it needs, checked before a runtime sees it.

A few bytes of model can declare a tensor of ``[1, 1000000000]`` floats; the runtime then
allocates 4 GB while loading or on the first run. The format checkers add up what each file
declares (tensor shapes times element sizes, bytes read from a ``.bin`` or external data) and
refuse a file whose single tensor or total passes the budget, naming the tensor, its shape,
its size and how to raise the limit.

The budget is, in order: the ``max_memory=`` argument of ``edge_sdk.load`` / ``summarize`` /
``inspect_file``; the ``EDGE_SDK_MAX_MODEL_MEMORY`` environment variable (bytes, or with a
``K``/``M``/``G``/``T`` suffix, e.g. ``12G``; ``off`` for none); else half of this machine's
memory (the smaller of physical memory and the cgroup limit), because a model that needs more
than that cannot run next to anything else.

What counts: each declared tensor alone; the tensors one operator (or the graph's inputs and
outputs) needs at the same time; outputs sized by a constant shape input (ConstantOfShape,
FILL, Broadcast, ...); and the total of weights the runtime holds (ONNX initializers and
external data, OpenVINO ``.bin`` bytes). Activations are not summed over the whole graph:
runtimes reuse their memory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from edge_sdk.errors import ModelFileError, ModelTooLargeError

ENV_VAR = "EDGE_SDK_MAX_MODEL_MEMORY"
#: used when the machine's memory cannot be read
FALLBACK_BYTES = 4 * 1024**3
#: ``EDGE_SDK_MAX_MODEL_MEMORY=off``: no budget (trusted files only)
UNLIMITED = 1 << 62
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``"8G"`` / ``"512M"`` / ``"1000000"`` -> bytes; raises ValueError on anything else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not m:
        raise ValueError(f"not a size: {text!r} (use bytes or a K/M/G/T suffix, e.g. 8G)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def machine_memory() -> int | None:
    """Physical memory in bytes, lowered to the cgroup v2 limit when one is set; None if unknown."""
    total = None
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total or int(limit), int(limit))
    except OSError:
        pass
    return total if total and total > 0 else None


def default_budget() -> int:
    """The budget when the caller gives none: ``$EDGE_SDK_MAX_MODEL_MEMORY``, else half the machine's memory."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env.lower() in ("off", "none", "unlimited"):
        return UNLIMITED
    if env:
        try:
            return parse_size(env)
        except ValueError as e:
            raise ModelFileError(f"{ENV_VAR}: {e}") from None
    mem = machine_memory()
    return mem // 2 if mem else FALLBACK_BYTES


def human(n: int | float) -> str:
    """Bytes as ``"3.7 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # unreachable


def shape_str(shape: Iterable[object]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass
class MemoryBudget:
    """What one file declares, tallied against ``limit`` bytes; raises :class:`ModelTooLargeError` past it."""

    path: Path
    limit: int
    total: int = 0
    parts: list[str] = field(default_factory=list)

    @classmethod
    def for_file(cls, path: Path, limit: int | None) -> MemoryBudget:
        return cls(path, default_budget() if limit is None else int(limit))

    def _refuse(self, what: str) -> None:
        raise ModelTooLargeError(
            f"{self.path.name}: {what}, above the memory budget of {human(self.limit)} ({self.limit} bytes); "
            f"a corrupt or hostile file, or a model too big for this machine. To load it on purpose, pass "
            f"max_memory=<bytes> to edge_sdk.load or set {ENV_VAR} (e.g. {ENV_VAR}=64G)"
        )

    def tensor(self, what: str, shape: Iterable[object], dtype: str, nbytes: int, *, add: bool = True) -> None:
        """Check one tensor (``what`` names it) and add it to the total unless ``add=False``."""
        if nbytes > self.limit:
            self._refuse(f"{what} declares shape {shape_str(shape)} of {dtype}: {human(nbytes)} ({nbytes} bytes)")
        if add:
            self.add(nbytes, what)

    def together(self, tensors: Iterable[tuple[str, int]], what: str) -> None:
        """Tensors that must exist at the same time (one operator's inputs and outputs) must fit together.

        ``tensors`` are ``(description, bytes)`` pairs; the message names the largest.
        """
        tensors = list(tensors)
        total = sum(n for _, n in tensors)
        if total > self.limit:
            desc, n = max(tensors, key=lambda t: t[1])
            self._refuse(f"{what} need {human(total)} ({total} bytes) at the same time (largest: {desc}, {human(n)})")

    def add(self, nbytes: int, what: str) -> None:
        """Add bytes the runtime will hold; refuse once the file's total passes the budget."""
        self.total += nbytes
        if self.total > self.limit:
            self._refuse(f"declared tensors and weights add up to {human(self.total)} ({self.total} bytes, at {what})")


def numel(dims: Iterable[int]) -> int:
    """Element count of a shape; dynamic (negative) dims count as 1, because that is what gets allocated first."""
    n = 1
    for d in dims:
        if d > 0:
            n *= d
        elif d == 0:
            return 0
    return n
