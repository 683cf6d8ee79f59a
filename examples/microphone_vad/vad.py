"""Voice activity detection with Silero VAD: a real microphone, a WAV file, or the embedded default speech.

python examples/microphone_vad/vad.py                        # the microphone, else the default speech clip
python examples/microphone_vad/vad.py --source mic:          # insist on the microphone (error if none)
python examples/microphone_vad/vad.py --source speech.wav --fast --sink vad.jsonl
"""

from __future__ import annotations

import argparse
import sys

import edge_sdk as es
from edge_sdk.zoo_models import resolve_model


def microphone_available() -> bool:
    try:
        from edge_sdk.sources.audio_mic import import_sounddevice

        sd = import_sounddevice()
        sd.query_devices(kind="input")
        return True
    except Exception:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description="Silero VAD on a microphone or a WAV file, in real time")
    ap.add_argument("--source", help="mic: | mic:2 | file.wav | synthetic-audio:noise (default: mic, else the demo)")
    ap.add_argument("--sink", action="append", default=None, help="events.jsonl, -, mqtt://host/topic")
    ap.add_argument("--fast", action="store_true", help="play a WAV as fast as possible instead of in real time")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--min-silence-ms", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    args = ap.parse_args()

    truth = None
    source = args.source
    if source is None and microphone_available():
        source = "mic:"
    if source is None:
        from edge_sdk.audio.default_media import default_speech_wav

        path, truth = default_speech_wav()  # espeak-ng speech at known times, made once and cached
        print(f"no microphone: using the default speech clip {path} (speech placed at {truth})")
        source = str(path)
    opts = {} if args.fast or not source.endswith(".wav") else {"mode": "realtime"}

    rm = resolve_model("zoo:silero-vad")  # the ONNX inside the pip package silero-vad (16 kHz, static shapes)
    segments: list[dict] = []

    def show(event: dict) -> None:
        for ev in event["events"]:
            if ev["event"] == "SPEECH_START":
                print(f"  {ev['t_s']:7.2f} s  speech starts", flush=True)
            else:
                seg = ev["segment"]
                segments.append(seg)
                print(f"  {ev['t_s']:7.2f} s  speech ends    ({seg['end_s'] - seg['start_s']:.2f} s)", flush=True)

    with es.load(rm.path) as model:
        pipe = es.Pipeline(es.open_source(source, **opts), model, task="vad", preprocess=rm.preprocess,
                           sinks=args.sink or [], threshold=args.threshold, min_silence_ms=args.min_silence_ms,
                           on_result=show, metrics_every=0)  # fmt: skip
        m = pipe.run(duration=args.duration)
    print(f"{len(segments)} speech segment(s); {m['results']} windows of 32 ms, inference p50 "
          f"{m['stages']['infer']['p50_ms']} ms, latency p50 {m['latency_ms']['p50']} ms, "
          f"overflows {m['frames']['overflows']}")  # fmt: skip
    if truth:
        for s, (a, b) in zip(segments, truth):
            print(f"  placed {a:.2f}-{b:.2f} s, found {s['start_s']:.2f}-{s['end_s']:.2f} s "
                  f"(onset {s['start_s'] - a:+.3f} s, offset {s['end_s'] - b:+.3f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except es.EdgeSDKError as e:  # a user's mistake or a missing dependency: one clear line
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
