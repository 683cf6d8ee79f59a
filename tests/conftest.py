from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import builders  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def mlp_onnx(model_dir: Path) -> Path:
    return builders.onnx_mlp(model_dir / "mlp.onnx")


@pytest.fixture(scope="session")
def two_io_onnx(model_dir: Path) -> Path:
    return builders.onnx_two_io(model_dir / "two_io.onnx")


@pytest.fixture(scope="session")
def three_formats(model_dir: Path) -> dict[str, Path]:
    return builders.keras_three_formats(model_dir / "keras_net")


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pruning/QAT tests' tiny PyTorch model (dead second halves) as ONNX."""
    pytest.importorskip("torch")
    from tiny_torch import tiny_onnx_file

    return tiny_onnx_file(tmp_path_factory.mktemp("tiny_prunable") / "tiny.onnx")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``edge-sdk`` as a user would (a new process), capturing its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edge_sdk.cli.main", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO,
    )  # fmt: skip


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def hide_module(tmp_path: Path):
    """Env for a child process in which the given top-level modules cannot be imported."""

    def make(*modules: str) -> dict[str, str]:
        site = tmp_path / "hide_site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(
            "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
        )
        return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}

    return make


@functools.cache
def _shares_fixtures(test_file: str) -> bool:
    """Whether a test file defines a module- or class-scoped fixture (a conversion, a corpus of models)."""
    try:
        text = (REPO / test_file).read_text(encoding="utf-8")
    except OSError:
        return False
    return 'scope="module"' in text or 'scope="class"' in text


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``make test`` runs ``pytest -n N --dist loadscope``: a file that shares a module fixture runs on one worker,
    so the fixture is built once; every other test is scheduled on its own (xdist's ``loadscope`` would keep
    each whole file together, and ``loadgroup``'s marks are lost under pytest 9: xdist 3.8 renames node ids)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            test_file = nodeid.split("::", 1)[0]
            return test_file if _shares_fixtures(test_file) else nodeid

    return SharedFixtureScheduling(config, log)


@pytest.fixture(scope="module")
def cli_models(tmp_path_factory):
    """A dynamic-batch MLP (x[batch,16] -> y[batch,4]), a static one, a Relu of any image size and a tiny image
    classifier, as ONNX files: what the newcomer and --json CLI tests run."""
    folder = tmp_path_factory.mktemp("newcomer_models")
    return {
        "dynamic": builders.onnx_mlp(folder / "dyn.onnx"),
        "static": builders.onnx_mlp(folder / "static.onnx", batch=1),
        "spatial": builders.relu_image_onnx(folder / "spatial.onnx"),
        "image": builders.image_classifier_onnx(folder / "image.onnx"),
    }
