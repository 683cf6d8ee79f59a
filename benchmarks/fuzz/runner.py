"""Parent side of the fuzzer: make cases, feed them to persistent workers, classify, keep reproducers.

A worker (``worker.py``) replies for each case before it takes the next, so a worker that dies
(native crash: a signal) or stops answering (hang: killed after ``timeout``) is blamed on the case
in flight; it is then restarted. Outcomes, worst first: ``crash``, ``hang``, ``memory`` (an
allocation failed under the address-space cap, or peak RSS passed the budget; a typed error for a
request larger than the machine's memory is ``typed``: nothing was allocated), ``untyped`` (an
exception that is not an ``EdgeSDKError``), ``bad_spec`` (the model reports an input shape numpy
cannot build), ``typed`` (an ``EdgeSDKError``: the wanted result for a corrupt file), ``ok``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import mutate_onnx
import mutate_openvino
import mutate_tflite
from case import Case
from seeds import main_file

WORKER = Path(__file__).resolve().parent / "worker.py"
REPO = Path(__file__).resolve().parents[2]
MUTATORS = {"onnx": mutate_onnx.mutate, "tflite": mutate_tflite.mutate, "openvino": mutate_openvino.mutate}
SEVERITY = ("crash", "hang", "memory", "untyped", "bad_spec", "typed", "ok")
SAVED = ("crash", "hang", "memory", "untyped", "bad_spec")
MAX_REPRODUCERS = 3
RESTART_EVERY = 1000


def make_case(fmt: str, index: int, seed: int, seeds: dict[str, list[dict]]) -> Case:
    """Case ``index`` of ``fmt``: a function of (seed, format, index) and the seed files only."""
    rng = random.Random(f"{seed}:{fmt}:{index}")
    chosen = rng.choice(seeds[fmt])
    files = {k: v for k, v in chosen.items() if k != "__name__"}
    main = main_file(files, fmt)
    try:
        with warnings.catch_warnings():  # onnx warns about the odd fields it is given: expected here
            warnings.simplefilter("ignore")
            files, mutations = MUTATORS[fmt](rng, files, main)
    except Exception as e:  # noqa: BLE001 - a mutator bug must not stop the campaign; it is reported
        mutations = [f"MUTATOR ERROR {type(e).__name__}: {e}"]
    return Case(fmt, index, chosen["__name__"].decode(), main, files, mutations)


def normalize(msg: str) -> str:
    """A message with case-specific parts (paths, numbers, quoted names) blanked, for grouping."""
    msg = re.sub(r"(/[^\s:'\"]+)+", "<path>", msg)
    msg = re.sub(r"[\w.-]+\.(onnx|tflite|xml|bin|data)\b", "<file>", msg)
    msg = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", msg)
    msg = re.sub(r"0x[0-9a-fA-F]+", "0x…", msg)
    return re.sub(r"\d+", "N", msg)[:240]


@dataclass
class Result:
    case: Case
    kind: str
    signature: str = ""
    detail: dict = field(default_factory=dict)


def classify(case: Case, reply: dict, rss_budget: int) -> Result:
    steps = reply.get("steps", [])
    bad = [s for s in steps if s["outcome"] not in ("ok", "skipped")]
    kind = min((s["outcome"] for s in bad), key=SEVERITY.index, default="ok")
    if reply.get("peak_rss", 0) > rss_budget and SEVERITY.index(kind) > SEVERITY.index("memory"):
        return Result(case, "memory", f"peak RSS past the budget ({reply['peak_rss'] >> 20} MiB)", reply)
    if kind == "ok":
        return Result(case, "ok", "", reply)
    worst = next(s for s in bad if s["outcome"] == kind)
    if kind == "typed":
        refused = " (allocation refused)" if worst.get("msg", "").startswith("(allocation refused)") else ""
        return Result(case, kind, worst["cls"] + refused, reply)
    where = worst.get("where", "")
    sig = f"{worst['step']}: {worst.get('cls', '')}: {normalize(worst.get('msg', ''))}" + (
        f" @ {where}" if where else ""
    )
    return Result(case, kind, sig, reply)


class Worker:
    """One persistent worker process and the case it is running."""

    def __init__(self, k: int, cfg: dict, workdir: Path, env: dict[str, str]) -> None:
        self.k, self.cfg, self.env = k, cfg, env
        self.dir = workdir / f"w{k}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "stderr.log"
        self.proc: subprocess.Popen | None = None
        self.case: Case | None = None
        self.deadline = 0.0
        self.done = 0
        self.ready: dict = {}

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER), json.dumps(self.cfg)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=self.dir,
                env={**self.env, "EDGE_SDK_CACHE_DIR": str(self.dir / "cache")},
                start_new_session=True, text=True, bufsize=1,
            )  # fmt: skip
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.cfg["startup_timeout"])
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.kill()
            raise RuntimeError(f"fuzz worker did not start; its stderr ends with:\n{self.log_tail(3000)}")
        self.ready = json.loads(line)
        self.done = 0

    def log_tail(self, n: int = 600) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - n))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self) -> int:
        if self.proc is None:
            return 0
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rc = self.proc.wait()
        self.proc = None
        return rc

    def send(self, case: Case) -> None:
        if self.proc is None or self.done >= RESTART_EVERY:
            self.kill()
            shutil.rmtree(self.dir / "cache", ignore_errors=True)
            self.start()
        path = case.write(self.dir / "case")
        assert self.proc is not None and self.proc.stdin is not None
        self.case = case
        self.deadline = time.monotonic() + self.cfg["timeout"]
        self.proc.stdin.write(json.dumps({"id": case.index, "path": str(path), "selftest": case.selftest}) + "\n")
        self.proc.stdin.flush()

    def finish(self, rss_budget: int) -> Result:
        """Read the reply to the case in flight (the caller saw the pipe readable or the deadline pass)."""
        assert self.proc is not None and self.proc.stdout is not None and self.case is not None
        case, self.case = self.case, None
        self.done += 1
        if time.monotonic() >= self.deadline and not select.select([self.proc.stdout], [], [], 0)[0]:
            self.kill()
            return Result(case, "hang", f"no reply in {self.cfg['timeout']} s", {"log": self.log_tail()})
        line = self.proc.stdout.readline()
        if line:
            reply = json.loads(line)
            if reply.get("rss", 0) > self.ready.get("rss", 0) + rss_budget:
                self.kill()  # leaked past the budget over many cases: start clean
            return classify(case, reply, rss_budget)
        rc = self.kill()
        tail = self.log_tail()
        name = signal.Signals(-rc).name if rc < 0 else f"exit {rc}"
        lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
        marks = [i for i, ln in enumerate(lines) if ln.startswith("[fuzz] ")]
        step = lines[marks[-1]].split()[-1] if marks else "?"
        native = [ln for ln in lines[marks[-1] + 1 :] if ln] if marks else lines[-1:]
        sig = f"{name} in {step}" + (f": {normalize(native[-1])}" if native else "")
        oom = any(w in tail.lower() for w in ("bad_alloc", "out of memory", "cannot allocate"))
        kind = "memory" if oom else "crash"
        return Result(case, kind, sig, {"log": tail})


def save_reproducer(result: Result, out: Path, saved: Counter) -> str:
    """Copy the case's files and what happened to ``out/<format>/<kind>/<signature hash>/<index>/``."""
    key = hashlib.sha256(f"{result.case.fmt}|{result.kind}|{result.signature}".encode()).hexdigest()[:10]
    folder = out / result.case.fmt / result.kind / key
    saved[key] += 1
    if saved[key] > MAX_REPRODUCERS:
        return str(folder)
    dest = folder / str(result.case.index)
    result.case.write(dest / "files")
    info = {"format": result.case.fmt, "index": result.case.index, "seed_model": result.case.seed_name,
            "main": result.case.main, "mutations": result.case.mutations, "kind": result.kind,
            "signature": result.signature, "detail": result.detail}  # fmt: skip
    (dest / "case.json").write_text(json.dumps(info, indent=1, default=str))
    return str(folder)


def run_campaign(cases: list[Case], cfg: dict, *, jobs: int, workdir: Path, out: Path | None, env: dict,
                 rss_budget: int, progress=None) -> list[tuple[Result, str]]:  # fmt: skip
    """Run ``cases`` on ``jobs`` workers; return (result, reproducer folder or "") in case order."""
    workers = [Worker(k, cfg, workdir, env) for k in range(jobs)]
    pending = list(reversed(cases))
    results: dict[tuple[str, int], tuple[Result, str]] = {}
    saved: Counter = Counter()
    try:
        while pending or any(w.case for w in workers):
            for w in workers:
                if w.case is None and pending:
                    w.send(pending.pop())
            busy = [w for w in workers if w.case is not None]
            wait = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            readable, _, _ = select.select([w.proc.stdout for w in busy if w.proc], [], [], wait)
            for w in busy:
                if (w.proc and w.proc.stdout in readable) or time.monotonic() >= w.deadline:
                    res = w.finish(rss_budget)
                    where = save_reproducer(res, out, saved) if out is not None and res.kind in SAVED else ""
                    results[(res.case.fmt, res.case.index)] = (res, where)
                    if progress:
                        progress(res)
    finally:
        for w in workers:
            w.kill()
    return [results[(c.fmt, c.index)] for c in cases]
