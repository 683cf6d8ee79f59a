"""SIGKILL real CLI conversions at random times and count what a killed run leaves behind.

Each trial starts from the same state: OUT holds a complete conversion of model A (manifest included). Then
``edge-sdk convert`` of model B (same file name, different weights, so every artifact changes) into OUT is
SIGKILLed at a random time within one full run's duration, and the script counts:

- manifest mismatches: a file the manifest lists (``artifacts[].path``/``sha256`` and, where present,
  ``files``) whose sha256 is not the recorded one (or that is missing);
- work folders left in the shared TMPDIR (``edge-sdk-*``): after the kill, and after one more complete
  conversion at the end (which should sweep those of dead runs);
- temp entries left in OUT (``.``-names): after the kill;
- tool processes (tf2onnx, ...) of the killed run still alive 1 s and 10 s after the kill.

    .venv/bin/python benchmarks/kill_conversions.py -n 10 [--repo DIR] [--seed 0]

``--repo`` runs the code of another checkout (e.g. ``git archive HEAD`` unpacked) with this venv, to
measure before/after a change. Slow (a TensorFlow start per run): kept out of the test suite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = "tflite,onnx,openvino"


def build_models(folder: Path) -> tuple[Path, Path]:
    """Two tiny Keras models saved as ``a/tiny.keras`` and ``b/tiny.keras`` (same name, different weights)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    paths = []
    for seed, sub in ((3, "a"), (4, "b")):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((16, 16, 3), name="image")
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
        x = keras.layers.GlobalAveragePooling2D()(x)
        out = keras.layers.Dense(12)(x)
        (folder / sub).mkdir(parents=True, exist_ok=True)
        path = folder / sub / "tiny.keras"
        keras.Model(inp, out).save(path)
        paths.append(path)
    return paths[0], paths[1]


def cli(repo: Path, model: Path, out: Path, tmpdir: Path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "edge_sdk.cli.main", "convert", str(model), "--to", TARGETS, "-o", str(out)]
    return subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_to_end(repo: Path, model: Path, out: Path, tmpdir: Path, timeout: float = 240) -> str:
    """A complete conversion: "ok", "failed" or "hung" (killed, with its processes, after ``timeout``)."""
    proc = cli(repo, model, out, tmpdir)
    try:
        return "ok" if proc.wait(timeout=timeout) == 0 else "failed"
    except subprocess.TimeoutExpired:
        for p in [proc.pid, *descendants(proc.pid)]:
            os.kill(p, signal.SIGKILL)
        proc.wait()
        return "hung"


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def mismatches(out: Path) -> list[str]:
    """Files the manifest lists whose content is not what it records."""
    try:
        data = json.loads((out / "manifest.json").read_text())
    except FileNotFoundError:
        return []
    except ValueError:
        return ["manifest.json unreadable"]
    recorded = {a["path"]: a["sha256"] for a in data.get("artifacts", [])}
    recorded.update({name: rec["sha256"] for name, rec in (data.get("files") or {}).items()})
    bad = []
    for name, digest in recorded.items():
        p = out / name
        if not p.is_file():
            bad.append(f"{name} missing")
        elif sha256(p) != digest:
            bad.append(f"{name} sha256 differs")
    return bad


def descendants(pid: int) -> set[int]:
    seen, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for k in kids:
                if k not in seen:
                    seen.add(k)
                    todo.append(k)
    return seen


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10, help="kills (default 10)")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    repo = args.repo.resolve()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kill-bench-"))
    try:
        model_a, model_b = build_models(work / "models")
        tmpdir = work / "tmp"
        tmpdir.mkdir()
        golden, out = work / "golden", work / "out"
        hangs = 0
        for _ in range(3):
            start = time.monotonic()
            outcome = run_to_end(repo, model_a, golden, tmpdir)
            full = time.monotonic() - start
            hangs += outcome == "hung"
            if outcome == "ok":
                break
            print(f"reference conversion {outcome}; again", file=sys.stderr)
        else:
            raise SystemExit("the reference conversion does not complete")
        start = time.monotonic()  # B's own duration, into a copy: kill times are drawn within the shorter one
        shutil.copytree(golden, work / "timing")
        if run_to_end(repo, model_b, work / "timing", tmpdir) == "ok":
            full = min(full, time.monotonic() - start)
        print(f"one full conversion: {full:.1f} s", file=sys.stderr)
        rows = []
        for _ in range(args.n):
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(golden, out)
            before = set(tmpdir.iterdir())
            delay = rng.uniform(0.0, full)
            proc = cli(repo, model_b, out, tmpdir)
            tools: set[int] = set()
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and proc.poll() is None:
                tools |= descendants(proc.pid)
                time.sleep(0.02)
            tools |= descendants(proc.pid)
            finished = proc.poll() is not None
            running = [t for t in tools if alive(t)]  # tool processes running when the CLI dies
            if not finished:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(1.0)
            after_1s = [t for t in running if alive(t)]
            end = time.monotonic() + 9
            while time.monotonic() < end and any(alive(t) for t in tools):
                time.sleep(0.1)
            orphans = [t for t in tools if alive(t)]
            for t in orphans:  # ours to clean up
                os.kill(t, signal.SIGKILL)
            row = {
                "delay_s": round(delay, 1),
                "finished": finished,
                "mismatches": mismatches(out),
                "work_folders_left": len([p for p in set(tmpdir.iterdir()) - before if p.name.startswith("edge-sdk-")]),
                "temp_in_out": len([p for p in out.iterdir() if p.name.startswith(".")]),
                "tools_running_at_kill": len(running),
                "tools_alive_1s_after": len(after_1s),
                "orphan_tools": len(orphans),
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
        left_before_sweep = len([p for p in tmpdir.iterdir() if p.name.startswith("edge-sdk-")])
        final = run_to_end(repo, model_a, work / "final", tmpdir)
        hangs += final == "hung"
        left_after = len([p for p in tmpdir.iterdir() if p.name.startswith("edge-sdk-")])
        summary = {
            "repo": str(repo),
            "kills": sum(not r["finished"] for r in rows),
            "runs_with_manifest_mismatch": sum(bool(r["mismatches"]) for r in rows),
            "runs_leaving_work_folder": sum(r["work_folders_left"] > 0 for r in rows),
            "runs_leaving_temp_in_out": sum(r["temp_in_out"] > 0 for r in rows),
            "kills_while_a_tool_ran": sum(r["tools_running_at_kill"] > 0 for r in rows),
            "runs_with_tool_alive_1s_after_kill": sum(r["tools_alive_1s_after"] > 0 for r in rows),
            "runs_with_tool_alive_10s_after_kill": sum(r["orphan_tools"] > 0 for r in rows),
            "work_folders_in_tmpdir_before_next_run": left_before_sweep,
            "work_folders_in_tmpdir_after_next_run": left_after,
            "complete_runs_that_hung": hangs,
            "final_run": final,
        }
        if args.json:
            print(json.dumps({"summary": summary, "trials": rows}, indent=2))
        else:
            for k, v in summary.items():
                print(f"{k:42} {v}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
