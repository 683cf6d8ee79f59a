"""Signed model bundles (issue 16 item 1): keygen, bundle, verify, extract, load() with trusted keys, CLI."""

from __future__ import annotations

import json
import os
import stat
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cryptography")
pytest.importorskip("onnxruntime")

import edge_sdk as es  # noqa: E402
from edge_sdk.errors import BundleError, KeyFileError, UnsignedModelError  # noqa: E402
from edge_sdk.fleet import _archive  # noqa: E402
from edge_sdk.fleet.bundle import build_bundle, extract_bundle, verify_bundle, verify_extracted  # noqa: E402
from edge_sdk.fleet.keys import generate_keypair, key_id, load_private_key, load_public_keys  # noqa: E402


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    a, a_pub = generate_keypair(d / "signer")
    b, b_pub = generate_keypair(d / "other")
    return {"priv": a, "pub": a_pub, "other": b, "other_pub": b_pub}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import builders

    return builders.onnx_mlp(tmp_path_factory.mktemp("bundle_model") / "mlp.onnx")


@pytest.fixture
def bundle(tmp_path: Path, model: Path, keys: dict[str, Path]) -> Path:
    out = tmp_path / "mlp.edgebundle"
    build_bundle(model, out, keys["priv"], version="1.0")
    return out


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_SDK_TRUSTED_KEYS", raising=False)
    monkeypatch.setenv("EDGE_SDK_CACHE_DIR", str(tmp_path / "cache"))


def kid(pub: Path) -> str:
    return key_id(load_public_keys([pub])[0])


def rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of zip ``src`` with members replaced (bytes) or dropped (None)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change.get(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info, data)
        for name, data in change.items():
            if name not in zin.namelist() and data is not None:
                zout.writestr(name, data)
    return dst


# ---- keys ----------------------------------------------------------------------------------------------------
def test_keygen_writes_private_0600_and_public_and_refuses_to_overwrite(tmp_path: Path) -> None:
    priv, pub = generate_keypair(tmp_path / "k")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub == tmp_path / "k.pub" and pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert len(key_id(load_public_keys([pub])[0])) == 16
    assert key_id(load_private_key(priv).public_key()) == kid(pub)
    before = priv.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        generate_keypair(tmp_path / "k")
    assert priv.read_bytes() == before


def test_trusted_keys_from_env_list_and_folder(tmp_path: Path, keys: dict[str, Path]) -> None:
    spec = os.pathsep.join([str(keys["pub"]), str(keys["other_pub"])])
    assert {key_id(k) for k in load_public_keys([spec])} == {kid(keys["pub"]), kid(keys["other_pub"])}
    assert len(load_public_keys([keys["pub"].parent])) == 2  # a folder: its *.pub
    with pytest.raises(KeyFileError, match="does not exist"):
        load_public_keys([tmp_path / "missing.pub"])


# ---- round trip ----------------------------------------------------------------------------------------------
def test_bundle_verify_extract_round_trip(bundle: Path, model: Path, keys: dict[str, Path], tmp_path: Path) -> None:
    import hashlib

    m = verify_bundle(bundle, [keys["pub"]])
    assert (m.version, m.model_file, m.key_id, m.format_version) == ("1.0", "mlp.onnx", kid(keys["pub"]), 1)
    assert m.files == {"mlp.onnx": hashlib.sha256(model.read_bytes()).hexdigest()}
    with zipfile.ZipFile(bundle) as zf:
        assert sorted(zf.namelist()) == ["bundle.json", "bundle.sig", "mlp.onnx"]
        assert zf.read("bundle.json") == m.canonical_bytes()
        assert len(zf.read("bundle.sig")) == 64
    manifest, path = extract_bundle(bundle, tmp_path / "out", [keys["pub"]])
    assert manifest == m and path == tmp_path / "out" / "mlp.onnx"
    assert path.read_bytes() == model.read_bytes()
    assert verify_extracted(tmp_path / "out", [keys["pub"]]) == m
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_bundle_of_a_conversion_folder_signs_its_validation_figures(
    tmp_path: Path, model: Path, keys: dict[str, Path]
) -> None:
    from converters.manifest import file_record, write_manifest

    out = tmp_path / "conv"
    out.mkdir()
    (out / "mlp.onnx").write_bytes(model.read_bytes())
    metrics = [{"name": "y", "cosine": 0.99987, "top1_agreement": 0.984, "snr_db": float("inf")}]
    art = {
        "target": "onnx",
        "precision": "fp32",
        "path": "mlp.onnx",
        "passed": True,
        "failures": [],
        "metrics": metrics,
    }
    write_manifest(
        out,
        {"source": {"kind": "onnx"}, "artifacts": [art], "validation": {"count": 64}},
        {"mlp.onnx": file_record(out / "mlp.onnx")},
    )
    m = build_bundle(out, tmp_path / "c.edgebundle", keys["priv"])
    assert set(m.files) == {"mlp.onnx", "manifest.json"} and m.model_file == "mlp.onnx"
    assert m.validation["passed"] is True and m.validation["held_out"] == {"count": 64}
    assert m.validation["metrics"][0]["cosine"] == 0.99987
    assert m.validation["metrics"][0]["snr_db"] is None  # inf is not JSON: signed as null
    assert m.source["kind"] == "conversion" and m.source["original"] == {"kind": "onnx"}
    assert verify_bundle(tmp_path / "c.edgebundle", [keys["pub"]]).validation == m.validation


# ---- refusals ------------------------------------------------------------------------------------------------
def test_a_flipped_byte_in_a_member_names_the_member(bundle: Path, keys: dict[str, Path]) -> None:
    data = bytearray(bundle.read_bytes())
    with zipfile.ZipFile(bundle) as zf:
        info = zf.getinfo("mlp.onnx")
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0xFF
    bundle.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="member 'mlp.onnx'") as e:
        verify_bundle(bundle, [keys["pub"]])
    assert e.value.reason == "tampered" and e.value.member == "mlp.onnx"


def test_a_replaced_member_with_a_valid_zip_names_the_member(bundle: Path, keys: dict[str, Path], tmp_path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        model = bytearray(zf.read("mlp.onnx"))
    model[-5] ^= 1
    bad = rewrite(bundle, tmp_path / "bad.edgebundle", {"mlp.onnx": bytes(model)})
    with pytest.raises(BundleError, match="member 'mlp.onnx' was tampered with") as e:
        verify_bundle(bad, [keys["pub"]])
    assert e.value.reason == "tampered"
    with pytest.raises(BundleError, match="tampered"):
        extract_bundle(bad, tmp_path / "x", [keys["pub"]])
    assert not (tmp_path / "x").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_edited_manifest_or_swapped_signature_names_the_key(bundle: Path, keys: dict[str, Path], tmp_path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        raw = zf.read("bundle.json")
    edited = rewrite(bundle, tmp_path / "e.edgebundle", {"bundle.json": raw.replace(b'"1.0"', b'"9.9"')})
    with pytest.raises(BundleError, match=f"bad signature.*key {kid(keys['pub'])}") as e:
        verify_bundle(edited, [keys["pub"]])
    assert e.value.reason == "bad_signature" and e.value.key_id == kid(keys["pub"])
    other_sig = load_private_key(keys["other"]).sign(raw)  # another key's signature over the same manifest
    swapped = rewrite(bundle, tmp_path / "s.edgebundle", {"bundle.sig": other_sig})
    with pytest.raises(BundleError, match=f"key {kid(keys['pub'])}") as e:
        verify_bundle(swapped, [keys["pub"]])
    assert e.value.reason == "bad_signature"
    with pytest.raises(BundleError, match=f"signed by key {kid(keys['other_pub'])} but its manifest names key"):
        verify_bundle(swapped, [keys["other_pub"]])


def test_signed_by_another_key_names_it(tmp_path: Path, model: Path, keys: dict[str, Path]) -> None:
    out = tmp_path / "o.edgebundle"
    build_bundle(model, out, keys["other"])
    with pytest.raises(BundleError, match=f"signed by key {kid(keys['other_pub'])}, which is not trusted") as e:
        verify_bundle(out, [keys["pub"]])
    assert e.value.reason == "untrusted_key" and e.value.key_id == kid(keys["other_pub"])


@pytest.mark.parametrize(
    ("change", "reason", "text"),
    [
        ({"bundle.sig": None}, "unsigned", "unsigned"),
        ({"bundle.json": None}, "not_a_bundle", "no bundle.json"),
        ({"mlp.onnx": None}, "missing_member", "member 'mlp.onnx' is missing"),
        ({"extra.onnx": b"x"}, "unlisted_member", "member 'extra.onnx' is not listed"),
    ],
)
def test_structural_refusals(bundle: Path, keys: dict[str, Path], tmp_path: Path, change, reason, text) -> None:
    bad = rewrite(bundle, tmp_path / "bad.edgebundle", change)
    with pytest.raises(BundleError, match=text) as e:
        verify_bundle(bad, [keys["pub"]])
    assert e.value.reason == reason


def test_not_a_bundle_and_no_keys(model: Path, bundle: Path, keys: dict[str, Path]) -> None:
    with pytest.raises(BundleError, match="not a model bundle") as e:
        verify_bundle(model, [keys["pub"]])
    assert e.value.reason == "not_a_bundle"
    with pytest.raises(BundleError, match="no trusted keys.*EDGE_SDK_TRUSTED_KEYS"):
        verify_bundle(bundle)


def _signed_zip(path: Path, keys: dict[str, Path], name: str, *, mode: int = 0o100644) -> Path:
    """A bundle whose manifest (validly signed by the trusted key) lists a hostile member name."""
    import hashlib

    from edge_sdk.fleet.bundle import canonical_json

    payload = b"not a model"
    manifest = {
        "format_version": 1,
        "version": "x",
        "created": "",
        "key_id": kid(keys["pub"]),
        "files": {name: hashlib.sha256(payload).hexdigest()},
        "model_file": name,
        "metadata": {},
        "validation": {},
        "source": {},
    }
    raw = canonical_json(manifest)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("bundle.json", raw)
        zf.writestr("bundle.sig", load_private_key(keys["priv"]).sign(raw))
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, payload)
    return path


@pytest.mark.parametrize("name", ["../evil.onnx", "/tmp/evil.onnx", "sub/evil.onnx", "..\\evil.onnx", ".hidden"])
def test_path_traversal_and_odd_names_are_refused(tmp_path: Path, keys: dict[str, Path], name: str) -> None:
    bad = _signed_zip(tmp_path / "t.edgebundle", keys, name)
    for call in (lambda: verify_bundle(bad, [keys["pub"]]), lambda: extract_bundle(bad, tmp_path / "d", [keys["pub"]])):
        with pytest.raises(BundleError, match="unsafe member name") as e:
            call()
        assert e.value.reason == "unsafe_member"
    assert not (tmp_path / "d").exists() and not (tmp_path.parent / "evil.onnx").exists()


def test_symlink_member_and_oversized_member_are_refused(
    tmp_path: Path, keys: dict[str, Path], bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = _signed_zip(tmp_path / "l.edgebundle", keys, "link.onnx", mode=stat.S_IFLNK | 0o777)
    with pytest.raises(BundleError, match="'link.onnx' is not a regular file"):
        extract_bundle(link, tmp_path / "d", [keys["pub"]])
    monkeypatch.setattr(_archive, "MAX_MEMBER_BYTES", 100)
    with pytest.raises(BundleError, match="'mlp.onnx' declares .* bytes, above the 100-byte limit") as e:
        verify_bundle(bundle, [keys["pub"]])
    assert e.value.reason == "too_large"
    monkeypatch.setattr(_archive, "MAX_MEMBER_BYTES", 10**9)
    monkeypatch.setattr(_archive, "MAX_TOTAL_BYTES", 100)
    with pytest.raises(BundleError, match="declares .* bytes in all, above the 100-byte limit"):
        verify_bundle(bundle, [keys["pub"]])


# ---- load() --------------------------------------------------------------------------------------------------
def test_load_of_a_bundle_runs_like_the_raw_file(bundle: Path, model: Path, keys: dict[str, Path], monkeypatch) -> None:
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    with es.load(model) as raw:
        expected = raw.run({"x": x})["y"]
    with es.load(bundle, trusted_keys=[keys["pub"]]) as m:
        assert "bundles" in str(m.path) and Path(m.path).name == "mlp.onnx"
        np.testing.assert_array_equal(m.run({"x": x})["y"], expected)
        cached = Path(m.path)
    monkeypatch.setenv("EDGE_SDK_TRUSTED_KEYS", str(keys["pub"]))
    with es.load(bundle) as m:  # the environment's keys; the cache entry is verified, then reused
        assert Path(m.path) == cached
        np.testing.assert_array_equal(m.run({"x": x})["y"], expected)
    with es.load(cached) as m:  # a file of a verified extracted bundle is signed
        np.testing.assert_array_equal(m.run({"x": x})["y"], expected)
    cached.write_bytes(cached.read_bytes()[:-1] + b"\0")  # a damaged cache entry is extracted again
    with es.load(bundle) as m:
        np.testing.assert_array_equal(m.run({"x": x})["y"], expected)


def test_unsigned_model_refused_when_trusted_keys_are_set(model: Path, keys: dict[str, Path], monkeypatch) -> None:
    with pytest.raises(UnsignedModelError, match=r"mlp.onnx is not signed.*trusted_keys=.*edge-sdk bundle mlp.onnx"):
        es.load(model, trusted_keys=[keys["pub"]])
    monkeypatch.setenv("EDGE_SDK_TRUSTED_KEYS", str(keys["pub"]))
    with pytest.raises(UnsignedModelError, match="EDGE_SDK_TRUSTED_KEYS"):
        es.load(model)
    monkeypatch.delenv("EDGE_SDK_TRUSTED_KEYS")
    with es.load(model) as m:  # without keys, a plain file loads as before
        assert m.run({"x": np.zeros((1, 16), np.float32)})["y"].shape == (1, 4)


def test_load_refuses_untrusted_or_tampered_bundles(bundle: Path, keys: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=f"signed by key {kid(keys['pub'])}, which is not trusted"):
        es.load(bundle, trusted_keys=[keys["other_pub"]])
    with pytest.raises(BundleError, match="no trusted keys"):
        es.load(bundle)
    bad = rewrite(bundle, tmp_path / "bad.edgebundle", {"mlp.onnx": b"\x08\x07"})
    with pytest.raises(BundleError, match="member 'mlp.onnx' was tampered with"):
        es.load(bad, trusted_keys=[keys["pub"]])


# ---- CLI -----------------------------------------------------------------------------------------------------
def test_cli_keygen_bundle_verify(cli, tmp_path: Path, model: Path, keys: dict[str, Path]) -> None:
    r = cli("keygen", str(tmp_path / "k"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "k").is_file() and (tmp_path / "k.pub").is_file()
    r = cli("keygen", str(tmp_path / "j"), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["key_id"] == kid(tmp_path / "j.pub")
    r = cli("keygen", str(tmp_path / "k"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("edge-sdk keygen: error: ") and "already exists" in r.stderr
    out = tmp_path / "m.edgebundle"
    r = cli("bundle", str(model), "-o", str(out), "--key", str(tmp_path / "k"), "--version", "7", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == "7"
    r = cli("verify", str(out), "--pub", str(tmp_path / "k.pub"))
    assert r.returncode == 0, r.stderr
    own = kid(tmp_path / "k.pub")
    assert "version      7" in r.stdout and own in r.stdout and "mlp.onnx" in r.stdout
    r = cli("verify", str(out), "--pub", str(keys["pub"]))
    assert r.returncode == 4 and r.stdout == ""
    assert r.stderr.strip() == (
        f"edge-sdk verify: error: m.edgebundle is signed by key {own}, which is not trusted (trusted: "
        f"{kid(keys['pub'])})"
    )
    rewrite(out, tmp_path / "t.edgebundle", {"mlp.onnx": model.read_bytes()[:-1] + b"\0"})
    r = cli("verify", str(tmp_path / "t.edgebundle"), "--json", env={"EDGE_SDK_TRUSTED_KEYS": str(tmp_path / "k.pub")})
    assert r.returncode == 4 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("edge-sdk verify: error: ") and "member 'mlp.onnx' was tampered with" in r.stderr
    r = cli("verify", str(model), "--pub", str(keys["pub"]))
    assert r.returncode == 4 and "is not a model bundle" in r.stderr


def test_cli_info_accepts_a_bundle_with_trusted_key(cli, bundle: Path, keys: dict[str, Path], tmp_path: Path) -> None:
    env = {"EDGE_SDK_CACHE_DIR": str(tmp_path / "cli-cache")}
    r = cli("info", str(bundle), "--trusted-key", str(keys["pub"]), "--no-probe", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["path"].endswith("mlp.onnx")
    r = cli("info", str(bundle), "--no-probe", env=env)
    assert r.returncode == 4 and r.stderr.startswith("edge-sdk info: error: no trusted keys")
    r = cli("info", str(bundle), "--trusted-key", str(keys["other_pub"]), "--no-probe", env=env)
    assert r.returncode == 4 and f"signed by key {kid(keys['pub'])}, which is not trusted" in r.stderr


def test_cli_run_accepts_a_bundle_and_refuses_an_unsigned_file(cli, tmp_path: Path, keys: dict[str, Path]) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])],
        "img",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    image = tmp_path / "image.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(image))
    build_bundle(image, tmp_path / "image.edgebundle", keys["priv"])
    env = {"EDGE_SDK_CACHE_DIR": str(tmp_path / "cli-cache")}
    args = ["--task", "classify", "--source", "synthetic:?frames=2&size=32x32", "--no-probe", "--json"]
    r = cli("run", str(tmp_path / "image.edgebundle"), *args, "--trusted-key", str(keys["pub"]), env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["model"].startswith(str(tmp_path / "cli-cache" / "bundles")) and doc["metrics"]["results"] >= 1
    r = cli("run", str(image), *args, "--trusted-key", str(keys["pub"]), env=env)
    assert r.returncode == 4 and r.stderr.strip().splitlines()[-1].startswith(
        "edge-sdk run: error: " + str(image) + " is not signed, and trusted keys are set"
    )


def test_without_cryptography_the_verbs_name_the_fleet_extra(cli, hide_module, tmp_path: Path) -> None:
    r = cli("keygen", str(tmp_path / "k"), env=hide_module("cryptography"))
    assert r.returncode == 2 and not (tmp_path / "k").exists()
    assert r.stderr.strip() == (
        "edge-sdk keygen: error: signed model bundles needs edge-sdk's [fleet] extra (cryptography is not "
        'installed). Install it with: pip install "edge-sdk[fleet]"'
    )
