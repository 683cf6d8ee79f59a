"""Camera classification with EfficientNet-Lite0 (ImageNet): a real camera, or the embedded demo clip.

python examples/camera_classification/classify.py                       # camera 0, else the demo clip
python examples/camera_classification/classify.py --source rtsp://cam/stream --sink http://:8080
python examples/camera_classification/classify.py --source clip.mp4 --sink out.mp4 --sink events.jsonl
"""

from __future__ import annotations

import argparse
import os
import sys

import edge_sdk as es
from edge_sdk.cli.demo_media import demo_clip
from edge_sdk.zoo_models import resolve_model


def default_source() -> str:
    """Camera 0 when one is plugged in, else the clip made from the real sample photos."""
    return "0" if os.path.exists("/dev/video0") else str(demo_clip())


def main() -> int:
    ap = argparse.ArgumentParser(description="EfficientNet-Lite0 on a camera or video, in real time")
    ap.add_argument("--source", default=None, help="camera, file, rtsp://... (default: camera or demo)")
    ap.add_argument("--sink", action="append", default=None, help="http://:8080, out.mp4, events.jsonl, -, window")
    ap.add_argument("--duration", type=float, default=None, help="seconds to run (default: until the source ends)")
    ap.add_argument("--top-k", type=int, default=3)
    args = ap.parse_args()

    rm = resolve_model("zoo:efficientnet-lite0")  # converted to ONNX once, then cached
    source = args.source or default_source()
    sinks = args.sink or ["out/camera_classification.mp4"]
    last = {}
    with es.load(rm.path) as model:
        pipe = es.Pipeline(source, model, task="classify", preprocess=rm.preprocess, labels=rm.labels, sinks=sinks,
                           top_k=args.top_k, on_result=last.update)  # fmt: skip
        m = pipe.run(duration=args.duration)
    label = last.get("top", [{}])[0].get("label")
    print(f"source {source}: {m['results']} frames at {m['fps']} fps, latency p50 {m['latency_ms']['p50']} ms, "
          f"dropped {m['frames']['dropped']}; last: {label}; sinks: {sinks}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
