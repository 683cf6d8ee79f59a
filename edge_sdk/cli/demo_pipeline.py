"""The real-time half of ``edge-sdk demo``: face blur, classification and VAD on the embedded media.

Runs first in the demo so a new user sees a result in seconds: CenterFace (faces blurred) plays the clip made
from the real photos (see :mod:`edge_sdk.cli.demo_media`) at real time with the live view on 127.0.0.1, then
EfficientNet-Lite0 classifies the same clip and Silero VAD finds the speech in the embedded WAV. Writes the
annotated videos, the events (JSON lines) and a metrics summary, and checks what the models say per segment.
"""

from __future__ import annotations

import collections
import json
import socket
import time
from pathlib import Path
from typing import Any, Callable

Say = Callable[[str], None]


def free_view_port(preferred: int = 8080) -> int:
    """``preferred`` when nothing listens there on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port on 127.0.0.1 for the live view")


def run_pipeline_demo(out: Path, classifier: Path | None = None, *, live_view: bool = True,
                      say: Say = lambda _: None, started: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Face blur (live, with the view), classification and VAD; returns the summary (also in ``out/summary.json``).

    ``say`` gets one line per step as it happens (where to look, the first result); ``started`` is the
    ``time.monotonic()`` the demo began, so the first result's delay is measured from the user's command.
    """
    import edge_sdk as es
    from edge_sdk.cli.demo_media import demo_clip, segments
    from edge_sdk.zoo_models import resolve_model

    started = time.monotonic() if started is None else started
    out.mkdir(parents=True, exist_ok=True)
    clip = demo_clip()
    segs = segments()
    summary: dict[str, Any] = {"clip": str(clip), "segments": segs}
    view = f"http://127.0.0.1:{free_view_port()}" if live_view else None
    jobs = [  # task, model file (None: the zoo's), zoo name, source, extra sinks, post-processing options
        ("detect", None, "zoo:centerface", f"{clip}?mode=live" if view else str(clip), [view] if view else [],
         {"blur": True, "threshold": 0.5}),
        ("classify", classifier, "zoo:efficientnet-lite0", str(clip), [], {"top_k": 3}),
    ]  # fmt: skip
    for task, path, zoo_name, source, extra, opts in jobs:
        rm = resolve_model(zoo_name)
        model_path = path or rm.path
        events = out / f"{task}_events.jsonl"
        video = out / f"{task}_annotated.mp4"
        events.unlink(missing_ok=True)
        first: list[float] = []

        def on_result(r: dict[str, Any], first: list[float] = first, task: str = task) -> None:
            if not first:
                first.append(time.monotonic() - started)
                found = f"{r.get('count', 0)} face(s)" if task == "detect" else r["top"][0]["label"]
                say(f"  first {task} result after {first[0]:.1f} s: {found}")

        if view and extra:
            say(f"  live view: open {view}/ now (faces blurred, real time, {segs[-1][2]:.0f} s)")
        with es.load(model_path) as model:
            p = es.Pipeline(source, model, task=task, preprocess=rm.preprocess if path is None else None,
                            labels=rm.labels, sinks=[events, video, *extra], metrics_every=0,
                            on_result=on_result, **opts)  # fmt: skip
            metrics = p.run()
        per_segment = _per_segment(events, segs, task)
        summary[task] = {"model": str(model_path), "metrics": _short(metrics), "per_segment": per_segment,
                         "video": str(video), "events": str(events),
                         "first_result_s": round(first[0], 2) if first else None}  # fmt: skip
        say(f"  {task}: {metrics['results']} frames -> {video}")
    summary["vad"] = _vad(out)
    say(f"  vad: speech found at {[tuple(round(t, 2) for t in f) for f in summary['vad']['found_s']]} -> "
        f"{summary['vad']['events']}")  # fmt: skip
    summary["first_result_s"] = summary["detect"]["first_result_s"]
    summary["seconds"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _vad(out: Path) -> dict[str, Any]:
    """Silero VAD over the embedded speech clip (espeak-ng speech placed in silence and noise)."""
    import edge_sdk as es
    from converters import zoo
    from edge_sdk.audio.default_media import default_speech_wav

    wav, placed = default_speech_wav()
    events = out / "vad_events.jsonl"
    events.unlink(missing_ok=True)
    with es.load(zoo.get("silero-vad").materialize()) as model:
        metrics = es.Pipeline(str(wav), model, task="vad", sinks=[events], metrics_every=0).run()
    rows = [json.loads(x) for x in events.read_text().splitlines()]
    found = [
        (e["segment"]["start_s"], e["segment"]["end_s"])
        for r in rows if r.get("type") == "result"
        for e in r.get("events", []) if e.get("event") == "SPEECH_END"
    ]  # fmt: skip
    errors = [(round(f[0] - p[0], 3), round(f[1] - p[1], 3)) for p, f in zip(placed, found)]
    return {"clip": str(wav), "placed_s": placed, "found_s": found, "onset_offset_error_s": errors,
            "metrics": _short(metrics), "events": str(events)}  # fmt: skip


def _per_segment(events: Path, segs: list[tuple[str, float, float]], task: str) -> dict[str, Any]:
    rows = [json.loads(x) for x in events.read_text().splitlines()]
    results = [r for r in rows if r.get("type") == "result"]
    found: dict[str, Any] = {}
    for name, start, end in segs:
        inside = [r for r in results if start * 1000 <= r.get("pos_ms", -1) < end * 1000]
        if task == "classify":
            votes = collections.Counter(r["top"][0]["label"] for r in inside)
            found[name] = {"frames": len(inside), "top1": votes.most_common(3)}
        else:
            with_face = [r for r in inside if r["count"] > 0]
            box = with_face[len(with_face) // 2]["detections"][0]["box"] if with_face else None
            found[name] = {"frames": len(inside), "frames_with_faces": len(with_face), "example_box": box}
    return found


def _short(m: dict[str, Any]) -> dict[str, Any]:
    return {"results": m["results"], "fps": m["fps"], "latency_ms": m["latency_ms"],
            "dropped": m["frames"]["dropped"], "stages": {k: v["p50_ms"] for k, v in m["stages"].items()}}  # fmt: skip


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\nReal-time pipeline on the demo clip {summary['clip']}:")
    for task in ("classify", "detect"):
        s = summary[task]
        m = s["metrics"]
        print(f"  {task}: {m['results']} frames at {m['fps']} fps, latency p50 {m['latency_ms']['p50']} ms "
              f"-> {s['video']}")  # fmt: skip
        for seg, v in s["per_segment"].items():
            detail = v["top1"] if task == "classify" else f"{v['frames_with_faces']}/{v['frames']} frames with a face"
            print(f"    {seg:10s} {detail}")
    v = summary["vad"]
    print(f"  vad: speech placed at {v['placed_s']}, found at {[tuple(round(t, 2) for t in f) for f in v['found_s']]}")
    print(f"    onset/offset error (s): {v['onset_offset_error_s']}")
