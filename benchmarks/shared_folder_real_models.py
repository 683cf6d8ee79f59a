"""Two real zoo models converted into ONE folder, then each copied alone elsewhere and run with no flags.

The issue's silent wrong answer: both conversions shared one manifest.json, so the first model ran with the
second's preprocessing (a cat became "pillow"). Each artifact now carries its own record, so each copy must
give its right answer with no ``--task`` and no preprocessing flags:

- EfficientNet-Lite0 on ``chelsea``: ImageNet class 285 (Egyptian cat);
- CenterFace on ``astronaut``: one face.

    .venv/bin/python benchmarks/shared_folder_real_models.py [--targets onnx,openvino] [--work DIR]

Slow (two real conversions, minutes on 2 cores): kept out of the test suite. Exit 0 when every copy is right.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}
CASES = {  # zoo model -> (photo, what its answer must be)
    "efficientnet-lite0": ("chelsea", lambda r: r["top"][0]["class"] == 285),
    "centerface": ("astronaut", lambda r: r["count"] == 1),
}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_sdk.cli.main", *args], capture_output=True, text=True,
                          cwd=REPO, check=False)  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="onnx", help="formats to convert to (default onnx)")
    ap.add_argument("--work", help="work folder (default: a temp folder, removed)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="shared-folder-"))
    shared = work / "shared"
    import cv2

    from converters.datasets import named_image

    for _, (photo, _) in CASES.items():
        (work / photo).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(work / photo / f"{photo}.png"), named_image(photo)[..., ::-1])
    for model in CASES:
        start = time.monotonic()
        r = cli("convert", f"zoo:{model}", "--to", args.targets, "-o", str(shared))
        print(f"convert zoo:{model} -> {shared}: exit {r.returncode}, {time.monotonic() - start:.0f} s")
        if r.returncode:
            print(r.stderr[-2000:])
            return 1
    listed = sorted(json.loads((shared / "manifest.json").read_text())["files"])
    print(f"manifest lists: {', '.join(listed)}")
    wrong = 0
    for model, (photo, right) in CASES.items():
        for target in args.targets.split(","):
            src = shared / f"{model}_fp32{SUFFIX[target]}"
            alone = work / f"alone-{model}-{target}"
            alone.mkdir()
            for p in [src, src.with_suffix(".bin")] if target == "openvino" else [src]:
                shutil.copy(p, alone / p.name)
            r = cli("run", str(alone / src.name), "--source", str(work / photo), "--no-probe", "--json")
            doc = json.loads(r.stdout) if r.returncode == 0 else {}
            result = doc.get("last_result") or {}
            ok = bool(result) and right(result)
            wrong += not ok
            answer = result.get("top", [{}])[0].get("label") if "top" in result else f"{result.get('count')} face(s)"
            print(f"{src.name} alone on {photo}: task {doc.get('task')} ({doc.get('metadata')}), answer {answer}: "
                  f"{'right' if ok else 'WRONG ' + r.stderr[-500:]}")  # fmt: skip
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
