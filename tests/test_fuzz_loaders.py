"""The loader fuzzer (benchmarks/fuzz_loaders.py): deterministic cases, a harness that classifies what a
worker does, and a short seeded campaign with no untyped error, hang or memory-budget violation."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "fuzz_loaders.py"
sys.path.insert(0, str(REPO / "benchmarks" / "fuzz"))

pytest.importorskip("onnx")


def _fuzz(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)  # fmt: skip


@pytest.fixture(scope="module")
def seed_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seed models built once for this module (TFLite needs tensorflow: about half a minute)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("openvino")
    from seeds import ensure_seeds

    cache = tmp_path_factory.mktemp("fuzz_seeds")
    seeds = ensure_seeds(cache)
    assert all(seeds[f] for f in ("onnx", "tflite", "openvino")), {f: len(s) for f, s in seeds.items()}
    return cache


def _listing(cache: Path, seed: int) -> list[dict]:
    proc = _fuzz("--list", "--cases", "60", "--seed", str(seed), "--cache", str(cache), timeout=600)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_same_seed_gives_the_same_cases(seed_cache: Path) -> None:
    first, again, other = _listing(seed_cache, 7), _listing(seed_cache, 7), _listing(seed_cache, 8)
    assert len(first) == 180 and {c["format"] for c in first} == {"onnx", "tflite", "openvino"}
    assert first == again
    assert [c["digest"] for c in first] != [c["digest"] for c in other]
    # the mutators work: distinct files, and no mutator raised
    assert len({c["digest"] for c in first}) > 150
    assert not [c for c in first if any("MUTATOR ERROR" in m for m in c["mutations"])]


def test_harness_classifies_crash_hang_memory_and_untyped(tmp_path: Path) -> None:
    """A worker that segfaults, hangs, allocates past its cap or raises a plain exception is counted as such,
    blamed on the case in flight, and replaced, so the next case runs normally."""
    import builders
    from case import Case
    from runner import Worker

    model = builders.onnx_mlp(tmp_path / "mlp.onnx")
    files = {"mlp.onnx": model.read_bytes()}
    cfg = {"warmup": [], "address_space": 256 << 20, "safe": False, "timeout": 10, "max_input_bytes": 1 << 20,
           "startup_timeout": 300}  # fmt: skip
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "EDGE_SDK_CACHE_DIR": str(tmp_path / "cache")}
    worker = Worker(0, cfg, tmp_path / "work", env)
    seen = {}
    try:
        for i, action in enumerate(("", "crash", "hang", "memory", "untyped", "")):
            case = Case("onnx", i, "mlp", "mlp.onnx", files, selftest=action)
            worker.send(case)
            _wait(worker)
            result = worker.finish(rss_budget=256 << 20)
            assert result.case is case
            seen[action or f"plain{i}"] = (result.kind, result.signature)
    finally:
        worker.kill()
    assert seen["plain0"][0] == "ok" and seen["plain5"][0] == "ok", seen
    assert seen["crash"][0] == "crash" and seen["crash"][1].startswith("SIGSEGV"), seen
    assert seen["hang"] == ("hang", "no reply in 10 s"), seen
    assert seen["memory"][0] == "memory" and "MemoryError" in seen["memory"][1], seen
    assert seen["untyped"][0] == "untyped" and "RuntimeError: selftest: an untyped error" in seen["untyped"][1], seen


def _wait(worker) -> None:
    """Block until the worker replied, died or passed its deadline (what run_campaign's select does)."""
    while time.monotonic() < worker.deadline and not select.select([worker.proc.stdout], [], [], 0.2)[0]:
        pass


@pytest.mark.slow
def test_short_campaign_has_no_untyped_error_hang_or_memory_violation(seed_cache: Path, tmp_path: Path) -> None:
    """200 seeded cases per format through load, run and summarize. Native crashes are counted (the CLI
    contains them in its isolated probe) but every other failure must be a typed EdgeSDKError."""
    out = tmp_path / "findings"
    proc = _fuzz("--cases", "200", "--seed", "0", "--jobs", "1", "--json", "--quiet", "--out", str(out),
                 "--cache", str(seed_cache))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(proc.stdout)
    for fmt, row in rep["formats"].items():
        assert row["cases"] == 200, (fmt, row)
        assert sum(row["outcomes"].values()) == 200
        assert row["outcomes"]["typed"] > 0, (fmt, row)  # mutations do reach the checks
    bad = [f for f in rep["findings"] if f["kind"] in ("untyped", "hang", "memory", "bad_spec")]
    assert not bad, json.dumps(bad, indent=1)
