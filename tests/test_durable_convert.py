"""Durable conversions: the manifest always describes the files beside it, dead runs' temp folders are swept,
tools die with the conversion (even on SIGKILL), and a full disk is a typed error naming the folder."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from converters import convert
from converters.atomic import remove_stale_temp_files, write_bytes_atomic
from converters.cleanup import owner_tag, run_tool
from converters.manifest import OutputFolder, file_record
from edge_sdk.errors import DiskFullError, OutputDirError
from edge_sdk.pipeline.model_info import read_manifest

REPO = Path(__file__).resolve().parents[1]
HAS_PROC = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists()


# ---- helpers ----------------------------------------------------------------------------------------------------
def listed_files_mismatching(out: Path) -> list[str]:
    """Files the folder's manifest lists whose content is not what it records (the invariant: always [])."""
    try:
        data = json.loads((out / "manifest.json").read_text())
    except FileNotFoundError:
        return []
    recorded = {a["path"]: a["sha256"] for a in data.get("artifacts", [])}
    recorded.update({n: r["sha256"] for n, r in (data.get("files") or {}).items()})
    return [n for n, digest in recorded.items() if not (out / n).is_file() or file_record(out / n)["sha256"] != digest]


def descendants(pid: int) -> set[int]:
    seen, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                kids = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += sorted(kids - seen)
            seen |= kids
    return seen


def alive(pid: int) -> bool:
    """Running, sleeping or stopped: not gone and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_gone(pids: set[int] | list[int], timeout: float = 60) -> list[int]:
    """Poll until none of ``pids`` runs; return those still running after ``timeout`` (generous: no speed test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def kill_leftovers(pids: set[int] | list[int]) -> None:
    for p in pids:  # processes this test started (directly or through the CLI)
        if alive(p):
            os.kill(p, signal.SIGKILL)


def tiny_keras(path: Path, seed: int) -> Path:
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(12)(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.Model(inp, out).save(path)
    return path


def onnx_with_weights(path: Path, rows: int, cols: int) -> Path:
    """An ONNX MatMul whose weight is ``rows x cols`` float32 (its size is what a conversion must write)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((rows, cols)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cols])], [w],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


@pytest.fixture(scope="module")
def keras_a(tmp_path_factory) -> Path:
    return tiny_keras(tmp_path_factory.mktemp("keras_a") / "tiny.keras", 3)


class _Killed(BaseException):
    """Stands for SIGKILL at one point of a run: nothing after it runs (no except Exception catches it)."""


# ---- the manifest describes the files beside it -----------------------------------------------------------------
def _run(out: Path, stage: Path, version: str) -> None:
    """One "conversion" into ``out``: an ONNX file, an OpenVINO pair and a TFLite file, then the manifest."""
    stage.mkdir(exist_ok=True)
    folder = OutputFolder(out)
    for name in ("m.onnx", "m.bin", "m.xml", "m.tflite"):
        (stage / name).write_text(f"{name} {version}")
    folder.publish({stage / "m.onnx": out / "m.onnx"})
    folder.publish({stage / "m.bin": out / "m.bin", stage / "m.xml": out / "m.xml"})
    folder.publish({stage / "m.tflite": out / "m.tflite"})
    artifacts = [{"path": n, "sha256": folder.files[n]["sha256"]} for n in ("m.onnx", "m.xml", "m.tflite")]
    folder.write_manifest({"preprocessing": {"version": version}, "artifacts": artifacts})


@pytest.mark.parametrize("when", ["before", "after"])
def test_manifest_lists_only_files_it_describes_at_every_kill_point(tmp_path, monkeypatch, when):
    """Kill a second run into the same folder before / after each rename (every file-system step that makes
    something visible): every file the manifest lists then has the sha256 it records."""
    out = tmp_path / "out"
    out.mkdir()
    _run(out, tmp_path / "s0", "old")
    pristine = tmp_path / "pristine"
    shutil.copytree(out, pristine)
    real_replace = os.replace
    points = 0
    for k in range(1, 100):
        shutil.rmtree(out)
        shutil.copytree(pristine, out)
        calls = 0

        def replace(src, dst, k=k):
            nonlocal calls
            calls += 1
            if calls == k and when == "before":
                raise _Killed
            real_replace(src, dst)
            if calls == k:
                raise _Killed

        monkeypatch.setattr(os, "replace", replace)
        try:
            _run(out, tmp_path / f"s{k}", "new")
        except _Killed:
            points += 1
        else:
            break
        finally:
            monkeypatch.setattr(os, "replace", real_replace)
        assert listed_files_mismatching(out) == [], f"killed {when} rename {k}"
    assert points >= 5, "every publish and the manifest writes were kill points"
    assert listed_files_mismatching(out) == [] and json.loads((out / "manifest.json").read_text())["files"]
    data = json.loads((out / "manifest.json").read_text())
    assert data["preprocessing"] == {"version": "new"} and "pending" not in data
    assert set(data["files"]) == {"m.onnx", "m.bin", "m.xml", "m.tflite"}


def test_retracted_manifest_says_what_is_pending(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _run(out, tmp_path / "s0", "old")
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "m.bin").write_text("new bin")
    OutputFolder(out).publish({tmp_path / "s1" / "m.bin": out / "m.bin"})
    data = json.loads((out / "manifest.json").read_text())
    assert data["pending"] == ["m.bin", "m.xml"], "an .xml goes with its .bin"
    assert [a["path"] for a in data["artifacts"]] == ["m.onnx", "m.tflite"]
    assert set(data["files"]) == {"m.onnx", "m.tflite"}


def test_sdk_applies_a_manifest_only_to_the_file_it_records(tmp_path, caplog, monkeypatch):
    import logging

    import builders

    # a library imported by an earlier test may have disabled existing loggers (logging.config's default)
    monkeypatch.setattr(logging.getLogger("edge_sdk.pipeline"), "disabled", False)
    monkeypatch.setattr(logging.getLogger("edge_sdk"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="edge_sdk.pipeline")

    model = builders.onnx_mlp(tmp_path / "m.onnx")
    content = {"preprocessing": {"size": [4, 4]}, "artifacts": [{"path": "m.onnx", "sha256": "0" * 64}]}
    folder = OutputFolder(tmp_path)
    folder.record(model)
    folder.write_manifest(content)
    assert read_manifest(model)["preprocessing"] == {"size": [4, 4]}, "files record matches: applied"

    builders.onnx_mlp(model, out_features=5)  # replaced since: same name, other content
    assert read_manifest(model) == {}
    assert "does not record m.onnx as it is now" in caplog.text

    sha = file_record(model)["sha256"]  # a manifest from before file records: the artifact's own sha256
    old_style = {"labels": "x", "artifacts": [{"path": "m.onnx", "sha256": sha}]}
    (tmp_path / "manifest.json").write_text(json.dumps(old_style))
    assert read_manifest(model)["labels"] == "x"
    (tmp_path / "manifest.json").write_text(json.dumps({"labels": "x", "artifacts": [], "pending": ["m.onnx"]}))
    assert read_manifest(model) == {}, "a file being replaced is not described"
    other = builders.onnx_mlp(tmp_path / "other.onnx")
    assert read_manifest(other) == {}, "a file the manifest does not list is not described"


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc to watch the conversion's processes")
def test_sigkill_after_an_artifact_is_replaced_leaves_a_true_manifest(keras_a, tmp_path):
    """The issue's case: a second conversion into the same folder, SIGKILLed once it has replaced a file."""
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir()
    convert(keras_a, to=["onnx", "openvino"], output_dir=out)
    old = {p.name: p.stat().st_ino for p in out.iterdir()}
    model_b = tiny_keras(tmp_path / "b" / "tiny.keras", 4)  # same name, other weights: every artifact changes
    cmd = [sys.executable, "-m", "edge_sdk.cli.main", "convert", str(model_b), "--to", "onnx,openvino", "-o", str(out)]
    proc = subprocess.Popen(cmd, env={**os.environ, "TMPDIR": str(scratch)}, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.name in old and p.stat().st_ino != old[p.name] for p in out.glob("tiny_*")):
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it replaced a file"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    replaced = [p.name for p in out.glob("tiny_*") if p.stat().st_ino != old[p.name]]
    assert replaced, "killed after a file was replaced"
    assert listed_files_mismatching(out) == []
    assert read_manifest(out / "tiny_fp32.onnx") == {}, "the replaced model is not described by the old manifest"
    if "tiny_fp32.xml" not in replaced and "tiny_fp32.bin" not in replaced:
        assert read_manifest(out / "tiny_fp32.xml")["artifacts"], "a file not yet replaced still is"


# ---- dead runs' temp folders ----------------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_dead_runs_leftovers_and_keeps_live_ones(tmp_path):
    pid, start, ns = (int(x) for x in owner_tag().split("."))
    live = tmp_path / f"edge-sdk-convert-{pid}.{start}.{ns}-abc123"
    dead = tmp_path / f"edge-sdk-convert-{_dead_pid()}.{start}.{ns}-abc123"
    reused = tmp_path / f"edge-sdk-prune-{pid}.{start + 1}.{ns}-x_9"  # our pid, another start time: pid reuse
    foreign = tmp_path / f"edge-sdk-convert-1.5.{ns + 1}-abc"  # another pid namespace: cannot tell, kept
    untagged = tmp_path / "edge-sdk-convert-abc123"  # not ours to judge in a shared temp folder
    for d in (live, dead, reused, foreign, untagged):
        d.mkdir()
        (d / "f").write_text("x")
    part_live = tmp_path / f".m.onnx.{pid}.{start}.{ns}-q1.part"
    part_dead = tmp_path / f".m.onnx.{_dead_pid()}.{start}.{ns}-q1.part"
    keras_dead = tmp_path / f".m.keras.{_dead_pid()}.{start}.{ns}-q1.keras"
    legacy = tmp_path / ".m.onnx.k2j3.part"
    for f in (part_live, part_dead, keras_dead, legacy):
        f.write_text("x")
    model = tmp_path / "m_1.2.3-fp32.onnx"  # a final name that looks like a tag is never touched
    model.write_text("x")

    assert remove_stale_temp_files(tmp_path, prefix="edge-sdk-") == 2
    assert {p.name for p in tmp_path.iterdir() if p.is_dir()} == {live.name, foreign.name, untagged.name}
    assert remove_stale_temp_files(tmp_path) == 3
    assert {p.name for p in tmp_path.iterdir() if p.is_file()} == {part_live.name, model.name}


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc to find the tool process")
def test_sigkill_while_a_tool_runs_kills_the_tool_and_the_next_run_sweeps(keras_a, tmp_path, monkeypatch, mlp_onnx):
    """SIGKILL the CLI while tf2onnx runs: the tool (frozen here, so that it cannot finish on its own) is gone
    shortly after; the dead run's work folder in TMPDIR is removed by the next conversion, a live one's kept."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    cmd = [sys.executable, "-m", "edge_sdk.cli.main", "convert", str(keras_a), "--to", "onnx",
           "-o", str(tmp_path / "o")]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "TMPDIR": str(scratch)}, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    tools: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and not tools:
            tools = [p for p in descendants(proc.pid) if "tf2onnx" in cmdline(p) and "_tool_guard" not in cmdline(p)]
            time.sleep(0.02)
        assert tools, "tf2onnx never ran"
        for t in tools:
            os.kill(t, signal.SIGSTOP)
        everything = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        assert wait_gone(everything) == [], "a tool outlived the conversion it was part of"
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_leftovers(descendants(proc.pid) | set(tools))
    assert [p.name for p in scratch.glob("edge-sdk-*")], "a SIGKILLed run cannot remove its own work folder"
    live = scratch / f"edge-sdk-convert-{owner_tag()}-abc"  # a run still going (this process): its folder stays
    live.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    convert(mlp_onnx, to="onnx", output_dir=tmp_path / "o2")
    assert [p.name for p in scratch.glob("edge-sdk-*")] == [live.name]


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc to find the tool's processes")
def test_run_tool_dies_with_its_caller_and_takes_grandchildren(tmp_path):
    """SIGKILL a process waiting in run_tool on a tool that has a child of its own: both go."""
    code = (
        "import sys; from converters.cleanup import run_tool; "
        "run_tool(['sh', '-c', 'sleep 300 & sleep 300'])"
    )  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    sleeps: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(sleeps) < 2 and proc.poll() is None:
            sleeps = [p for p in descendants(proc.pid) if cmdline(p).startswith("sleep")]
            time.sleep(0.02)
        assert len(sleeps) == 2, "the tool and its child never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        assert wait_gone(sleeps) == [], "the tool or its child outlived the caller"
    finally:
        kill_leftovers(sleeps)


def test_run_tool_results_errors_and_timeout(tmp_path):
    r = run_tool(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = run_tool([sys.executable, "-c", "import os; print(os.getcwd())"], cwd=tmp_path)
    assert r.stdout.strip() == str(tmp_path)
    with pytest.raises(FileNotFoundError):
        run_tool(["no-such-tool-edge-sdk"])
    with pytest.raises(subprocess.TimeoutExpired):
        run_tool(["sleep", "300"], timeout=1)
    with pytest.raises(OSError) as e:
        run_tool(["sh", "-c", "echo 'OSError: [Errno 28] No space left on device' >&2; exit 1"])
    assert e.value.errno == errno.ENOSPC


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_inherit_the_stop_handler(tmp_path):
    """A library's forked worker (OpenVINO's telemetry sender) that gets SIGTERM must die of it: neither remove
    the conversion's temp files (our handler, inherited) nor ignore it (stuck in C, a Python handler never runs,
    and the conversion waited on it for ever)."""
    from converters.cleanup import exit_cleanly_on_signals, track, untrack

    work = tmp_path / "work"
    work.mkdir()
    with exit_cleanly_on_signals():
        track(work)
        try:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                try:
                    os.write(w, b"x")
                    time.sleep(300)
                finally:
                    os._exit(0)
            os.read(r, 1)
            os.kill(pid, signal.SIGTERM)
            _, status = os.waitpid(pid, 0)
        finally:
            untrack(work)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGTERM
    assert work.is_dir(), "a forked child removed the conversion's work folder"


# ---- disk full ----------------------------------------------------------------------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_writing_a_file_is_typed_and_names_folder_and_size(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "write_bytes", _enospc)
    with pytest.raises(DiskFullError) as e:
        write_bytes_atomic(tmp_path / "model.onnx", b"x" * 3000)
    msg = str(e.value)
    assert f"no space left on the device of {tmp_path} while writing model.onnx: needs 2.9 KiB;" in msg
    assert "free there" in msg and "-o OUT" in msg and "TMPDIR" in msg
    assert isinstance(e.value, OutputDirError) and e.value.needed == 3000 and e.value.free is not None
    assert list(tmp_path.iterdir()) == [], "no temp file left"


def test_disk_full_in_a_conversion_is_typed(mlp_onnx, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_copy = shutil.copyfile

    def copy_fails(src, dst, *a, **k):  # into the output folder; as shutil's sendfile copy reports it
        if not str(dst).startswith(str(out)):
            return real_copy(src, dst, *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))

    monkeypatch.setattr(shutil, "copyfile", copy_fails)  # the artifact stage copies the fp32 file
    with pytest.raises(DiskFullError) as e:
        convert(mlp_onnx, to="onnx", output_dir=out)
    assert f"no space left on the device of {out} while writing mlp_fp32.onnx: needs {os.path.getsize(mlp_onnx)} B;" \
        in str(e.value)  # fmt: skip
    assert list(out.iterdir()) == []
    monkeypatch.undo()

    real = Path.write_bytes

    def manifest_fails(self, data):
        if self.name.startswith(".manifest.json."):
            _enospc()
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", manifest_fails)
    with pytest.raises(DiskFullError, match=f"device of {out} while writing manifest.json: needs [0-9.]+ KiB;"):
        convert(mlp_onnx, to="onnx", output_dir=out)
    assert not (out / "manifest.json").exists() and not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (needs root and mount; CI without them skips)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a 1 MiB tmpfs needs root and mount(8); the injected-ENOSPC tests cover the logic")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_real_disk_full_output_and_work_folder(small_tmpfs, tmp_path, monkeypatch):
    big = onnx_with_weights(tmp_path / "big.onnx", 512, 1024)  # 2 MiB of weights, 1 MiB of space
    out = small_tmpfs / "out"
    with pytest.raises(DiskFullError) as e:
        convert(big, to="onnx", output_dir=out)
    assert f"no space left on the device of {out} while writing big_fp32.onnx: needs 2.0 MiB; " in str(e.value)
    assert e.value.free is not None and 0 < e.value.free < e.value.needed, "free: after the partial copy is removed"
    assert [p for p in out.iterdir()] == [], "no partial file left"

    monkeypatch.setattr(tempfile, "tempdir", str(small_tmpfs))  # now the work folder is on the small device
    with pytest.raises(DiskFullError) as e:
        convert(big, to="onnx", output_dir=tmp_path / "out2")
    assert f"no space left on the device of {small_tmpfs} while writing big_fp32.onnx: needs 2.0 MiB; " in str(e.value)
    assert 0 < e.value.free < e.value.needed
    assert [p.name for p in small_tmpfs.iterdir()] == ["out"], "the work folder is removed"
