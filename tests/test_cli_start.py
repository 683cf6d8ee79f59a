"""What an ``edge-sdk run`` start pays before its first result (issue 14): only its own verb's parser, no probe
process or temp file when the verdict is cached, the model's digest remembered by the file's identity, and a
structure walk of the ONNX wire format that reads the same fields as the generator it replaced, and the
untrusted-file check remembered per file version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from realtime_helpers import onnx_colour_classifier

from edge_sdk import cache
from edge_sdk.formats import ModelFile
from edge_sdk.formats.onnx_wire import WireError, _fields, iter_fields

REPO = Path(__file__).resolve().parents[1]
#: the other verbs' modules (edge_sdk.cli.bundle is not one of them: run takes its --trusted-key argument)
OTHER_VERBS = ("info", "bench", "zoo", "convert", "diff", "prune", "demo", "devices", "reshape", "serve", "agent",
               "rollout")  # fmt: skip


def _modules_after(code: str, env: dict[str, str]) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, cwd=REPO, env={**os.environ, **env},
    ).stdout  # fmt: skip
    return set(out.splitlines()[-1].split())


def test_a_verb_builds_its_own_parser_only_and_help_lists_every_verb():
    code = "from edge_sdk.cli.main import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass"
    loaded = _modules_after(code, {})
    assert "edge_sdk.cli.run" in loaded
    assert not {f"edge_sdk.cli.{v}" for v in OTHER_VERBS} & loaded
    from edge_sdk.cli.main import COMMANDS

    helped = subprocess.run([sys.executable, "-m", "edge_sdk.cli.main", "--help"], capture_output=True, text=True,
                            cwd=REPO)  # fmt: skip
    assert helped.returncode == 0
    assert all(f"    {verb} " in helped.stdout or f"    {verb}\n" in helped.stdout for verb in COMMANDS), helped.stdout
    wrong = subprocess.run([sys.executable, "-m", "edge_sdk.cli.main", "rnu"], capture_output=True, text=True,
                           cwd=REPO)  # fmt: skip
    assert wrong.returncode == 2 and "invalid choice: 'rnu'" in wrong.stderr and "'run'" in wrong.stderr


def test_run_with_a_cached_verdict_spawns_no_probe_and_writes_no_temp_file(tmp_path):
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("onnxruntime")
    model = onnx_colour_classifier(tmp_path / "colour.onnx")
    image = tmp_path / "red.png"
    cv2.imwrite(str(image), np.full((48, 64, 3), (0, 0, 255), np.uint8))  # BGR: red
    env = {"EDGE_SDK_CACHE_DIR": str(tmp_path / "cache")}
    argv = ["run", str(model), "--task", "classify", "--size", "32x32", "--mean", "0", "--std", "255",
            "--source", str(image), "--sink", "-", "--max-results", "1"]  # fmt: skip
    code = (
        "import contextlib, io\nfrom edge_sdk.cli.main import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()) as out:\n    assert main({argv!r}) == 0, out.getvalue()\n"
        "assert '\"class\": 0' in out.getvalue(), out.getvalue()"
    )
    first = _modules_after(code, env)  # probes the file in a child process, keeps the verdict
    assert "subprocess" in first
    loaded = _modules_after(code, env)
    assert not {f"edge_sdk.cli.{v}" for v in OTHER_VERBS} & loaded
    assert "subprocess" not in loaded  # the verdict was found: no probe process
    assert "tempfile" not in loaded  # native stderr captured in memory (memfd)
    assert "xml.etree.ElementTree" not in loaded  # only an OpenVINO IR needs the XML parser


@pytest.fixture
def settled_now(monkeypatch):
    """Files count as settled at once (the rule waits 2 s after a change; tests write and read at once)."""
    monkeypatch.setattr(cache, "SETTLED_NS", -(10**12))
    cache._HASHES.clear()
    cache._SHA256.clear()


def test_model_digest_is_remembered_by_the_file_identity(tmp_path, monkeypatch, settled_now):
    monkeypatch.setenv("EDGE_SDK_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07" + bytes(range(256)) * 64)
    first = cache._file_digest(model, model.stat())
    assert len(list((tmp_path / "cache" / "digests").iterdir())) == 1
    cache._SHA256.clear()  # a new process: only the file on disk remembers

    def no_hashing(path):
        raise AssertionError("hashed again")

    monkeypatch.setattr(cache, "sha256_file", no_hashing)
    assert cache._file_digest(model, model.stat()) == first
    mf = ModelFile(path=model, format="onnx", size=model.stat().st_size)
    assert cache.model_hash(mf)  # the probe key's model part, from the remembered digest
    monkeypatch.undo()
    monkeypatch.setenv("EDGE_SDK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "SETTLED_NS", -(10**12))
    st = model.stat()
    model.write_bytes(b"\x08\x07" + bytes(range(255, -1, -1)) * 64)  # same size, other bytes
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the mtime put back, the ctime moved
    cache._SHA256.clear()
    assert cache._file_digest(model, model.stat()) != first


def test_digest_not_remembered_when_the_cache_is_off_or_the_file_just_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07" + b"\0" * 1000)
    cache._file_digest(model, model.stat())  # written just now: not settled
    assert not (tmp_path / "cache" / "digests").exists()
    monkeypatch.setattr(cache, "SETTLED_NS", -(10**12))
    monkeypatch.setenv("EDGE_SDK_CACHE", "0")
    cache._file_digest(model, model.stat())
    assert not (tmp_path / "cache" / "digests").exists()


def _all_fields(buf: memoryview, start: int, end: int, eager: bool) -> list:
    """Every field of a message and of every LEN field that parses as a message, depth first."""
    out = []
    try:
        items = _fields(buf, start, end) if eager else list(iter_fields(buf, start, end))
    except WireError as e:
        return [("error", str(e))]
    for fnum, wtype, val in items:
        out.append((fnum, wtype, val))
        if wtype == 2 and val[1] - val[0] < 4096:
            out.append(_all_fields(buf, val[0], val[1], eager))
    return out


def test_the_list_walk_reads_what_the_generator_reads(tmp_path):
    pytest.importorskip("onnx")
    data = onnx_colour_classifier(tmp_path / "colour.onnx").read_bytes()
    rng = np.random.default_rng(0)
    samples = [data, data[: len(data) // 2], data[:-3], bytes(rng.integers(0, 256, 300, dtype=np.uint8))]
    samples += [b"\x08" + b"\xff" * 11, b"\x0a\x05ab", b"\x00\x01", b"\x0b", b"\x09" + b"\0" * 7, b"\x0d\0"]
    for raw in samples:
        buf = memoryview(raw)
        assert _all_fields(buf, 0, len(raw), True) == _all_fields(buf, 0, len(raw), False)


def test_a_passed_file_check_is_remembered_by_the_file_identity(tmp_path, monkeypatch):
    """The untrusted-file check runs once per file version: a later process takes the remembered pass, and any
    change to the file (its ctime moves, even with the mtime put back) makes it check, and fail, again."""
    import edge_sdk.formats as formats
    from edge_sdk.errors import ModelFileError

    monkeypatch.setenv("EDGE_SDK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(formats, "_settled", lambda key: True)
    model = onnx_colour_classifier(tmp_path / "colour.onnx")
    assert formats.inspect_file(model).format == "onnx"
    assert len(list((tmp_path / "cache" / "checked").iterdir())) == 1
    formats._INSPECTED.clear()  # a new process: only the file on disk remembers
    real_check = formats._inspect_uncached

    def no_check(*args):
        raise AssertionError("checked again")

    monkeypatch.setattr(formats, "_inspect_uncached", no_check)
    again = formats.inspect_file(model)
    assert (again.path, again.format, again.size) == (model, "onnx", model.stat().st_size)
    formats._INSPECTED.clear()
    monkeypatch.setattr(formats, "_inspect_uncached", real_check)
    st = model.stat()
    model.write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + b"\0" * (st.st_size - 6))  # same size, a corrupt model
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ModelFileError):
        formats.inspect_file(model)
    with pytest.raises(ModelFileError):  # a failure is never remembered: it is checked, and said, every time
        formats.inspect_file(model)
    monkeypatch.setenv("EDGE_SDK_CACHE", "0")
    other = onnx_colour_classifier(tmp_path / "other.onnx")
    formats.inspect_file(other)
    assert len(list((tmp_path / "cache" / "checked").iterdir())) == 1
