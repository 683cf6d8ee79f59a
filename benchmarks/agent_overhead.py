"""One device agent's overhead on a running pipeline: pipeline fps without and with `edge-sdk agent` beside it.

In one run, against a real mosquitto on 127.0.0.1 (started here), the same pipeline (a synthetic camera
at full speed -> a small conv-net classifier built with onnx.helper, ~224x224 input) runs in this process
for ``--seconds`` per phase, phases interleaved ``--rounds`` times so machine drift hits both sides:

- ``none``: no agent;
- ``idle``: an agent process connected to the broker, a model live, telemetry every second (steady state);
- ``installing``: the same agent kept installing new versions back to back (download, verify, stage, a
  probation running both models on 30 frames x 3, activate): the worst case, one install after another.

Prints a table and, with ``--json``, one JSON document; ratio = phase fps / ``none`` fps (median of rounds),
and the agent's own CPU share over each phase (from /proc: a figure other load on the machine cannot blur).

    .venv/bin/python benchmarks/agent_overhead.py --seconds 6 --rounds 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FINAL = ("active", "rolled_back", "failed")
sys.path.insert(0, str(REPO / "tests"))  # fleet_helpers: broker, bundles, watcher


def convnet(path: Path, size: int = 224, scale: float = 1.0) -> Path:
    """3 strided 3x3 convs (16/32/64 channels) + global pool + dense 10: a few ms per frame on a laptop CPU."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes, c_in, x = [], [], 3, "x"
    for i, c in enumerate((16, 32, 64)):
        w = (rng.standard_normal((c, c_in, 3, 3)) * np.sqrt(2.0 / (9 * c_in)) * scale).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], strides=[2, 2], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]  # fmt: skip
        c_in, x = c, f"r{i}"
    inits.append(numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "fc"))
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("MatMul", ["f", "fc"], ["logits"])]  # fmt: skip
    graph = helper.make_graph(
        nodes, "convnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def pipeline_fps(model: Any, seconds: float) -> float:
    from edge_sdk.pipeline import Pipeline
    from edge_sdk.preprocess import PreprocessSpec

    spec = PreprocessSpec(size=(224, 224), mean=0.0, std=255.0)
    p = Pipeline("synthetic:?fps=0&size=320x240", model, task="classify", preprocess=spec, metrics_every=0)
    return float(p.run(duration=seconds)["fps"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), 0.0 when unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def timed(phase: str, model: Any, seconds: float, pid: int | None, fps: dict, cpu: dict) -> None:
    """One phase: the pipeline's fps, and the agent's CPU share over the same wall time."""
    c0, t0 = (cpu_seconds(pid) if pid else 0.0), time.monotonic()
    fps[phase].append(pipeline_fps(model, seconds))
    if pid:
        cpu[phase].append(round(100.0 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0), 2))


class Installer(threading.Thread):
    """Publishes the next desired version as soon as the agent reports the previous one final."""

    def __init__(self, watch: Any, bundles: list[tuple[str, Path, str]]) -> None:
        super().__init__(daemon=True)
        self.watch, self.bundles, self.stop, self.installs = watch, bundles, threading.Event(), 0

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            version, path, digest = self.bundles[i % len(self.bundles)]
            self.watch.publish("dev", "model/desired", {"version": version, "url": path.as_uri(), "sha256": digest})
            while not self.stop.is_set():
                st = self.watch.state("dev")
                if st.get("version") == version and st.get("state") in FINAL:
                    self.installs += 1
                    break
                time.sleep(0.05)
            i += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="per phase per round (6)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from fleet_helpers import Broker, Watcher, agent_cmd, make_bundle, spawn, wait_for

    import edge_sdk as es
    from edge_sdk.fleet.keys import generate_keypair

    work = Path(tempfile.mkdtemp(prefix="agent-overhead-"))
    broker = Broker(work).start()
    key, pub = generate_keypair(work / "k")
    bundles = []
    for i in range(6):  # v0..v5: scaled copies, so every install passes its probation
        v = f"v{i}"
        path, digest = make_bundle(work, convnet(work / f"{v}.onnx", scale=1 + i / 1000), key, v)
        bundles.append((v, path, digest))
    watch = Watcher(broker, "bench")
    cmd = agent_cmd(broker, "bench", "dev", work / "state", pub, "--telemetry-every", "1")
    agent = spawn(cmd, work / "agent.log", nice=0)
    fps: dict[str, list[float]] = {"none": [], "idle": [], "installing": []}
    cpu: dict[str, list[float]] = {"idle": [], "installing": []}
    installs = 0

    def settled() -> bool:
        return watch.get("dev", "status") == "online" and watch.state("dev").get("state") in FINAL

    try:
        wait_for(lambda: watch.get("dev", "status") == "online", 60, "agent online")
        v, path, digest = bundles[0]
        watch.publish("dev", "model/desired", {"version": v, "url": path.as_uri(), "sha256": digest})
        wait_for(lambda: watch.state("dev").get("state") == "active", 120, "first model live")
        with es.load(convnet(work / "pipeline.onnx")) as model:
            pipeline_fps(model, 2.0)  # warm-up
            for _ in range(args.rounds):
                agent.terminate()  # "none": no agent process at all
                agent.wait(15)
                wait_for(lambda: watch.get("dev", "status") == "offline", 30, "agent gone")
                timed("none", model, args.seconds, None, fps, cpu)
                agent = spawn(cmd, work / "agent.log", nice=0)  # restarts from its state folder
                wait_for(settled, 60, "agent back")
                time.sleep(2.0)  # past its start-up
                timed("idle", model, args.seconds, agent.pid, fps, cpu)
                inst = Installer(watch, bundles[1:])
                inst.start()
                timed("installing", model, args.seconds, agent.pid, fps, cpu)
                inst.stop.set()
                inst.join(60)
                installs += inst.installs
                wait_for(settled, 120, "last install done")
    finally:
        agent.terminate()
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
        watch.close()
        broker.stop()
    base = statistics.median(fps["none"])
    report = {
        "seconds_per_phase": args.seconds, "rounds": args.rounds, "cpus": os.cpu_count(),
        "fps": fps, "median_fps": {k: statistics.median(v) for k, v in fps.items()},
        "ratio": {k: round(statistics.median(v) / base, 3) for k, v in fps.items()},
        "agent_cpu_percent": cpu, "installs_during_installing_phase": installs,
        "load_average": os.getloadavg(),
    }  # fmt: skip
    for k in fps:
        print(f"{k:>11}: fps {report['median_fps'][k]:8.1f}  ratio {report['ratio'][k]:.3f}  "
              f"rounds {', '.join(f'{x:.1f}' for x in fps[k])}", file=sys.stderr)  # fmt: skip
    for k, v in cpu.items():
        print(f"agent CPU while {k}: {', '.join(f'{x:.2f}%' for x in v)} of one core", file=sys.stderr)
    print(f"installs while 'installing': {installs}; load average {report['load_average']}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
