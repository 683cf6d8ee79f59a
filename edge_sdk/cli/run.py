"""``edge-sdk run MODEL|zoo:NAME --source SRC [--task classify|detect|vad]``: the real-time pipeline.

A converted model carries its task, preprocessing and labels (``edge_sdk.metadata``), so ``--task`` and the
preprocessing flags are needed only for a model that does not, or to override what it carries.

Examples::

    edge-sdk run zoo:efficientnet-lite0 --source 0 --sink http://:8080
    edge-sdk run face.onnx --task detect --source rtsp://cam/stream --sink events.jsonl --sink mqtt://broker/faces
    edge-sdk run zoo:centerface --source clip.mp4 --sink out.mp4 --post-opt blur=true --json
    edge-sdk run other.onnx --task classify --size 224x224 --mean 127.5 --std 127.5 --channels bgr --labels l.txt
    edge-sdk run zoo:silero-vad --source mic: --events-only          # SPEECH_START / SPEECH_END lines only
    edge-sdk run det.onnx --task detect --source door.mp4 --sink events.jsonl --zone door=100,0,220,0,220,240,100,240 \
        --line gate=160,0,160,240                                    # track ids, enter / leave / cross events

In a terminal: task events (VAD) are lines on stdout, and a status line on stderr keeps updating (on by
default when no --sink is given or stderr is a terminal; --status / --no-status). Stopping: SIGTERM
(systemd, Docker) and SIGINT (Ctrl-C) both stop cleanly: the post-processor's open state is closed (a
VAD speech segment gets its SPEECH_END), the final metrics line is written, every sink is finalised
(a playable video, MQTT status "offline") and the summary is printed. Exit status: 0 after SIGTERM (a
requested stop, which systemd and Docker count as clean), 130 (128 + 2) after SIGINT, as shells expect
of Ctrl-C; a second signal while stopping ends the process at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from edge_sdk.cli.base import (
    SIGNAL_EXIT,
    Command,
    add_probe_arguments,
    emit_json,
    format_table,
    probe_model,
    stop_on_signals,
)
from edge_sdk.cli.bundle import add_trusted_key_argument
from edge_sdk.preprocess import RESIZE_MODES
from edge_sdk.zoo_models import ZOO_TASKS, RunnableModel, resolve_model  # noqa: F401 (re-exported)

log = logging.getLogger("edge_sdk.cli")
#: tasks whose results carry events (for --events-only)
EVENT_TASKS = ("vad",)
def _kv(items: list[str] | None, flag: str) -> dict[str, Any]:
    from edge_sdk.errors import CLIUsageError
    from edge_sdk.sources import _coerce

    out: dict[str, Any] = {}
    for item in items or ():
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise CLIUsageError(f"{flag} '{item}' is not KEY=VALUE, e.g. {flag} top_k=3")
        out[k.replace("-", "_")] = _coerce(v)
    return out


class RunCommand(Command):
    name = "run"
    help = "run a model on a camera, stream, file or microphone in real time (pipeline with sinks)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", help="model file (.onnx, .tflite, .xml) or zoo:NAME")
        parser.add_argument("--source", "-s", default="0",
                            help="0 | /dev/video0 | rtsp://... | http://... | gst:... | clip.mp4 | folder/ | "
                                 "picamera2: | synthetic: | mic: | file.wav (default 0)")  # fmt: skip
        parser.add_argument(
            "--task", "-t", help="classify | detect | vad (default: the task the model carries, or the zoo model's)"
        )
        parser.add_argument("--sink", action="append", metavar="SINK",
                            help="window | http://:8080 | out.mp4 | events.jsonl | - | mqtt://host/topic "
                                 "(repeatable)")  # fmt: skip
        parser.add_argument("--duration", type=float,
                            help="stop after S seconds (default: until the source ends; SIGTERM and Ctrl-C also stop "
                                 "cleanly, every sink finalised: exit 0 after SIGTERM, 130 after SIGINT)")  # fmt: skip
        parser.add_argument("--max-results", type=int, help="stop after N results")
        parser.add_argument("--post-opt", action="append", metavar="K=V", help="post-processor option (repeatable)")
        parser.add_argument("--source-opt", action="append", metavar="K=V", help="source option (repeatable)")
        parser.add_argument("--metrics-every", type=float, default=5.0, help="seconds between metrics lines")
        parser.add_argument("--metrics-file", help="append the periodic metrics JSON lines to this file")
        parser.add_argument("--queue-size", type=int, default=1, help="items between stages (default 1)")
        parser.add_argument("--drop", choices=("oldest", "newest", "block"),
                            help="when a stage is full (default: oldest if live, block for files)")  # fmt: skip
        parser.add_argument("--threads", type=int, metavar="N",
                            help="CPU threads the runtime may use (default: the runtime's own, usually every "
                                 "core; give N when several runs share a machine)")  # fmt: skip
        parser.add_argument("--no-warmup", action="store_true",
                            help="skip the warm-up inference on zeros while a live source opens (the first result "
                                 "then pays the runtime's first-call cost; files are not warmed up)")  # fmt: skip
        parser.add_argument(
            "--events-only",
            action="store_true",
            help="only task events (VAD SPEECH_START / SPEECH_END), not every result: on the "
            "terminal and in JSON-lines / MQTT sinks (video and live view keep every frame)",
        )
        parser.add_argument("--status", action=argparse.BooleanOptionalAction, default=None,
                            help="the updating status line on stderr (default: on when no --sink is given or "
                                 "stderr is a terminal, off with --events-only)")  # fmt: skip
        ana = parser.add_argument_group("tracking, zones and lines (detect; coordinates in source image pixels)")
        ana.add_argument("--track", action="store_true",
                         help="ByteTrack ids on the boxes (track_id in results; on with --zone/--line)")  # fmt: skip
        ana.add_argument("--zone", action="append", metavar="NAME=x1,y1,x2,y2,...",
                         help="a polygon zone (3+ points): enter/leave events, in/out counts (repeatable)")  # fmt: skip
        ana.add_argument("--line", action="append", metavar="NAME=x1,y1,x2,y2",
                         help="a counting line: cross events, direction in / out, counts (repeatable)")  # fmt: skip
        ana.add_argument("--clips", metavar="DIR",
                         help="an mp4 (2 s before, 3 s after) and a JPEG per enter / cross event into DIR, "
                              "oldest removed past 1 GB or 7 days")  # fmt: skip
        pre = parser.add_argument_group("preprocessing and labels (default: what the model carries; these override)")
        pre.add_argument("--size", metavar="HxW", help="input image size, e.g. 224x224")
        pre.add_argument("--mean", help="per-channel mean in pixel units, e.g. 123.7,116.3,103.5 or 127")
        pre.add_argument("--std", help="per-channel std in pixel units, e.g. 58.4,57.1,57.4 or 128 (255: x / 255)")
        pre.add_argument("--resize", choices=RESIZE_MODES, help="how a frame fits the input (default: stretch)")
        pre.add_argument("--channels", type=str.lower, choices=("rgb", "bgr"), help="channel order the model takes")
        pre.add_argument("--labels", metavar="FILE", help="class names, one a line, in index order")
        add_probe_arguments(parser)
        add_trusted_key_argument(parser)

    def run(self, args: argparse.Namespace) -> int:
        import edge_sdk as es
        from edge_sdk.errors import CLIUsageError
        from edge_sdk.labels import load_labels
        from edge_sdk.metadata import model_metadata
        from edge_sdk.pipeline import Pipeline
        from edge_sdk.sources import open_source

        post_opts = _kv(args.post_opt, "--post-opt")
        source_opts = _kv(args.source_opt, "--source-opt")
        if args.threads is not None and args.threads < 1:
            raise CLIUsageError(f"--threads {args.threads}: give a number of threads >= 1, e.g. --threads 2")
        rm = resolve_model(args.model, trusted_keys=args.trusted_key)
        stored = model_metadata(rm.path)  # what the file carries (or a manifest listing it); cheap, no runtime
        task = args.task or (stored.task if stored else None) or rm.task
        if task is None:
            raise CLIUsageError(
                f"--task is required: {rm.path.name} carries no task (no edge_sdk metadata inside, no manifest "
                "listing it); give --task classify, detect or vad"
            )
        if args.events_only and task not in EVENT_TASKS and not (args.zone or args.line):
            raise CLIUsageError(
                f"--events-only: task '{task}' gives a result per frame and no events; the "
                f"{', '.join(EVENT_TASKS)} task emits events (SPEECH_START / SPEECH_END), and detect does with "
                "--zone NAME=... or --line NAME=... (enter / leave / cross)"
            )
        labels = load_labels(args.labels) if args.labels else rm.labels
        analytics = _analytics_args(args, task)
        probe_model(args, rm.path, threads=args.threads)
        source = open_source(args.source, **source_opts)
        model = es.load(rm.path, threads=args.threads)
        runtime = {k: v for k, v in model.describe().items() if k not in ("inputs", "outputs", "path", "cache_dir")}
        sinks: list[Any] = list(args.sink or [])
        terminal = _terminal_sink(args, sinks, task)
        if terminal is not None:
            sinks.append(terminal)
        if args.clips:
            from edge_sdk.analytics.clips import ClipSink

            sinks.append(ClipSink(args.clips))
        try:
            preprocess = _preprocess(args, rm.preprocess, model)
            pipe = Pipeline(source, model, task=task, sinks=sinks, preprocess=preprocess, labels=labels,
                            metrics_every=args.metrics_every, metrics_file=args.metrics_file,
                            queue_size=args.queue_size, drop=args.drop, warmup=0 if args.no_warmup else None,
                            events_only=args.events_only, **analytics, **post_opts)  # fmt: skip
        except BaseException:
            model.close()
            raise
        got: list[int] = []
        restore = stop_on_signals(pipe, got)
        try:
            metrics = pipe.run(duration=args.duration, max_results=args.max_results)
        finally:
            restore()
            model.close()
        code = SIGNAL_EXIT.get(signal.Signals(got[0]), 128 + got[0]) if got else 0
        last = pipe.last_event
        jsonl_out = any(str(s).strip().lower() in ("-", "stdout", "jsonl:-") for s in args.sink or ())
        if args.json:
            spec = pipe.spec.to_dict() if hasattr(pipe.spec, "to_dict") else None
            emit_json({"model": str(rm.path), "task": task, "metadata": stored.origin if stored else None,
                       "preprocessing": spec, "runtime": runtime, "warmup": not args.no_warmup,
                       "stopped_by": pipe.stop_reason, "exit_code": code, "metrics": metrics,
                       "last_result": last}, one_line=jsonl_out)  # fmt: skip
            return code
        _print_summary(metrics, last, pipe.stop_reason, sys.stderr if args.events_only or jsonl_out else sys.stdout)
        return code


def _analytics_args(args: argparse.Namespace, task: str) -> dict[str, Any]:
    """``track`` / ``zones`` / ``lines`` for the Pipeline from --track, --zone, --line (errors name the flag)."""
    if not (args.track or args.zone or args.line or args.clips):
        return {}
    from edge_sdk.analytics.events import parse_line, parse_zone
    from edge_sdk.analytics.zones import AnalyticsConfigError
    from edge_sdk.errors import CLIUsageError

    if task != "detect":
        raise CLIUsageError(f"--track/--zone/--line/--clips need boxes: task '{task}' gives none (use --task detect)")
    if args.clips and not (args.zone or args.line):
        raise CLIUsageError("--clips records around zone and line events: give --zone NAME=... or --line NAME=...")
    try:
        zones = dict(parse_zone(z) for z in args.zone or ())
        lines = dict(parse_line(ln) for ln in args.line or ())
    except AnalyticsConfigError as e:
        raise CLIUsageError(str(e)) from None
    return {"track": True, "zones": zones, "lines": lines}


def _terminal_sink(args: argparse.Namespace, sinks: list[Any], task: str) -> Any:
    """The terminal's events and status line (None when neither is wanted)."""
    from edge_sdk.sinks.terminal import TerminalSink

    stdout_taken = bool(args.json) or any(str(s).strip().lower() in ("-", "stdout", "jsonl:-") for s in sinks)
    status = args.status
    if status is None:
        status = not args.events_only and (not sinks or sys.stderr.isatty())
    has_events = task in EVENT_TASKS or bool(args.zone or args.line)  # VAD speech, zone / line crossings
    events = has_events and (not sinks or args.events_only or sys.stdout.isatty() or stdout_taken)
    if stdout_taken and args.events_only and not args.json:
        events = False  # the JSON lines on stdout are the events
    if not status and not events:
        return None
    return TerminalSink(
        status=status,
        events=events,
        events_stream=sys.stderr if stdout_taken else sys.stdout,
        status_stream=sys.stderr,
        interval=None if sys.stderr.isatty() else args.metrics_every,
    )


def _print_summary(metrics: dict[str, Any], last: Any, stopped_by: str | None, out: Any) -> None:
    """The end-of-run table: rate, end-to-end latency and its processing / queue-wait split, frames, stages."""
    from edge_sdk.sinks.terminal import describe_result

    lat, proc, wait = metrics["latency_ms"], metrics["processing_ms"], metrics["queue_wait_ms"]
    rows = [[metrics["results"], metrics["fps"], lat["p50"], lat["p99"], proc["p50"], wait["p50"],
             metrics["frames"]["captured"], metrics["frames"]["dropped"]]]  # fmt: skip
    heads = ["results", "fps", "latency p50 ms", "p99 ms", "processing p50 ms", "queue wait p50 ms", "captured",
             "dropped"]  # fmt: skip
    print(format_table(heads, rows), file=out)
    for name, st in metrics["stages"].items():
        print(f"  {name:6s} {st['count']:6d} runs  p50 {st['p50_ms']} ms  p99 {st['p99_ms']} ms", file=out)
    for ev in metrics.get("events", []):
        print(f"  source event: {ev['event']} {ev.get('detail', '')}", file=out)
    if stopped_by:
        print(f"stopped by: {stopped_by}", file=out)
    if last is not None and last.get("type") == "result" and not last.get("final"):
        print(f"last result: {describe_result(last)}", file=out)
    out.flush()


def _preprocess(args: argparse.Namespace, given: Any, model: Any) -> Any:
    """The spec to run with: the zoo entry's, else the one the model carries, with the flags' overrides applied;
    None (the pipeline decides: stored, else guessed with a warning naming these flags) when no flag is given."""
    flags = {"size": args.size, "mean": args.mean, "std": args.std, "resize": args.resize, "channels": args.channels}
    flags = {k: v for k, v in flags.items() if v is not None}
    if not flags:
        return given
    from edge_sdk.errors import CLIUsageError
    from edge_sdk.pipeline.model_info import guess_preprocess, model_preprocess
    from edge_sdk.preprocess import PreprocessSpec, with_overrides

    if given is None:
        meta = model.metadata
        if meta is not None and meta.preprocessing is not None:
            given = model_preprocess(model)
        else:  # no stored spec: the flags complete the guess; warn about what they leave guessed
            given = guess_preprocess(model, warn=not {"mean", "std"} <= set(flags))
    if not isinstance(given, PreprocessSpec):
        raise CLIUsageError(
            f"--{'/--'.join(flags)}: image preprocessing flags, but {model.path.name} takes "
            f"{type(given).__name__.replace('Spec', '').lower()} input"
        )
    return with_overrides(given, **flags)
