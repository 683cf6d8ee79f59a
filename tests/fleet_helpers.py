"""Helpers for the fleet tests: a real mosquitto on a free loopback port, tiny ONNX classifiers (good and
degraded), signed bundles with validation figures, a tampered bundle, agent processes, an MQTT watcher."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from realtime_helpers import free_port, wait_port

REPO = Path(__file__).resolve().parents[1]


def have_mosquitto() -> bool:
    return shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").is_file()


class Broker:
    """mosquitto on 127.0.0.1:port, no persistence (a restart loses every retained message and session:
    the worst case the agents and the controller must survive). ``kill()`` is SIGKILL."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        for _ in range(50):  # the port may linger a moment after a kill
            self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)  # fmt: skip
            if wait_port(self.port, 5.0):
                return self
            self.proc.kill()
            self.proc.wait(5)
            time.sleep(0.2)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def classifier(path: Path, *, size: int = 32, classes: int = 10, scale: float = 1.0, bias: float = 0.0) -> Path:
    """x[1,3,S,S] -> mean over H,W -> [1,3] @ W[3,C] * scale + b -> logits[1,C] (b[C-1] = bias: degraded)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((3, classes), np.float32)
    w[0, 0], w[1, 1], w[2, 2] = 10, 10, 10
    w *= scale
    b = np.zeros((classes,), np.float32)
    b[-1] = bias
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["logits"]),
        ],
        "colour",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def conversion_folder(folder: Path, model: Path, *, top1: float = 1.0, cosine: float = 0.9999) -> Path:
    """A conversion output folder: the model and a manifest.json recording it with validation figures."""
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / "model.onnx"
    shutil.copyfile(model, dst)
    digest = sha256(dst)
    record = {
        "files": {dst.name: {"size": dst.stat().st_size, "sha256": digest}},
        "artifacts": [{
            "target": "onnx", "precision": "fp32", "path": dst.name, "sha256": digest, "passed": True,
            "failures": [], "metrics": [{"name": "logits", "cosine": cosine, "top1_agreement": top1}],
        }],
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(record))
    return folder


def make_bundle(work: Path, model: Path, key: Path, version: str) -> tuple[Path, str]:
    """A signed bundle of ``model`` (with validation figures) at work/<version>.edgebundle; (path, sha256)."""
    from edge_sdk.fleet.bundle import build_bundle

    src = conversion_folder(work / f"conv-{version}", model)
    out = work / f"{version}.edgebundle"
    build_bundle(src, out, key, version=version)
    return out, sha256(out)


def tamper(bundle: Path, out: Path, member: str = "model.onnx") -> tuple[Path, str]:
    """A copy of ``bundle`` whose ``member`` has one byte changed (manifest and signature kept)."""
    with zipfile.ZipFile(bundle) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == member:
                data = data[:-8] + bytes([data[-8] ^ 0x01]) + data[-7:]
            zout.writestr(info, data)
    return out, sha256(out)


def agent_cmd(broker: Broker, fleet: str, device: str, state_dir: Path, pub: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edge_sdk.cli.main", "agent", "--broker", broker.url, "--fleet", fleet,
            "--device", device, "--state-dir", str(state_dir), "--trusted-key", str(pub), *extra]  # fmt: skip


def spawn(cmd: list[str], log: Path, nice: int = 5) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    fh = open(log, "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(["nice", "-n", str(nice), *cmd], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def rollout_cmd(broker: Broker, fleet: str, bundle: Path, digest: str, version: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edge_sdk.cli.main", "rollout", "--broker", broker.url, "--fleet", fleet,
            "--bundle", bundle.as_uri(), "--sha256", digest, "--version", version, "--json", *extra]  # fmt: skip


class Watcher:
    """Subscribes to a fleet's topics and keeps the last message per topic (reconnecting like the agents)."""

    def __init__(self, broker: Broker, fleet: str) -> None:
        import paho.mqtt.client as mqtt

        self.fleet = fleet
        self.last: dict[str, Any] = {}
        self.seen: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{fleet}-{os.getpid()}")
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda c, *a: c.subscribe(f"edge/v1/{fleet}/#", qos=1)
        self.client.on_message = self._message
        self.client.connect_async("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            doc: Any = json.loads(msg.payload) if msg.payload else None
        except ValueError:
            doc = msg.payload.decode("utf-8", "replace")
        with self.lock:
            self.last[msg.topic] = doc
            self.seen.append((msg.topic, doc))

    def state(self, device: str) -> dict[str, Any]:
        with self.lock:
            doc = self.last.get(f"edge/v1/{self.fleet}/{device}/model/state")
        return doc if isinstance(doc, dict) else {}

    def get(self, device: str, leaf: str) -> Any:
        with self.lock:
            return self.last.get(f"edge/v1/{self.fleet}/{device}/{leaf}")

    def history(self, device: str, leaf: str = "model/state") -> list[Any]:
        with self.lock:
            return [d for t, d in self.seen if t == f"edge/v1/{self.fleet}/{device}/{leaf}"]

    def publish(self, device: str, leaf: str, doc: Any, retain: bool = True) -> None:
        self.client.publish(f"edge/v1/{self.fleet}/{device}/{leaf}", json.dumps(doc), qos=1, retain=retain)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for(cond: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``cond`` until truthy (generous timeouts: a loaded 2-core machine); AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
