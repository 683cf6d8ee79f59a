"""How a conversion is stopped: SIGTERM / SIGINT taken by a thread of its own (not a handler run in the middle of the
conversion's Python code, which crashed CPython 3.11), and children that can still be stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from converters.cleanup import run_tool

STOP_IN_PYTHON_CODE = r"""
import os, signal, sys, threading
from pathlib import Path
from converters.cleanup import exit_cleanly_on_signals, track

work = Path(sys.argv[1])
with exit_cleanly_on_signals():
    work.mkdir()
    track(work)
    masks = {}
    t = threading.Thread(target=lambda: masks.update(worker=signal.pthread_sigmask(signal.SIG_BLOCK, [])))
    t.start(); t.join()
    masks["main"] = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    print(*(f"{k}:{int(signal.SIGTERM in m)}{int(signal.SIGINT in m)}" for k, m in sorted(masks.items())), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    n = 0
    while True:  # the conversion's own Python code goes on until the stop thread ends the process
        n = (n + 1) % 1000
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_a_stop_is_taken_by_a_thread_of_its_own_not_in_the_conversions_python_code(tmp_path):
    """A Python handler interrupting the conversion's own code (NNCF's graph code, mid-GC) sometimes crashed
    CPython 3.11 with SIGSEGV, leaving the staged folder behind: the stop signals are blocked in the conversion's
    threads (and in those they start: the runtimes' workers) and taken by a waiting thread, which cleans up."""
    work = tmp_path / "stage"
    p = subprocess.run([sys.executable, "-c", STOP_IN_PYTHON_CODE, str(work)], capture_output=True, text=True,
                       timeout=120, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert p.stdout.split() == ["main:11", "worker:11"], p.stderr  # blocked in the main thread and its threads
    assert p.returncode == 128 + signal.SIGTERM, p.stderr
    assert "edge-sdk: stopped by SIGTERM; no partial files left" in p.stderr
    assert not work.exists(), "the tracked folder was left behind"


def test_a_tool_started_during_a_conversion_can_be_stopped(tmp_path):
    """A child inherits its parent's blocked signals: the tool guard unblocks them, or a tool would ignore the
    SIGTERM the kernel sends when the conversion dies (and outlive it)."""
    from converters.cleanup import exit_cleanly_on_signals

    show = "import signal as s; m = s.pthread_sigmask(s.SIG_BLOCK, []); print(s.SIGTERM in m, s.SIGINT in m)"
    with exit_cleanly_on_signals():
        out = run_tool([sys.executable, "-c", show], timeout=120).stdout.split()
    assert out == ["False", "False"]
