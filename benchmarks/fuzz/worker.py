"""Persistent fuzz worker: imports the runtimes once, then runs cases one by one as a user would.

Started by ``runner.py`` as ``python worker.py '<json config>'``. It reads one JSON request per
line on stdin (``{"id": ..., "path": ...}``) and writes one JSON reply per case on the reply pipe
(the original stdout; fd 1 itself goes to /dev/null so runtime chatter cannot corrupt the
protocol) *before* it reads the next request, so when this process dies or hangs the parent knows
which case did it.

Each case: ``edge_sdk.load(path)``, ``model.run`` on zeros shaped like the inputs (dynamic dims
set to 1; skipped when the inputs would be huge), then ``edge_sdk.summary.summarize(path)``.
After warm-up the address space is capped (RLIMIT_AS) at what the worker uses plus the budget,
and each case's peak RSS is measured (VmHWM, reset per case through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import traceback

MEMORY_WORDS = ("bad_alloc", "cannot allocate memory", "out of memory", "failed to allocate", "memoryerror",
                "std::length_error", "allocation of")  # fmt: skip


def _status(key: str) -> int:
    """A ``/proc/self/status`` value in bytes (VmSize, VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()[:1000]
    return ""


def _where(exc: BaseException) -> str:
    """Innermost frame in edge_sdk (and the innermost frame overall) of an exception's traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/edge_sdk/" in f.filename]
    parts = []
    if ours:
        f = ours[-1]
        parts.append(f"{f.filename.split('/edge_sdk/')[-1]}:{f.lineno} {f.name}")
    if frames and (not ours or frames[-1] is not ours[-1]):
        f = frames[-1]
        parts.append(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}")
    return " <- ".join(parts)


def _impossible_request(text: str) -> bool:
    """The runtime was asked for more bytes than this machine has (ONNX Runtime: ``... of size 4000000000000000000``,
    OpenVINO: ``Failed to allocate 128000000896 bytes``):
    nothing was allocated, so it is not an allocation past the budget."""
    sizes = [int(x) for x in re.findall(r"(?:size|allocate) (\d+)", text)]
    phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return bool(sizes) and min(sizes) > phys


def _outcome(step: str, exc: BaseException | None, errors_mod) -> dict:
    if exc is None:
        return {"step": step, "outcome": "ok"}
    msg = _first_line(str(exc)) or type(exc).__name__
    chain, seen = [], exc
    while seen is not None and len(chain) < 5:  # typed errors raised "from None" still keep __context__
        chain.append(f"{type(seen).__name__} {seen}")
        seen = seen.__cause__ or seen.__context__
    full = " | ".join(chain).lower()
    if isinstance(exc, MemoryError) or any(w in full for w in MEMORY_WORDS):
        kind = "memory"
        if isinstance(exc, errors_mod.EdgeSDKError) and _impossible_request(full):
            kind = "typed"  # a request this machine could never grant, refused with a typed error
            msg = f"(allocation refused) {msg}"
    elif isinstance(exc, errors_mod.EdgeSDKError):
        kind = "typed"
    else:
        kind = "untyped"
    out = {"step": step, "outcome": kind, "cls": type(exc).__name__, "msg": msg}
    if kind != "typed":
        out["where"] = _where(exc)
    return out


def _feeds(model, max_input_bytes: int) -> tuple[list | None, dict | None]:
    """Zeros shaped like the inputs; else the step record: ``skipped`` (too large to feed) or ``bad_spec``
    (the model reports an input no array can have: a negative dim, a dtype numpy cannot build)."""
    import numpy as np

    feeds = []
    for spec in model.inputs:
        try:
            shape = tuple(int(d) for d in spec.concrete_shape(1))
            if any(d < 0 for d in shape):
                raise ValueError(f"negative dimension in {list(shape)}")
            n = 1
            for d in shape:
                n *= d
            if n * np.dtype(spec.dtype).itemsize > max_input_bytes:
                return None, {"step": "run", "outcome": "skipped", "msg": f"input shaped {shape} is too large"}
            feeds.append(np.zeros(shape, dtype=spec.dtype))
        except Exception as e:  # noqa: BLE001 - what a user building an input from model.inputs would hit
            msg = f"input spec {spec.shape} {spec.dtype}: {type(e).__name__}: {_first_line(str(e))}"
            return None, {"step": "inputs", "outcome": "bad_spec", "cls": type(e).__name__, "msg": msg}
    return feeds, None


def _mark(text: str) -> None:
    """A progress line on stderr: the parent reads the last one to say in which step a worker died."""
    os.write(2, f"[fuzz] {text}\n".encode())


def run_case(path: str, cfg: dict) -> dict:
    import edge_sdk
    from edge_sdk import errors
    from edge_sdk.summary import summarize

    steps = []
    rss0 = _status("VmRSS")
    _reset_peak()
    _mark(f"case {cfg.get('case_id')} load")
    try:
        if cfg.get("selftest"):
            _selftest(cfg["selftest"], cfg)
        with edge_sdk.load(path, threads=1, safe=cfg["safe"]) as model:
            steps.append(_outcome("load", None, errors))
            feeds, record = _feeds(model, cfg["max_input_bytes"])
            if feeds is None:
                steps.append(record)
            else:
                try:
                    _mark("run")
                    model.run(feeds)
                    steps.append(_outcome("run", None, errors))
                except BaseException as e:  # noqa: BLE001 - classify everything the user could see
                    steps.append(_outcome("run", e, errors))
    except BaseException as e:  # noqa: BLE001
        steps.append(_outcome("load" if not steps else "close", e, errors))
    _mark("summary")
    try:
        summarize(path)
        steps.append(_outcome("summary", None, errors))
    except BaseException as e:  # noqa: BLE001
        steps.append(_outcome("summary", e, errors))
    peak = max(0, _status("VmHWM") - rss0)
    return {"steps": steps, "peak_rss": peak, "rss": _status("VmRSS")}


def _selftest(action: str, cfg: dict) -> None:
    """Misbehave on purpose, so a test can check that the parent classifies crashes, hangs and memory."""
    if action == "crash":
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)
    elif action == "hang":
        import time

        time.sleep(3600)
    elif action == "memory":
        bytearray(cfg["address_space"] * 2)
    elif action == "untyped":
        raise RuntimeError("selftest: an untyped error")


def main() -> int:
    cfg = json.loads(sys.argv[1])
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))  # the parent's own cap is not ours
    import edge_sdk  # noqa: F401 - import the SDK and warm every runtime before the limit is set

    for path in cfg["warmup"]:
        run_case(path, {**cfg, "safe": False})
    base = _status("VmSize")
    limit = base + cfg["address_space"]
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    reply.write(json.dumps({"ready": True, "vm": base, "limit": limit, "rss": _status("VmRSS")}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        result = run_case(req["path"], {**cfg, "case_id": req["id"], "selftest": req.get("selftest")})
        result["id"] = req["id"]
        reply.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
