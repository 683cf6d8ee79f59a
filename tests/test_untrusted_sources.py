"""Untrusted conversion sources: crafted .pt2 / .keras files whose payload would create a file.

Each crafted file is built here from a clean one. The payload (``open(marker, "w")`` from a pickle's
``__reduce__``, or the same call hidden in the program JSON) must never run: the error names the
member and the reason, and the marker file never appears. Each test also proves its payload is live
by loading the file the way torch / Keras would without our checks, which does create the marker.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from converters import convert  # noqa: E402
from converters.sources import open_source  # noqa: E402
from edge_sdk.errors import ModelTooLargeError, SourceModelError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TRUST = r"Pass --unsafe-allow-pickle \(allow_pickle=True\) only if you trust the file"


class _Tiny(torch.nn.Module):
    """Weights, buffers and a lifted tensor constant: every kind of payload the archive holds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.register_buffer("scale", torch.full((4,), 0.5))

    def forward(self, x: Any) -> Any:
        return torch.relu(self.bn(self.conv(x))) * self.scale.view(1, 4, 1, 1) + torch.tensor(1.0)


X = torch.randn(1, 3, 8, 8)


@pytest.fixture(scope="module")
def clean_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "tiny.pt2"
    torch.export.save(torch.export.export(_Tiny().eval(), (X,)), str(path))
    return path


class _Payload:
    """Unpickling this creates ``path``: what a hostile pickle would do with os.system."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> Any:
        return (open, (self.path, "w"))


def _torch_save(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _rewrite(src: Path, dst: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """Copy the archive ``src`` to ``dst`` with ``edit`` applied to its members (named without the root folder)."""
    with zipfile.ZipFile(src) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    root = next(iter(members)).split("/")[0]
    rel = {k[len(root) + 1 :]: v for k, v in members.items()}
    edit(rel)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, data in rel.items():
            z.writestr(f"{root}/{name}", data)
    return dst


def _pickled_entry(rel: dict[str, bytes], config: str, folder: str, data: bytes, rename: str | None = None) -> None:
    """Make the first entry of a payload config a pickled one holding ``data``."""
    cfg = json.loads(rel[config])
    fqn = next(iter(cfg["config"]))
    entry = cfg["config"][fqn]
    if rename:
        entry.update(path_name=rename, tensor_meta=None)
    entry["use_pickle"] = True
    rel[folder + entry["path_name"]] = data
    rel[config] = json.dumps(cfg).encode()


def _program(rel: dict[str, bytes], edit: Callable[[dict[str, Any]], None]) -> None:
    program = json.loads(rel["models/model.json"])
    edit(program)
    rel["models/model.json"] = json.dumps(program).encode()


def _sizes_expr(program: dict[str, Any], expr: str) -> None:
    values = program["graph_module"]["graph"]["tensor_values"]
    values[next(iter(values))]["sizes"][0] = {"as_expr": {"expr_str": expr, "hint": {"as_int": 1}}}


W, C = "data/weights/", "data/constants/"
WCFG, CCFG = "data/weights/model_weights_config.json", "data/constants/model_constants_config.json"
#: (id, edit(rel, marker), the member named, the reason); every edit plants a payload creating `marker`
CASES = [
    ("sample_inputs", lambda r, m: r.__setitem__("data/sample_inputs/model.pt", _torch_save(_Payload(m))),
     "data/sample_inputs/model.pt", r"imports io\.open \(in its data\.pkl\)"),
    ("pickled_weight", lambda r, m: _pickled_entry(r, WCFG, W, _torch_save(_Payload(m))),
     "data/weights/weight_0", r"imports io\.open"),
    ("pickled_constant", lambda r, m: _pickled_entry(r, CCFG, C, _torch_save(_Payload(m))),
     "data/constants/tensor_0", r"imports io\.open"),
    ("opaque_constant", lambda r, m: _pickled_entry(r, CCFG, C, pickle.dumps(_Payload(m), 2), "opaque_obj_0"),
     "data/constants/opaque_obj_0", r"imports io\.open"),
    ("legacy_weights", lambda r, m: r.__setitem__("data/weights/model.pt", _torch_save(_Payload(m))),
     "data/weights/model.pt", r"imports io\.open"),
    ("guards_code", lambda r, m: _program(r, lambda p: p.__setitem__("guards_code", [f"open('{m}', 'w') is None"])),
     "models/model.json", r"has a guard \(guards_code, run as Python\) calling something other than a size or math "
                          r"helper: \"open\("),
    ("sympy_expr", lambda r, m: _program(r, lambda p: _sizes_expr(
        p, f"lambdify.__globals__['__builtins__']['open']({str(m)!r}, 'w')")),
     "models/model.json", r"has a symbolic shape \(expr_str, evaluated by sympy\) that is not a shape expression"),
    ("input_name", lambda r, m: r.__setitem__("models/model.json", r["models/model.json"].replace(
        b'"x"', json.dumps(f"x=open({str(m)!r}, 'w')").encode())),
     "models/model.json", r"has name \"x=open\(.*which is not an identifier"),
]  # fmt: skip


def _load_like_torch(path: Path) -> None:
    """What converting did before the check: torch.export.load, then run the module."""
    try:
        torch.export.load(str(path)).module()(X)
    except Exception:
        pass


@pytest.mark.parametrize("edit, member, reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_crafted_pt2_is_refused_and_its_payload_never_runs(clean_pt2, tmp_path, edit, member, reason):
    marker = tmp_path / "PWNED"
    bad = _rewrite(clean_pt2, tmp_path / "bad.pt2", lambda rel: edit(rel, marker))
    expected = rf"bad\.pt2: member 'tiny/{member}' {reason}.*loading it would run code\. {TRUST}"
    with pytest.raises(SourceModelError, match=expected):
        convert(bad, to=["onnx"], output_dir=tmp_path / "out")
    assert not marker.exists(), "the payload ran"
    assert not list((tmp_path / "out").glob("*.onnx"))
    _load_like_torch(bad)  # the payload is live: torch's own loader runs it
    assert marker.exists(), "the crafted file does not exercise what it claims to"


def test_enum_context_that_would_import_a_module_is_refused(clean_pt2, tmp_path):
    def edit(program: dict[str, Any]) -> None:
        spec = [1, {"type": "builtins.dict", "children_spec": [],
                    "context": json.dumps([{"__enum__": True, "fqn": "antigravity:Fly", "name": "A"}])}]  # fmt: skip
        program["graph_module"]["module_call_graph"][0]["signature"]["in_spec"] = json.dumps(spec)

    bad = _rewrite(clean_pt2, tmp_path / "enum.pt2", lambda rel: _program(rel, edit))
    with pytest.raises(SourceModelError, match=r"naming the enum 'antigravity:Fly', whose module torch would import"):
        open_source(bad)
    assert "antigravity" not in sys.modules


def test_clean_pt2_converts(clean_pt2, tmp_path):
    result = convert(clean_pt2, to=["onnx"], output_dir=tmp_path / "out")
    assert result.passed and result.artifacts[0].metrics[0].cosine > 0.9999


def test_guards_and_symbolic_shapes_torch_writes_still_load(tmp_path):
    """Dynamic and derived dims put sympy expressions, range constraints and guards_code in the program."""

    class Pair(torch.nn.Module):
        def forward(self, x: Any, y: Any) -> Any:
            return x[1:] * 2 + y

    b = torch.export.Dim("b", min=3, max=100)
    ep = torch.export.export(Pair(), (torch.randn(7, 4), torch.randn(6, 4)),
                             dynamic_shapes={"x": {0: b + 1}, "y": {0: b}})  # fmt: skip
    path = tmp_path / "dyn.pt2"
    torch.export.save(ep, str(path))
    program = json.loads(zipfile.ZipFile(path).read("dyn/models/model.json"))
    assert program["guards_code"] and "expr_str" in json.dumps(program)
    source = open_source(path)
    x, y = source.example_inputs
    np.testing.assert_allclose(source.run([x, y])[0], x[1:] * 2 + y, rtol=1e-6)


def test_allow_pickle_loads_as_torch_does(clean_pt2, tmp_path):
    marker = tmp_path / "PWNED"
    bad = _rewrite(clean_pt2, tmp_path / "bad.pt2", lambda rel: CASES[1][1](rel, marker))
    with pytest.raises(SourceModelError):
        open_source(bad, allow_pickle=True)  # the unchecked load runs the payload, then fails on what it made
    assert marker.exists(), "allow_pickle=True still checked the file"


@pytest.mark.parametrize("case", [0, 1, 3, 4], ids=[CASES[i][0] for i in (0, 1, 3, 4)])
def test_torch_load_cannot_fall_back_to_a_full_unpickle(clean_pt2, tmp_path, monkeypatch, case):
    """Even with the archive check switched off, the load itself unpickles tensor data only: torch.load is
    held to weights_only (torch.export.load retries the sample inputs with weights_only=False and loads
    pickled weights with it), the opaque constants' pickle.loads is checked."""
    import converters.pt2_guard as guard

    marker = tmp_path / "PWNED"
    bad = _rewrite(clean_pt2, tmp_path / "bad.pt2", lambda rel: CASES[case][1](rel, marker))
    monkeypatch.setattr(guard, "check_pt2_archive", lambda path, limit=None: None)
    with pytest.raises(SourceModelError):
        open_source(bad)
    assert not marker.exists()
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_cli_names_the_member_and_unsafe_allow_pickle_trusts_the_file(clean_pt2, tmp_path):
    marker = tmp_path / "PWNED"
    bad = _rewrite(clean_pt2, tmp_path / "bad.pt2", lambda rel: CASES[0][1](rel, marker))
    cmd = [sys.executable, "-m", "edge_sdk.cli.main", "convert", str(bad), "--to", "onnx", "-o", str(tmp_path / "o")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "member 'tiny/data/sample_inputs/model.pt' imports io.open" in r.stderr
    assert "Traceback" not in r.stderr and not marker.exists()
    r = subprocess.run([*cmd, "--unsafe-allow-pickle"], capture_output=True, text=True, timeout=600, env=env,
                       cwd=tmp_path)  # fmt: skip
    assert marker.exists(), r.stderr


# ---- bounds: zip members and declared tensors against the memory budget ---------------------------------
def test_pt2_member_past_the_budget_is_refused_unread(clean_pt2, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_MAX_MODEL_MEMORY", "4K")
    with pytest.raises(ModelTooLargeError, match=r"tiny\.pt2: member 'tiny/models/model\.json' unpacks to .*"
                                                 r"memory budget 4\.0 KiB.*EDGE_SDK_MAX_MODEL_MEMORY"):  # fmt: skip
        open_source(clean_pt2)


def test_pt2_declaring_a_huge_tensor_is_refused(clean_pt2, tmp_path):
    def edit(rel: dict[str, bytes]) -> None:
        cfg = json.loads(rel[WCFG])
        entry = cfg["config"]["conv.weight"]
        entry["tensor_meta"]["sizes"] = [{"as_int": 1 << 20}, {"as_int": 1 << 20}, {"as_int": 1 << 10}]
        rel[W + entry["path_name"]] = b""  # an empty member: torch would allocate torch.zeros(sizes)
        rel[WCFG] = json.dumps(cfg).encode()

    bad = _rewrite(clean_pt2, tmp_path / "huge.pt2", edit)
    with pytest.raises(ModelTooLargeError, match=r"declares tensor 'conv\.weight' of shape \[1048576, 1048576, 1024\]"):
        open_source(bad)


def _keras_model(path: Path, lambda_layer: bool = True) -> Path:
    import keras

    inp = keras.Input((4,))
    x = keras.layers.Dense(3, name="dense")(inp)
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    keras.Model(inp, x).save(path)
    return path


def _edit_keras(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    with zipfile.ZipFile(src) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return dst


def _layer(config: dict[str, Any], class_name: str) -> dict[str, Any]:
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == class_name)


def test_lambda_layers_load_only_when_allowed(tmp_path):
    import keras

    x = np.ones((2, 4), np.float32)
    for path in (_keras_model(tmp_path / "lam.keras"), _keras_model(tmp_path / "lam.h5")):
        with pytest.raises(SourceModelError, match=r"contains Lambda layer\(s\) \['double'\].*--unsafe-allow-lambda"):
            open_source(path)
        source = open_source(path, allow_lambda=True)
        reference = keras.saving.load_model(path, safe_mode=False, compile=False)(x).numpy()
        np.testing.assert_allclose(source.run([x])[0], reference, rtol=1e-6)


def _torch_module_wrapper(src: Path, dst: Path, marker: Path) -> Path:
    def edit(config: dict[str, Any]) -> None:
        dense = _layer(config, "Dense")
        module = base64.b64encode(_torch_save(_Payload(marker))).decode()
        dense.update(module="keras.layers", class_name="TorchModuleWrapper", registered_name=None)
        dense["config"] = {"name": "dense", "trainable": True, "module": module, "output_shape": None}

    return _edit_keras(src, dst, edit)


def test_allow_lambda_still_refuses_a_torch_module_wrapper(tmp_path, monkeypatch):
    import keras

    import converters.sources as sources

    marker = tmp_path / "PWNED"
    bad = _torch_module_wrapper(_keras_model(tmp_path / "lam.keras"), tmp_path / "tmw.keras", marker)
    expected = (
        r"tmw\.keras holds objects that would run code on load, refused \(--unsafe-allow-lambda allows "
        r"built-in Lambda layers only\): layer 'dense' \(TorchModuleWrapper\): a pickled torch module"
    )
    with pytest.raises(SourceModelError, match=expected):
        open_source(bad, allow_lambda=True)
    assert not marker.exists()
    monkeypatch.setattr(sources, "unsafe_objects", lambda config: [])  # without our message, Keras still refuses
    with pytest.raises(SourceModelError, match=r"torch\.load\(\)"):
        open_source(bad, allow_lambda=True)
    assert not marker.exists()
    try:  # the payload is live: what --unsafe-allow-lambda used to do (safe_mode=False) runs it
        keras.saving.load_model(bad, safe_mode=False, compile=False)
    except Exception:
        pass
    assert marker.exists()


def test_allow_lambda_refuses_a_lambda_outside_a_lambda_layer(tmp_path):
    src = _keras_model(tmp_path / "lam.keras")

    def edit(config: dict[str, Any]) -> None:  # the Lambda layer's own bytecode, as the Dense activation
        _layer(config, "Dense")["config"]["activation"] = _layer(config, "Lambda")["config"]["function"]

    bad = _edit_keras(src, tmp_path / "act.keras", edit)
    with pytest.raises(SourceModelError, match=r"layer 'dense': a Python lambda outside a Lambda layer's function"):
        open_source(bad, allow_lambda=True)


def test_keras_zip_bomb_is_refused_before_unpacking(tmp_path, monkeypatch):
    src = _keras_model(tmp_path / "plain.keras", lambda_layer=False)
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for info in z.infolist():
            if info.filename != "config.json":
                out.writestr(info.filename, z.read(info))
        with out.open("config.json", "w") as f:  # 17 MiB of spaces: valid JSON padding, ~17 KiB packed
            f.write(z.read("config.json"))
            for _ in range(17):
                f.write(b" " * (1 << 20))
    assert bomb.stat().st_size < 200_000
    expected = (
        r"bomb\.keras: member 'config\.json' unpacks to 17\.0 MiB \(\d+ bytes\) from \d+ bytes, \d+:1 "
        r"\(more than 200:1\)"
    )
    with pytest.raises(ModelTooLargeError, match=expected):
        open_source(bomb)
    monkeypatch.setenv("EDGE_SDK_MAX_MODEL_MEMORY", "1M")
    with pytest.raises(
        ModelTooLargeError, match=r"member 'config\.json' unpacks to 17\.0 MiB .*memory budget 1\.0 MiB"
    ):
        open_source(bomb)


def test_h5_model_config_past_the_cap_is_refused(tmp_path, monkeypatch):
    import h5py

    path = tmp_path / "big.h5"
    with h5py.File(path, "w", libver="latest") as f:  # "latest": attributes past 64 KiB
        f.attrs["model_config"] = np.bytes_(b" " * 2_000_000)
    monkeypatch.setenv("EDGE_SDK_MAX_MODEL_MEMORY", "1M")
    with pytest.raises(ModelTooLargeError, match=r"big\.h5: its model_config attribute is 1\.9 MiB \(2000000 bytes\)"):
        open_source(path)
