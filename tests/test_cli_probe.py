"""The CLI's device verbs probe an untrusted file in an isolated child first.

A runtime that crashes natively, hangs or exhausts memory on a file gives one error line naming
the file and a non-zero exit, never a dead ``edge-sdk``; a file that passed is remembered by its
hash, so the second run spawns no child.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from builders import onnx_mlp


def _segfault(module: str, attribute: str) -> str:
    """sitecustomize code that makes ``module.attribute`` kill the process with SIGSEGV, as a native crash would."""
    die = "def _die(*a, **k):\n    os.kill(os.getpid(), signal.SIGSEGV)\n"
    return f"import {module}\n{die}{module}.{attribute} = _die\n"


CRASH_ORT = _segfault("onnxruntime", "InferenceSession")
CRASH_OV_READ = _segfault("openvino", "Core.read_model")
HANG_ORT = "import onnxruntime, time\nonnxruntime.InferenceSession = lambda *a, **k: time.sleep(3600)\n"


def _site(tmp_path, body: str = "", counter: str | None = None) -> dict[str, str]:
    """Env whose Python processes run ``body`` at start-up; probe children also append a line to ``counter``."""
    site = tmp_path / "probe_site"
    site.mkdir(exist_ok=True)
    count = ""
    if counter:
        count = (
            "if b'edge_sdk.isolation' in open('/proc/self/cmdline', 'rb').read():\n"
            f"    open({counter!r}, 'a').write('probe\\n')\n"
        )
    (site / "sitecustomize.py").write_text("import os, signal\n" + count + body)
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def env(tmp_path):
    """A private cache root for the verdicts, so no test sees another's."""
    return {"EDGE_SDK_CACHE_DIR": str(tmp_path / "cache")}


def _one_error_line(proc, verb: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"edge-sdk {verb}: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def openvino_ir(tmp_path_factory):
    ov = pytest.importorskip("openvino")
    folder = tmp_path_factory.mktemp("probe_ir")
    onnx_path = onnx_mlp(folder / "net.onnx", batch=1)
    xml = folder / "net.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml


def test_info_survives_openvino_crashing_in_read_model(cli, openvino_ir, tmp_path, env):
    proc = cli("info", str(openvino_ir), env={**env, **_site(tmp_path, CRASH_OV_READ)})
    line = _one_error_line(proc, "info")
    assert "openvino crashed (SIGSEGV) while reading net.xml in an isolated process" in line
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "verb, extra",
    [
        ("bench", ["--runs", "1", "--warmup", "0"]),
        ("run", ["--task", "classify", "--source", "synthetic:", "--max-results", "1"]),
    ],
)
def test_load_verbs_survive_onnxruntime_crashing(cli, mlp_onnx, tmp_path, env, verb, extra):
    proc = cli(verb, str(mlp_onnx), *extra, env={**env, **_site(tmp_path, CRASH_ORT)})
    line = _one_error_line(proc, verb)
    assert "onnxruntime crashed (SIGSEGV) while loading mlp.onnx in an isolated process" in line


def test_a_good_file_is_probed_once_then_remembered(cli, mlp_onnx, tmp_path, env):
    counter = tmp_path / "probes.txt"
    site = _site(tmp_path, counter=str(counter))
    first = cli("info", str(mlp_onnx), "--json", "--verbose", env={**env, **site})
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["format"] == "onnx"  # --json stays pure JSON on stdout
    assert "passed in an isolated process" in first.stderr
    assert counter.read_text().count("probe") == 1
    verdicts = list((tmp_path / "cache" / "probes").glob("*.json"))
    assert len(verdicts) == 1
    record = json.loads(verdicts[0].read_text())
    assert record["ok"] is True and record["file"] == "mlp.onnx" and record["kind"] == "info"

    second = cli("info", str(mlp_onnx), "--verbose", env={**env, **site})
    assert second.returncode == 0, second.stderr
    assert "mlp.onnx passed before" in second.stderr
    assert counter.read_text().count("probe") == 1  # no child the second time

    quiet = cli("info", str(mlp_onnx), env={**env, **site})
    assert quiet.stderr == ""  # the probe says nothing without --verbose

    bench = cli("bench", str(mlp_onnx), "--runs", "1", "--warmup", "0", "--json", env={**env, **site})
    assert bench.returncode == 0, bench.stderr
    assert counter.read_text().count("probe") == 2  # a load probe is another verdict than info's
    assert len(list((tmp_path / "cache" / "probes").glob("*.json"))) == 2


def test_a_changed_file_is_probed_again(cli, tmp_path, env):
    counter = tmp_path / "probes.txt"
    site = _site(tmp_path, counter=str(counter))
    model = onnx_mlp(tmp_path / "m.onnx")
    assert cli("info", str(model), env={**env, **site}).returncode == 0
    onnx_mlp(model, out_features=5)
    assert cli("info", str(model), env={**env, **site}).returncode == 0
    assert counter.read_text().count("probe") == 2


def test_no_probe_and_cache_off(cli, mlp_onnx, tmp_path, env):
    counter = tmp_path / "probes.txt"
    site = _site(tmp_path, counter=str(counter))
    proc = cli("info", str(mlp_onnx), "--no-probe", "--verbose", env={**env, **site})
    assert proc.returncode == 0 and "probe: skipped" in proc.stderr
    assert not counter.exists()
    off = {**env, **site, "EDGE_SDK_CACHE": "0"}
    for _ in range(2):
        assert cli("info", str(mlp_onnx), env=off).returncode == 0
    assert counter.read_text().count("probe") == 2  # no verdicts kept: a child each time
    assert not (tmp_path / "cache" / "probes").exists()


def test_help_documents_the_probe(cli):
    for verb in ("info", "bench", "run"):
        out = cli(verb, "--help").stdout
        assert "--no-probe, --trust" in out and "--probe-memory" in out and "--probe-timeout" in out


def _hungry_onnx(path):
    """A tiny ONNX model whose first run allocates 2.5 GB (ConstantOfShape of a computed shape)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Mul", ["s", "n"], ["big"]),
        helper.make_node("ConstantOfShape", ["big"], ["z"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1])),
        helper.make_node("ReduceSum", ["z"], ["y"], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "hungry",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.array([625_000_000], np.int64), "n")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_model_past_the_probe_memory_limit_is_a_typed_error(cli, tmp_path, env):
    model = _hungry_onnx(tmp_path / "hungry.onnx")
    proc = cli("bench", str(model), "--runs", "1", env={**env, "EDGE_SDK_PROBE_MEMORY": "2G"})
    line = _one_error_line(proc, "bench")
    assert "hungry.onnx needs more memory than the isolated probe's limit of 2.0 GiB" in line
    assert "Failed to allocate memory" in line  # the runtime's own words
    assert "EDGE_SDK_PROBE_MEMORY=4G (CLI: --probe-memory 4G)" in line
    assert not (tmp_path / "cache" / "probes").exists()  # failures are not remembered


def test_a_hang_is_cut_by_the_probe_timeout(cli, mlp_onnx, tmp_path, env):
    proc = cli("bench", str(mlp_onnx), "--probe-timeout", "20", env={**env, **_site(tmp_path, HANG_ORT)})
    line = _one_error_line(proc, "bench")
    assert "did not finish" in line and "mlp.onnx in 20 s in an isolated process" in line
    assert "--probe-timeout" in line
