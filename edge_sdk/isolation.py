"""Probe a model in a child process, so a native crash, a hang or a memory blow-up cannot take the caller down.

Native runtimes parse model files in C++; a hostile or corrupt file can make them segfault,
abort, spin or allocate without bound, which no ``try`` catches. :func:`probe` runs the same
work in a fresh interpreter (``python -m edge_sdk.isolation``) under an address-space limit
(``RLIMIT_AS``, set before any runtime is imported) and a timeout, and turns a signal, a
timeout, a memory failure or an error there into a typed ``edge_sdk`` error here.

Two kinds of probe: ``"load"`` (load + one warm-up inference, what ``bench``/``run``/``safe=True``
do next) and ``"info"`` (the summary ``edge-sdk info`` prints, then a load or the coverage query).
Only what the caller could not survive in-process fails a probe: a crash, a hang, memory, and the
errors the caller's own next step would raise anyway (a load that fails, a summary that fails).
A warm-up on zeros that the runtime rejects, or an ``info`` load of a file whose runtime is not
installed, is only a note: the real call may feed real data, and ``info`` never loads.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from edge_sdk import errors
from edge_sdk.formats import ModelFile

log = logging.getLogger("edge_sdk")

DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_ENV = "EDGE_SDK_PROBE_TIMEOUT"
MEMORY_ENV = "EDGE_SDK_PROBE_MEMORY"
#: the address-space limit never defaults below this: runtimes reserve far more than they touch
#: (measured: ONNX Runtime 0.34 GiB with 2 threads, 1.3 GiB with 16; OpenVINO 0.7 GiB)
MIN_MEMORY_BYTES = 4 * 1024**3
_OFF = ("0", "off", "none", "no", "unlimited")
#: texts by which the runtimes (and Python, and the C++ library) report a failed allocation
_MEMORY_MARKERS = (
    "memoryerror",
    "bad_alloc",
    "bad allocation",
    "cannot allocate memory",
    "failed to allocate",
    "out of memory",
    "std::length_error",
)
_STEPS = {
    "summary": "reading",
    "load": "loading",
    "warmup": "running a warm-up inference of",
    "coverage": "checking operator coverage of",
}


@dataclass
class ProbeResult:
    """What a probe that passed saw: seconds, peak address space, and notes (a warm-up that failed on zeros)."""

    seconds: float
    peak_vm_bytes: int | None
    memory_limit: int | None
    notes: list[str] = field(default_factory=list)


def probe_timeout(value: float | str | None = None) -> float:
    """The probe's timeout in seconds: ``value``, else ``$EDGE_SDK_PROBE_TIMEOUT``, else 300."""
    raw = value if value is not None else os.environ.get(TIMEOUT_ENV, "").strip() or DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
        if not seconds > 0:
            raise ValueError
    except ValueError:
        raise errors.BackendOptionError(
            f"probe timeout {raw!r} is not a positive number of seconds ({TIMEOUT_ENV} / --probe-timeout)"
        ) from None
    return seconds


def probe_memory_limit(value: int | str | None = None, *, budget: int | None = None) -> int | None:
    """The probe's address-space limit in bytes (None: no limit).

    ``value`` (bytes or ``"8G"``; ``0``/``"off"``: none), else ``$EDGE_SDK_PROBE_MEMORY``, else
    ``max(4 GiB, 2 x budget)`` where ``budget`` is the memory budget of declared tensors
    (``edge_sdk.formats.budget``: ``$EDGE_SDK_MAX_MODEL_MEMORY`` or half the machine's memory),
    so a model the content checks accept has room for its weights twice plus the runtime.
    """
    from edge_sdk.formats.budget import default_budget, parse_size

    raw = value if value is not None else os.environ.get(MEMORY_ENV, "").strip() or None
    if raw is None:
        return max(MIN_MEMORY_BYTES, 2 * (budget if budget is not None else default_budget()))
    if str(raw).strip().lower() in _OFF:
        return None
    try:
        limit = raw if isinstance(raw, int) else parse_size(str(raw))
    except ValueError as e:
        raise errors.BackendOptionError(f"probe memory limit ({MEMORY_ENV} / --probe-memory): {e}") from None
    return limit or None


def probe(
    model_file: ModelFile,
    backend: str | None,
    *,
    kind: str = "load",
    device: str = "auto",
    threads: int | None = None,
    options: Mapping[str, Any] | None = None,
    input_shapes: Mapping[str, Any] | None = None,
    timeout_s: float | None = None,
    memory_limit: int | None = None,
    runtime: str | None = None,
) -> ProbeResult:
    """Run the ``kind`` probe of ``model_file`` in a child process; raise a typed error if it fails there.

    ``backend``, ``device``, ``threads`` and ``options`` are passed to ``load`` in the child as the
    caller will pass them (``backend=None``: the device plan picks); ``runtime`` names the runtime
    the plan picks, for messages. ``memory_limit`` is in bytes (None: no limit).
    """
    timeout_s = probe_timeout(timeout_s)
    name = model_file.path.name
    try:
        request = json.dumps(
            {
                "kind": kind,
                "path": str(model_file.path),
                "backend": backend,
                "device": device,
                "threads": threads,
                "options": dict(options or {}),
                "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()},
                "memory_limit": memory_limit,
                "parent": os.getpid(),
            }
        )
    except TypeError as e:
        raise errors.BackendOptionError(f"the isolated probe needs JSON-serialisable backend options: {e}") from None
    what = runtime or backend or "the runtime"
    import subprocess  # here: a CLI start that finds its verdict cached never spawns a probe

    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edge_sdk.isolation"],
            input=request,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as e:
        step = _last_step(_text(e.stdout))
        raise errors.ResourceLimitError(
            f"{what} did not finish {_STEPS.get(step, 'loading')} {name} in {timeout_s:g} s in an isolated process "
            f"(a hostile or corrupt file, or a model that needs longer); to wait longer set {TIMEOUT_ENV}=SECONDS "
            "(CLI: --probe-timeout S), or skip the probe for a trusted file (CLI: --no-probe)"
        ) from None
    seconds = time.perf_counter() - t0
    lines = _json_lines(proc.stdout)
    reply = next((m for m in reversed(lines) if "ok" in m), None)
    step = _last_step(proc.stdout)
    log.debug("isolated probe of %s: exit %s, stderr: %s", name, proc.returncode, proc.stderr[-2000:])
    if reply is None:
        if _mentions_memory(proc.stderr):
            raise errors.ResourceLimitError(
                _memory_message(name, what, step, memory_limit, _memory_detail(proc.stderr))
            )
        if proc.returncode < 0:
            sig = _signal_name(-proc.returncode)
            if sig == "SIGKILL":
                raise errors.ResourceLimitError(
                    f"{what} was killed (SIGKILL) while {_STEPS.get(step, 'loading')} {name} in an isolated process, "
                    "most likely by the system for lack of memory; free memory or skip the file"
                )
            raise errors.ModelLoadError(
                f"{what} crashed ({sig}) while {_STEPS.get(step, 'loading')} {name} in an isolated process; "
                "the file is corrupt or hostile, or the runtime has a bug"
            )
        raise errors.ModelLoadError(
            f"isolated probe of {name} exited with code {proc.returncode}: {_stderr_reason(proc.stderr)}"
        )
    if not reply.get("ok"):
        if reply.get("memory"):
            detail = str(reply.get("message") or "")
            raise errors.ResourceLimitError(_memory_message(name, what, step, memory_limit, detail))
        raise errors.error_from_dict(reply, f"isolated probe of {name} failed")
    return ProbeResult(seconds, reply.get("peak_vm_bytes"), memory_limit, list(reply.get("notes") or []))


def _memory_message(name: str, what: str, step: str | None, limit: int | None, detail: str) -> str:
    from edge_sdk.formats.budget import human

    doing = _STEPS.get(step or "", "loading")
    detail = f" ({detail})" if detail.strip() else ""
    if limit is None:
        return (
            f"{what} ran out of memory while {doing} {name} in an isolated process{detail}; "
            "the model needs more memory than this machine has free (a hostile or corrupt file, or a model too big)"
        )
    return (
        f"{name} needs more memory than the isolated probe's limit of {human(limit)} (address space): {what} "
        f"failed to allocate while {doing} it{detail}. A hostile or corrupt file, or a model too big for the limit; "
        f"to allow more set {MEMORY_ENV}={_suggest(limit)} (CLI: --probe-memory {_suggest(limit)}), "
        "or skip the probe for a trusted file (CLI: --no-probe)"
    )


def _memory_detail(text: str) -> str:
    """The runtime's words about the failed allocation, without the source locations before them."""
    low = text.lower()
    hits = [i for i in (low.find(m) for m in _MEMORY_MARKERS) if i >= 0]
    if not hits:
        return errors.first_line(Exception(text), 200)
    i = min(hits)
    start = max(text.rfind(") ", 0, i) + 2, text.rfind(": ", 0, i) + 2, text.rfind("\n", 0, i) + 1, 0)
    if low.startswith("memoryerror", i):
        start = i
    end = text.find("\n", i)
    return text[start : end if end >= 0 else len(text)].strip()[:200]


def _suggest(limit: int) -> str:
    return f"{max(1, -(-2 * limit // 1024**3))}G"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def _last_step(text: str) -> str | None:
    steps = [m["step"] for m in _json_lines(text) if "step" in m]
    return steps[-1] if steps else None


def _mentions_memory(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in _MEMORY_MARKERS)


def _stderr_reason(stderr: str) -> str:
    """The last informative line of a child's stderr (a Python traceback ends with the exception)."""
    lines = [ln.strip() for ln in (stderr or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


# --------------------------------------------------------------------------- the child


def _limit_address_space(limit: int) -> None:
    """Cap this process's address space (soft and hard: the model's code cannot raise it back)."""
    try:
        import resource

        for inherited in resource.getrlimit(resource.RLIMIT_AS):  # never above a limit the caller runs under
            if inherited != resource.RLIM_INFINITY:
                limit = min(limit, inherited)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError) as e:  # no RLIMIT_AS (macOS refuses it, Windows): the timeout holds
        print(f"edge_sdk probe: no address-space limit on this platform ({e})", file=sys.stderr)


def _die_with_parent(parent: int | None) -> None:
    """Linux: SIGKILL this child when the parent dies, so a killed CLI leaves no probe running."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _peak_vm() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _is_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or _mentions_memory(f"{type(exc).__name__}: {exc}")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (a typed error may wrap the runtime's)."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def _note(step: str, exc: Exception, notes: list[str]) -> None:
    """Record a failure the caller's next step would not necessarily hit; memory failures are re-raised."""
    if _is_memory(exc):
        raise exc
    notes.append(f"{step}: {type(exc).__name__}: {errors.first_line(exc)}")


def _warm(model: Any, shapes: Mapping[str, list[int]]) -> None:
    import numpy as np

    feeds = {s.name: np.zeros(tuple(shapes.get(s.name) or s.concrete_shape()), dtype=s.dtype) for s in model.inputs}
    model.run(feeds)


def _work(request: dict[str, Any], say: Callable[..., None], notes: list[str]) -> None:
    from edge_sdk.loader import load

    path, backend, device = request["path"], request["backend"], request["device"]
    if request["kind"] == "info":
        from edge_sdk.summary import summarize

        say(step="summary")
        summarize(path)
        if device != "auto":
            from edge_sdk.coverage import coverage

            say(step="coverage")
            coverage(path, device, backend=backend)
        else:
            say(step="load")
            try:
                load(path, backend=backend).close()
            except Exception as e:  # info never loads: only a crash or memory counts here
                _note("load", e, notes)
        return
    say(step="load")
    model = load(path, backend=backend, device=device, threads=request["threads"], **request["options"])
    try:
        say(step="warmup")
        try:
            _warm(model, request.get("input_shapes") or {})
        except Exception as e:  # zeros may not be valid input; the real run feeds real data
            _note("warm-up", e, notes)
    finally:
        model.close()


def _child() -> int:
    request = json.loads(sys.stdin.read())
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the runtimes print goes to stderr; stdout carries only our JSON lines

    def say(**message: Any) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    _die_with_parent(request.get("parent"))
    if request.get("memory_limit"):
        _limit_address_space(int(request["memory_limit"]))
    notes: list[str] = []
    try:
        _work(request, say, notes)
    except Exception as e:  # typed errors keep their class; anything else is a load failure
        memory = next((x for x in _chain(e) if _is_memory(x)), None)
        if memory is not None:  # the runtime's own words, before any one-line shortening
            say(ok=False, memory=True, message=_memory_detail(f"{type(memory).__name__}: {memory}"))
        else:
            say(ok=False, **errors.error_to_dict(e))
        return 0
    say(ok=True, notes=notes, peak_vm_bytes=_peak_vm())
    return 0


if __name__ == "__main__":
    from edge_sdk._stop_signals import unblock_stop_signals

    unblock_stop_signals()  # started during a conversion, which blocks them: a stop must still end this child
    sys.exit(_child())
