"""Base class of CLI verbs and the shared output helpers (table for people, JSON for machines)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Sequence

log = logging.getLogger("edge_sdk.cli")


class Command:
    """One ``edge-sdk`` verb. Subclasses keep imports of heavy modules inside :meth:`run`."""

    name: ClassVar[str]
    help: ClassVar[str]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:  # pragma: no cover - trivial
        """Declare the verb's own arguments (``--json`` and ``--verbose`` are added for every verb)."""

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


#: whether this process wrote its JSON document (not a line of a stream) on stdout: an error after it (a verb
#: that reports, then exits non-zero) is not written as a second document (``edge_sdk.cli.main``)
DOCUMENT_WRITTEN = False


def emit_json(data: Any, *, one_line: bool = False) -> None:
    """``data`` as one strict JSON document on stdout (infinite/NaN floats as "inf", "-inf", "nan" strings,
    as ``edge-sdk diff`` writes them: ``Infinity`` is not JSON, and jq and browsers reject it); ``one_line``
    when stdout is a stream of JSON lines (``run --sink -``) that this document ends."""
    global DOCUMENT_WRITTEN
    DOCUMENT_WRITTEN = DOCUMENT_WRITTEN or not one_line
    json.dump(finite_json(data), sys.stdout, indent=None if one_line else 2, default=str, allow_nan=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


def finite_json(data: Any) -> Any:
    """A copy of ``data`` (dicts, lists, tuples, dataclass dicts...) with non-finite floats as strings."""
    if isinstance(data, float):
        return data if math.isfinite(data) else ("nan" if math.isnan(data) else ("inf" if data > 0 else "-inf"))
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    if hasattr(data, "to_dict") and not isinstance(data, type):
        return finite_json(data.to_dict())
    if hasattr(data, "dtype") and hasattr(data, "tolist"):  # numpy scalars and arrays: numbers, not strings
        return finite_json(data.tolist())
    return data


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(r[i]) for r in cells[1:] if r[i]) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("x%"))
        return True
    except ValueError:
        return False


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def human_count(n: int | None) -> str:
    if n is None:
        return "n/a"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{suffix}"
    return str(n)


def parse_shapes(items: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    """``["input=1,3,224,224"]`` -> ``{"input": (1, 3, 224, 224)}``; raises CLIUsageError on bad text."""
    from edge_sdk.errors import CLIUsageError

    shapes: dict[str, tuple[int, ...]] = {}
    for item in items or ():
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.split(","))
            if any(d <= 0 for d in shape):
                raise ValueError
        except ValueError:
            raise CLIUsageError(f"--input-shape '{item}' is not NAME=D1,D2,...; e.g. input=1,3,224,224") from None
        shapes[name] = shape
    return shapes


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    """``--no-probe``/``--trust``, ``--probe-timeout``, ``--probe-memory``: for verbs that load untrusted files."""
    g = parser.add_argument_group(
        "isolated probe",
        "an untrusted model is first loaded in a child process under a time and memory limit, so a runtime that "
        "crashes, hangs or exhausts memory on it gives one error line instead of killing edge-sdk; a file that "
        "passed is remembered by its hash (EDGE_SDK_CACHE=0 turns that off)",
    )
    g.add_argument(
        "--no-probe",
        "--trust",
        dest="no_probe",
        action="store_true",
        help="skip the probe for a file you trust (a native crash in the runtime then ends edge-sdk)",
    )
    g.add_argument(
        "--probe-timeout",
        metavar="S",
        default=None,
        help="seconds the probe may take (default $EDGE_SDK_PROBE_TIMEOUT, else 300)",
    )
    g.add_argument(
        "--probe-memory",
        metavar="SIZE",
        default=None,
        help="address-space limit of the probe, e.g. 16G; 0 = none (default $EDGE_SDK_PROBE_MEMORY, else "
        "max(4G, 2 x the model memory budget, which is half this machine's memory))",
    )


def probe_model(
    args: argparse.Namespace,
    path: str | os.PathLike[str],
    *,
    kind: str = "load",
    backend: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    input_shapes: Mapping[str, Any] | None = None,
) -> None:
    """Probe ``path`` in an isolated child (or take the cached verdict) before the verb touches it in-process.

    Raises the probe's typed error; with ``--verbose`` logs what the probe did.
    """
    if getattr(args, "no_probe", False):
        log.info("probe: skipped for %s (--no-probe)", path)
        return
    from edge_sdk.probe_cache import probe_file

    verdict = probe_file(
        path,
        kind=kind,
        backend=backend,
        device=device,
        threads=threads,
        input_shapes=input_shapes,
        timeout_s=getattr(args, "probe_timeout", None),
        memory=getattr(args, "probe_memory", None),
    )
    log.info("%s", verdict.describe())


@contextlib.contextmanager
def no_new_folder_on_error(path: str | os.PathLike[str]) -> Iterator[None]:
    """Remove the folders a verb created for ``path`` (and its missing parents) if it fails while they are empty.

    A mistyped flag found after the output folder was made must not leave an empty folder behind;
    a folder that existed before, or that holds anything, is never touched.
    """
    target = Path(path).absolute()
    missing = [p for p in (target, *target.parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for p in missing:  # deepest first
            try:
                p.rmdir()  # only an empty folder goes
            except OSError:
                break
        raise


#: top-level module -> the edge-sdk extra that installs it (for a verb that meets it missing)
EXTRA_OF_MODULE: dict[str, str] = {
    **dict.fromkeys(
        (
            "torch",
            "tensorflow",
            "tf_keras",
            "keras",
            "onnx",
            "onnxscript",
            "tf2onnx",
            "nncf",
            "litert_torch",
            "torch_pruning",
            "ai_edge_quantizer",
            "ai_edge_litert",
            "openvino",
            "onnxruntime",
        ),
        "convert",
    ),  # fmt: skip
    "cv2": "camera",
    "paho": "camera",
    "sounddevice": "audio",
    "skimage": "zoo",
    "sklearn": "zoo",
}


def missing_extra(verb: str, error: ModuleNotFoundError) -> Exception | None:
    """A :class:`~edge_sdk.errors.MissingExtraError` naming the extra for a module a verb could not import,
    or None for a module no extra provides (a bug of ours, reported as such)."""
    from edge_sdk.errors import MissingExtraError

    top = (error.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return MissingExtraError("this command", extra, top)


def require_modules(verb: str, *modules: str) -> None:
    """Raise the MissingExtraError of the first of ``modules`` that is not installed (checked without importing
    it), so a verb stops with one line before any work or log."""
    import importlib.util

    for name in modules:
        try:
            found = sys.modules[name] is not None if name in sys.modules else importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise missing_extra(verb, ModuleNotFoundError(f"No module named '{name}'", name=name)) or ImportError(name)


#: exit status after a stop asked by a signal: SIGTERM (systemd, Docker) is a clean stop, SIGINT the shell's 130
SIGNAL_EXIT = {15: 0, 2: 130}


def stop_on_signals(target: Any, got: list[int]) -> Any:
    """SIGTERM / SIGINT call ``target.request_stop(name)`` (a pipeline or a service: it stops and finalises; the
    signal number goes into ``got``); a second one acts as the handler before ours would. Returns the function
    that puts the old handlers back (a no-op off the main thread, where handlers cannot be set)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        if not got:
            got.append(signum)
        target.request_stop(signal.Signals(signum).name)
        signal.signal(signum, previous[signum])

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)

    return restore
