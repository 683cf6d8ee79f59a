"""What a stopped conversion must undo: temp files and folders it has not yet renamed or removed, and the
tool processes (tf2onnx, onnx2tf, onnxsim) it is waiting on.

The CLI wraps ``convert`` in :func:`exit_cleanly_on_signals`: on SIGTERM or Ctrl-C the handler kills those
children, removes those paths and ends the process at once. Raising KeyboardInterrupt from the handler is
not enough: a library that swallows it (a broad ``except``, or a ``__del__`` it lands in) lets the run go on
and write its manifest, which CI caught.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from types import FrameType
from typing import Any, Iterator

_LIVE_PATHS: set[Path] = set()
_LIVE_CHILDREN: set[subprocess.Popen] = set()


def track(path: Path) -> None:
    """Remove ``path`` if the process is stopped before :func:`untrack` (call right after creating it)."""
    _LIVE_PATHS.add(path)


def untrack(path: Path) -> None:
    """``path`` was renamed to its final name or removed: nothing to undo (call after that, not before)."""
    _LIVE_PATHS.discard(path)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def run_tool(cmd: list[str], *, timeout: float | None = None, **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, ...)`` whose child is killed if we are stopped."""
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, **kwargs
    ) as proc:
        _LIVE_CHILDREN.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:  # timeout or interrupt: the tool does not outlive the call
            proc.kill()
            proc.wait()
            raise
        finally:
            _LIVE_CHILDREN.discard(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@contextlib.contextmanager
def exit_cleanly_on_signals() -> Iterator[None]:
    """While inside: SIGTERM or Ctrl-C kills the tools we wait on, removes live temp paths and exits at once
    (status 128 + signal) with one line on the terminal's stderr. The previous handlers come back after."""
    stderr = os.dup(2)  # the terminal's, kept: conversions point fd 2 at /dev/null to quiet native tools

    def handler(signum: int, frame: FrameType | None) -> None:
        for proc in list(_LIVE_CHILDREN):
            with contextlib.suppress(OSError):
                proc.kill()
        for path in list(_LIVE_PATHS):
            remove(path)
        os.write(stderr, f"edge-sdk: stopped by {signal.Signals(signum).name}; no partial files left\n".encode())
        os._exit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        os.close(stderr)
