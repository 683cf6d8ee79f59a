"""What a stopped conversion must undo: temp files and folders it has not yet renamed or removed, and the
tool processes (tf2onnx, onnx2tf, onnxsim) it is waiting on.

The CLI wraps ``convert`` in :func:`exit_cleanly_on_signals`: on SIGTERM or Ctrl-C the handler kills those
children, removes those paths and ends the process at once. Raising KeyboardInterrupt from the handler is
not enough: a library that swallows it (a broad ``except``, or a ``__del__`` it lands in) lets the run go on
and write its manifest, which CI caught.

SIGKILL cannot be caught, so two things do not depend on a handler: a tool runs under
``converters/_tool_guard.py``, which kills the tool's whole process group when we die; and every temp path
carries its owner's :func:`owner_tag` (pid, start time, pid namespace), so the next run can tell a dead run's
leftovers from a live run's (:func:`converters.atomic.remove_stale_temp_files`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Iterator

from edge_sdk._stop_signals import STOP_SIGNALS, unblock_stop_signals

_LIVE_PATHS: set[Path] = set()
_NEW_FOLDERS: list[Path] = []  # created by this run, removed on a stop when empty (deepest first)
_LIVE_CHILDREN: set[subprocess.Popen] = set()
#: held while a path is made and tracked (or made and removed again), and by a stop from then on: the stop runs
#: on its own thread beside the conversion, which must not make a path the stop would not know to remove
_PATHS_LOCK = threading.RLock()
_GUARD = Path(__file__).with_name("_tool_guard.py")
_DISK_FULL_TEXT = re.compile(r"No space left on device|Disk quota exceeded")


@contextlib.contextmanager
def making_paths() -> Iterator[None]:
    """Make and :func:`track` paths inside this: a stop waits for it to end, and none starts after a stop."""
    with _PATHS_LOCK:
        yield


def track(path: Path) -> None:
    """Remove ``path`` if the process is stopped before :func:`untrack` (call right after creating it)."""
    _LIVE_PATHS.add(path)


def untrack(path: Path) -> None:
    """``path`` was renamed to its final name or removed: nothing to undo (call after that, not before)."""
    _LIVE_PATHS.discard(path)


def track_new_folders(folders: list[Path]) -> None:
    """Folders this run created (deepest first): a stop by a signal removes those still empty."""
    _NEW_FOLDERS.extend(folders)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ---- who owns a temp path -------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/<pid>/stat`` (state first), or None when there is no such process (or no /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def owner_tag() -> str:
    """``PID.START.NS`` for this process: its start time (clock ticks since boot, 0 without /proc) tells it from a
    later process that reuses the pid; the pid namespace keeps a container from judging another's pids."""
    fields = _proc_stat(os.getpid())
    start = int(fields[19]) if fields and len(fields) > 19 else 0
    return f"{os.getpid()}.{start}.{_pid_namespace()}"


def owner_alive(pid: int, start: int, namespace: int) -> bool:
    """Whether the process that made a tag with these numbers still runs (a zombie does not)."""
    if namespace != _pid_namespace():
        return True  # another pid namespace's process: we cannot tell, so it is not ours to remove
    if Path("/proc/self/stat").exists():
        fields = _proc_stat(pid)
        if not fields or fields[0] in ("Z", "X"):
            return False
        return start == 0 or (len(fields) > 19 and int(fields[19]) == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- tools ----------------------------------------------------------------------------------------------------
def run_tool(cmd: list[str], *, timeout: float | None = None, **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, ...)`` whose child dies with us.

    On POSIX the tool runs in its own process group under ``_tool_guard.py``: a timeout, a caught signal or our
    death (even SIGKILL: the guard gets the kernel's parent-death signal) kills the group, the tool's own
    children included. A tool that failed for lack of disk space raises ``OSError(ENOSPC)``, which the
    conversion turns into a :class:`DiskFullError` naming the folder.
    """
    _check_executable(cmd[0], kwargs.get("env"), kwargs.get("cwd"))
    guarded = hasattr(os, "killpg") and os.name == "posix"
    full = [sys.executable, "-I", "-S", str(_GUARD), str(os.getpid()), *cmd] if guarded else cmd
    with subprocess.Popen(
        full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        start_new_session=guarded, **kwargs,
    ) as proc:  # fmt: skip
        _LIVE_CHILDREN.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:  # timeout or interrupt: the tool does not outlive the call
            kill_tool(proc)
            proc.wait()
            raise
        finally:
            _LIVE_CHILDREN.discard(proc)
    if proc.returncode != 0 and _DISK_FULL_TEXT.search(f"{err or ''}\n{(out or '')[-20000:]}"):
        raise OSError(errno.ENOSPC, f"No space left on device ({Path(cmd[0]).name} {' '.join(cmd[1:3])} failed)")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def kill_tool(proc: subprocess.Popen) -> None:
    """SIGKILL a tool started by :func:`run_tool` and everything in its process group (not yet reaped)."""
    with contextlib.suppress(OSError):
        if proc.returncode is None and hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()


def _check_executable(exe: str, env: dict[str, str] | None, cwd: Any) -> None:
    """Raise FileNotFoundError as Popen would for a missing program (the guard would only exit 127)."""
    if os.sep in exe:
        path = Path(cwd or ".") / exe
        found = path.is_file() and os.access(path, os.X_OK)
    else:
        found = shutil.which(exe, path=(env or os.environ).get("PATH", os.defpath)) is not None
    if not found:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", exe)


_RESTORE_IN_CHILD: dict[int, Any] = {}  # while a handler is installed: what a forked child gets back
_FORK_HOOK = False


def _restore_in_forked_child() -> None:
    """A forked child (a library's multiprocessing worker: OpenVINO's telemetry sender, for one) must not run
    our handler: it would remove the parent's temp files; and a Python handler never runs in a child stuck in C
    code (a lock inherited in the fork), so its ``terminate()`` would never end it and the parent would wait.
    It gets the stop signals unblocked too (the fork copied the parent's blocked mask)."""
    for sig, old in _RESTORE_IN_CHILD.items():
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(sig, old)
    if _RESTORE_IN_CHILD:
        unblock_stop_signals()
    _RESTORE_IN_CHILD.clear()


@contextlib.contextmanager
def exit_cleanly_on_signals() -> Iterator[None]:
    """While inside: SIGTERM or Ctrl-C kills the tools we wait on, removes live temp paths and exits at once
    (status 128 + signal) with one line on the terminal's stderr. The previous handlers come back after, and
    in a process forked meanwhile.

    Where it can (POSIX, from the main thread), the signals are blocked in this thread, and so in every thread
    it starts meanwhile (the runtimes' and quantizers' workers), and taken by a thread of ours that waits for
    them (``sigtimedwait``): no Python handler runs in the middle of the conversion's own Python code. One did,
    and CPython 3.11 sometimes crashed building the interrupted frame for it (SIGSEGV in NNCF's graph code, 10 of
    33 stops 5-7 s into an OpenVINO int8 conversion of MNASNet, leaving a staged folder behind). The Python
    handler stays installed for a signal that still reaches a thread started before."""
    global _FORK_HOOK
    stderr = os.dup(2)  # the terminal's, kept: conversions point fd 2 at /dev/null to quiet native tools
    owner = os.getpid()

    def stop(signum: int) -> None:
        _PATHS_LOCK.acquire()  # kept until the exit: the conversion, still running beside, makes no new path
        for proc in list(_LIVE_CHILDREN):
            kill_tool(proc)
        for attempt in range(20):  # a file still being written in a staged folder can make one pass miss it
            for path in list(_LIVE_PATHS):
                remove(path)
            for folder in list(_NEW_FOLDERS):  # an output folder made for this run, left empty by the stop
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if not any(p.exists() for p in (*_LIVE_PATHS, *_NEW_FOLDERS)) or attempt == 19:
                break
            time.sleep(0.05)
        os.write(stderr, f"edge-sdk: stopped by {signal.Signals(signum).name}; no partial files left\n".encode())
        os._exit(128 + signum)

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:  # a forked child that missed the reset: end it as the signal would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stop(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    _RESTORE_IN_CHILD.update(previous)
    if not _FORK_HOOK and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_restore_in_forked_child)
        _FORK_HOOK = True
    waiter = _SignalWaiter(stop) if _SignalWaiter.possible() else None
    try:
        yield
    finally:
        if waiter is not None:
            waiter.close()  # a signal that came after its last wait is delivered to ``handler`` here
        _RESTORE_IN_CHILD.clear()
        for sig, old in previous.items():
            signal.signal(sig, old)
        os.close(stderr)


class _SignalWaiter:
    """Blocks :data:`STOP_SIGNALS` in the calling (main) thread and takes them in a daemon thread of its own."""

    @staticmethod
    def possible() -> bool:
        import threading

        return (
            hasattr(signal, "pthread_sigmask")
            and hasattr(signal, "sigtimedwait")
            and threading.current_thread() is threading.main_thread()
        )

    def __init__(self, stop: Any) -> None:
        import threading

        self._stop, self._done = stop, threading.Event()
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self._thread = threading.Thread(target=self._wait, name="edge-sdk-stop-signals", daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        while not self._done.is_set():
            info = signal.sigtimedwait(STOP_SIGNALS, 0.2)
            if info is not None:
                self._stop(info.si_signo)

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
