"""VAD accuracy and cost: Silero VAD on espeak-ng speech placed at known times, in rising noise.

    python benchmarks/audio_vad.py [--json]

For the default speech clip (two utterances, see ``edge_sdk.audio.default_media``) with white noise
added at several levels, reports each utterance's onset and offset error (found - placed, seconds),
the inference time per 32 ms window and the real-time factor (audio seconds per compute second).
Also the front end: log-mel (64 bands, 25 ms / 10 ms) and 22.05 -> 16 kHz resampling throughput.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import edge_sdk as es
    from converters import zoo
    from edge_sdk.audio import LogMelSpec, read_wav, resample
    from edge_sdk.audio.default_media import default_speech_wav
    from edge_sdk.postprocess.vad import VoiceActivityDetector

    path, truth = default_speech_wav()
    clip, sr = read_wav(path)
    rows = []
    with es.load(zoo.get("silero-vad").materialize()) as model:
        vad = VoiceActivityDetector(model)
        for noise_db in (None, -40.0, -30.0, -24.0):
            x = clip.copy()
            if noise_db is not None:
                x += np.random.default_rng(1).standard_normal(len(x)).astype(np.float32) * 10 ** (noise_db / 20)
            t = time.perf_counter()
            found = vad.detect(x)
            dt = time.perf_counter() - t
            errs = [(round(s.start - a, 3), round((s.end or 0) - b, 3)) for s, (a, b) in zip(found, truth)]
            rows.append({"added_noise_dbfs": noise_db, "segments": len(found), "placed": len(truth),
                         "onset_offset_err_s": errs, "ms_per_window": round(dt / (len(x) / 512) * 1000, 3),
                         "realtime_factor": round(len(x) / sr / dt, 1)})  # fmt: skip
    t = time.perf_counter()
    LogMelSpec()(clip)
    logmel_x = round(len(clip) / sr / (time.perf_counter() - t), 1)
    noise = np.random.default_rng(0).standard_normal(22050 * 10).astype(np.float32)
    t = time.perf_counter()
    resample(noise, 22050, 16000)
    resample_x = round(10 / (time.perf_counter() - t), 1)
    report = {"clip": str(path), "placed": truth, "vad": rows, "logmel_realtime_factor": logmel_x,
              "resample_realtime_factor": resample_x}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"clip {path.name}: speech placed at {truth} (background noise -50 dBFS)")
    print(f"{'added noise':>12} {'segments':>8} {'onset/offset errors (s)':>40} {'ms/window':>9} {'x realtime':>10}")
    for r in rows:
        lvl = "none" if r["added_noise_dbfs"] is None else f"{r['added_noise_dbfs']:g} dBFS"
        print(f"{lvl:>12} {r['segments']:>4}/{r['placed']:<3} {str(r['onset_offset_err_s']):>40} "
              f"{r['ms_per_window']:>9} {r['realtime_factor']:>10}")  # fmt: skip
    print(f"log-mel front end: {logmel_x}x real time; resampling 22.05 -> 16 kHz: {resample_x}x real time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
