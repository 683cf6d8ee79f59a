"""Keep third-party runtimes quiet unless the user asks to see them (``--verbose``)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import IO, Iterator

_NOISY_LOGGERS = ("tensorflow", "absl", "nncf", "openvino", "onnxruntime", "tf2onnx", "h5py", "jax")


def quiet_third_party(verbose: bool = False) -> None:
    """Set the env vars and log levels that silence TF/absl/NNCF/ORT chatter (idempotent)."""
    if verbose:
        os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")  # "[ WARN:0@0.1] global cap.cpp ..." before our error line
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET: FFmpeg's "moov atom not found"
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class CapturedStderr:
    """Text a native library wrote to file descriptor 2 inside :func:`native_stderr`."""

    text: str = ""

    def last_line(self) -> str:
        lines = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        return lines[-1] if lines else ""


@contextlib.contextmanager
def native_output(verbose: bool = False) -> Iterator[CapturedStderr]:
    """Like :func:`native_stderr`, and fd 1 too: converters (TF, NNCF's rich bars) print on both."""
    if verbose:
        yield CapturedStderr()
        return
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        with native_stderr() as captured:
            yield captured
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        with native_stderr() as captured:
            yield captured
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def native_stderr(verbose: bool = False) -> Iterator[CapturedStderr]:
    """Capture what C++ runtimes print on fd 2 (e.g. "Created TensorFlow Lite XNNPACK delegate").

    Python's ``sys.stderr`` cannot silence native code, so fd 2 is pointed at a temp
    file for the duration. The text is kept so a failure can quote the runtime's reason.
    """
    captured = CapturedStderr()
    if verbose:
        yield captured
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters)
        yield captured
        return
    with _held_logs(), _scratch_file() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.text = tmp.read().decode("utf-8", errors="replace")


@contextlib.contextmanager
def _held_logs() -> Iterator[None]:
    """Hold the SDK's own log records while fd 2 is captured, then emit them: its warnings (a fallback that spent
    its budget, an int8 artifact slower than fp32) are for the user, not for the captured runtime chatter."""
    log = logging.getLogger("edge_sdk")
    held: list[logging.LogRecord] = []

    class _Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(record)

    handler, propagate = _Hold(), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate
        for record in held:
            log.handle(record)


def _scratch_file() -> IO[bytes]:
    """An anonymous file for captured output: in memory (``memfd_create``, Linux) without importing ``tempfile``
    (and the shutil, random, bz2, lzma it imports) on every model load; a temporary file elsewhere."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        try:
            return open(memfd_create("edge_sdk_native_stderr"), "w+b")  # noqa: SIM115 - the caller closes it
        except OSError:  # a kernel or sandbox without memfd
            pass
    import tempfile

    return tempfile.TemporaryFile(mode="w+b")
