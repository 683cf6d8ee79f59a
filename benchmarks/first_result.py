"""Time to first result: ``edge-sdk run MODEL --source IMAGE`` against the minimal raw script a user would write.

Issue 14's target: the CLI's first result within 1.2x of a hand-written script that imports the runtime and
OpenCV, loads the same model, reads the same image, pre-processes it and prints the top class. Both are fresh
processes (imports, model load and the first inference all count), timed from the process start to the line
with the result on stdout, in interleaved rounds (the order alternates) so machine load hits both alike. The
CLI runs with its verdict cache warm (a first ever run on a file also probes it in an isolated child: reported
apart, once) and with the warm-up inference on, as users run it.

    python benchmarks/first_result.py                 # markdown table on stdout
    python benchmarks/first_result.py --rounds 10 --json

Models: EfficientNet-Lite0 converted once into ``--workdir`` as ONNX (onnxruntime) and OpenVINO IR (openvino),
carrying their pre-processing inside (so ``run`` needs no flags); the image is scikit-image's ``chelsea`` (285).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
EDGE_SDK = str(Path(PY).with_name("edge-sdk"))

RAW_ONNX = """
import sys, numpy as np, onnxruntime as ort, cv2
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
inp = s.get_inputs()[0]
img = cv2.cvtColor(cv2.imread(sys.argv[2]), cv2.COLOR_BGR2RGB)
x = cv2.resize(img, (224, 224), interpolation=cv2.INTER_LINEAR).astype(np.float32)
x = ((x - 127.0) / 128.0).transpose(2, 0, 1)[None]
print(int(np.argmax(s.run(None, {inp.name: x})[0])), flush=True)
"""

RAW_OPENVINO = """
import sys, numpy as np, openvino as ov, cv2
m = ov.Core().compile_model(sys.argv[1], "CPU")
img = cv2.cvtColor(cv2.imread(sys.argv[2]), cv2.COLOR_BGR2RGB)
x = cv2.resize(img, (224, 224), interpolation=cv2.INTER_LINEAR).astype(np.float32)
x = ((x - 127.0) / 128.0).transpose(2, 0, 1)[None]
print(int(np.argmax(m(x)[0])), flush=True)
"""


def first_line_seconds(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Seconds from the process start to its first stdout line that carries a result; and that line."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    assert p.stdout is not None
    try:
        for line in p.stdout:  # the CLI's JSON lines start with a source event; the raw script prints the class
            if line.strip() and (not line.startswith("{") or '"type": "result"' in line):
                return time.perf_counter() - start, line.strip()
        raise RuntimeError(f"{cmd[:3]} printed no result (exit {p.wait()})")
    finally:
        p.kill()
        p.wait()


def prepare(workdir: Path) -> dict[str, Path]:
    """EfficientNet-Lite0 converted once to ONNX and OpenVINO IR (fp32), and chelsea as a PNG."""
    import cv2
    from skimage import data  # benchmark-only dependency ([zoo])

    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / "chelsea.png"
    cv2.imwrite(str(image), cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR))
    if not (list(workdir.glob("*_fp32.onnx")) and list(workdir.glob("*_fp32.xml"))):
        subprocess.run([EDGE_SDK, "convert", "zoo:efficientnet-lite0", "--to", "onnx,openvino", "--precision", "fp32",
                        "-o", str(workdir)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return {"image": image, "onnx": next(workdir.glob("*_fp32.onnx")), "openvino": next(workdir.glob("*_fp32.xml"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "edge_sdk_first_result"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    files = prepare(Path(args.workdir))
    # as installed packages run: with bytecode caches (a sandbox may set PYTHONDONTWRITEBYTECODE, which makes every
    # start compile edge_sdk's sources again: 0.2 s that the raw script, importing only compiled wheels, never pays)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"PYTHONWARNINGS": "ignore"}
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "edge_sdk"), str(ROOT / "devices")], check=False, env=env)
    rows = []
    for fmt, raw in (("onnx", RAW_ONNX), ("openvino", RAW_OPENVINO)):
        model = str(files[fmt])
        cli = [EDGE_SDK, "run", model, "--source", str(files["image"]), "--sink", "-", "--max-results", "1"]
        raw_cmd = [PY, "-c", raw, model, str(files["image"])]
        first_probe, _ = first_line_seconds(cli, env)  # fills the probe-verdict cache (a new file's one-off cost)
        times: dict[str, list[float]] = {"raw": [], "cli": []}
        answers: dict[str, set[str]] = {"raw": set(), "cli": set()}
        for r in range(args.rounds):
            order = (("raw", raw_cmd), ("cli", cli)) if r % 2 == 0 else (("cli", cli), ("raw", raw_cmd))
            for name, cmd in order:
                seconds, line = first_line_seconds(cmd, env)
                times[name].append(seconds)
                answers[name].add(str(json.loads(line)["top"][0]["class"]) if name == "cli" else line)
        raw_s, cli_s = statistics.median(times["raw"]), statistics.median(times["cli"])
        per_round = statistics.median(c / r for c, r in zip(times["cli"], times["raw"]))
        rows.append({"format": fmt, "raw_s": round(raw_s, 3), "cli_s": round(cli_s, 3),
                     "ratio": round(cli_s / raw_s, 3), "round_ratio": round(per_round, 3),
                     "first_cli_run_with_probe_s": round(first_probe, 3), "rounds": args.rounds,
                     "answers": {k: sorted(v) for k, v in answers.items()}, "target": 1.2})  # fmt: skip
    if args.json:
        print(json.dumps({"load_avg": os.getloadavg(), "rows": rows}, indent=2))
        return 0
    print(f"load average at the end: {os.getloadavg()[0]:.2f}\n")
    print("| model | raw script s | edge-sdk run s | ratio | per-round ratio | first run (probe) s | answers |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | {r['raw_s']:.2f} | {r['cli_s']:.2f} | {r['ratio']:.2f} | {r['round_ratio']:.2f} | "
              f"{r['first_cli_run_with_probe_s']:.2f} | raw {r['answers']['raw']}, cli {r['answers']['cli']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
