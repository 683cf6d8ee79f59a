"""Run a conversion tool so that it dies with the conversion, even when the conversion is SIGKILLed.

Started by :func:`converters.cleanup.run_tool` as ``python -I -S _tool_guard.py PARENT_PID CMD...`` in a new
process group. It asks the kernel for SIGTERM when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``;
elsewhere it polls ``getppid``), starts the tool in its own group and waits for it; if the parent goes first,
it SIGKILLs the whole group: itself, the tool and the tool's own children (onnx2tf runs onnxsim, for one).
A PR_SET_PDEATHSIG set directly on the tool would not reach the tool's children, hence this small parent.
Standard library only, no site-packages: it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1


def _kill_group(signum: int = 0, frame: object = None) -> None:
    os.killpg(0, signal.SIGKILL)


def _ask_for_parent_death_signal() -> bool:
    """Linux: SIGTERM to us when the parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def main(argv: list[str]) -> int:
    parent, cmd = int(argv[1]), argv[2:]
    if hasattr(signal, "pthread_sigmask"):  # a conversion blocks them in its threads, and we inherit that mask
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    signal.signal(signal.SIGTERM, _kill_group)
    signal.signal(signal.SIGHUP, _kill_group)
    watched_by_kernel = _ask_for_parent_death_signal()
    if os.getppid() != parent:  # the parent died before we asked
        _kill_group()
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            os.write(2, f"{cmd[0]}: {e.strerror}\n".encode())
        os._exit(127)
    while True:
        if watched_by_kernel:
            _, status = os.waitpid(pid, 0)
        else:
            done, status = os.waitpid(pid, os.WNOHANG)
            if not done:
                if os.getppid() != parent:
                    _kill_group()
                time.sleep(0.2)
                continue
        code = os.waitstatus_to_exitcode(status)
        return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
