"""The camera part of a ``edge-sdk serve`` config, and the checks every section uses (:class:`Checks`): each error
names the file, the line and the dotted key."""

from __future__ import annotations

import difflib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.errors import ConfigError
from edge_sdk.serve.yaml_lines import Marked, config_error, show

CAMERA_KEYS = ("source", "loop", "mode", "track", "zones", "lines", "record", "clips", "sinks")
CLIP_KEYS = ("dir", "pre_s", "post_s", "max_mb", "max_age", "events", "annotated")
RECORD_KEYS = ("path", "annotated")
MODES = ("live", "paced", "fast")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SOURCE_HINT = "give a file, rtsp:// URI or camera index"


@dataclass
class ClipsConfig:
    dir: Path
    pre_s: float = 2.0
    post_s: float = 3.0
    max_mb: float | None = 1024.0
    max_age_s: float | None = 7 * 86400.0
    events: tuple[str, ...] = ("enter", "cross")
    annotated: bool = False


@dataclass
class RecordConfig:
    path: Path
    annotated: bool = True


@dataclass
class CameraConfig:
    name: str
    source: str
    line: int = 0
    loop: bool = False
    mode: str = "live"
    track: bool = False
    zones: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    lines: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    record: RecordConfig | None = None
    clips: ClipsConfig | None = None
    sinks: list[str] = field(default_factory=list)


class Checks:
    """Typed reads of YAML values (``file``: for messages; relative paths resolve against its folder)."""

    def __init__(self, file: Path | None, env: dict[str, str]) -> None:
        self.file = file
        self.base = file.resolve().parent if file is not None else Path.cwd()
        self.env = env
        self.lines_of: dict[str, int] = {}

    def err(self, line: int, key: str, message: str) -> ConfigError:
        return config_error(self.file, line, key, message)

    def keys(self, d: Marked, prefix: str, valid: tuple[str, ...], required: dict[str, str], at: int = 0) -> None:
        """Unknown keys are errors listing the valid ones; a missing required key is reported at the line of its
        parent's key (``at``), else where the mapping starts."""
        for k in d:
            if k not in valid:
                near = difflib.get_close_matches(str(k), valid, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                raise self.err(d.lines[k], f"{prefix}{k}", f"unknown key{hint}; valid keys: {', '.join(valid)}")
            self.lines_of[f"{prefix}{k}"] = d.lines[k]
        for k, hint in required.items():
            if k not in d or d[k] is None:
                line = d.lines.get(k, at or d.line)
                raise self.err(line, f"{prefix}{k}", f"missing; {hint}")

    def mapping(self, value: Any, line: int, key: str, what: str) -> Marked:
        if not isinstance(value, Marked):
            raise self.err(line, key, f"expected a mapping ({what}), got {show(value)}")
        return value

    def number(self, value: Any, line: int, key: str, *, minimum: float = 0.0, integer: bool = False) -> Any:
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            raise self.err(line, key, f"expected {'a whole' if integer else 'a'} number, got {show(value)}")
        if value < minimum:
            raise self.err(line, key, f"must be >= {minimum:g}, got {value}")
        return value

    def boolean(self, value: Any, line: int, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.err(line, key, f"expected true or false, got {show(value)}")
        return value

    def text(self, value: Any, line: int, key: str, hint: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.err(line, key, f"expected text, got {show(value)}; {hint}")
        return value.strip()

    def path(self, text: str) -> Path:
        p = Path(text).expanduser()
        return p if p.is_absolute() else self.base / p

    def _sinks(self, value: Any, line: int, key: str) -> list[str]:
        from edge_sdk.errors import SinkError
        from edge_sdk.sinks import resolve_sink

        hint = "give a JSON-lines file (events.jsonl) or mqtt://127.0.0.1:1883/topic"
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.err(line, key, f"expected a list, got {show(value)}; {hint}")
        out = []
        for i, item in enumerate(value):
            k = f"{key}[{i}]"
            spec = self.text(item, line, k, hint)
            try:
                kind, target = resolve_sink(spec)
            except SinkError:
                kind, target = "?", spec
            if kind not in ("jsonl", "mqtt") or target == "-":
                raise self.err(line, k, f"'{spec}' is not a serve sink; {hint}")
            if kind == "jsonl":
                p = self.path(target)
                if not p.parent.is_dir():
                    raise self.err(line, k, f"the folder {p.parent} does not exist; create it first")
                spec = str(p)
            out.append(spec)
        return out

    def _camera(self, name: str, value: Any, line: int, loop: bool) -> CameraConfig:
        prefix = f"cameras.{name}"
        if not NAME.match(name):
            raise self.err(line, prefix, "a camera name is letters, digits, '_', '-' or '.' (it is used in URLs)")
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = Marked(source=value)
            value.line, value.lines = line, {"source": line}
        d = self.mapping(value, line, prefix, "source: and options")
        self.keys(d, f"{prefix}.", CAMERA_KEYS, {"source": SOURCE_HINT}, at=line)
        ln = d.lines
        cam = CameraConfig(name=name, source=self._source(d["source"], ln["source"], f"{prefix}.source"), line=line)
        cam.loop = self.boolean(d["loop"], ln["loop"], f"{prefix}.loop") if d.get("loop") is not None else loop
        if d.get("mode") is not None:
            cam.mode = self.text(d["mode"], ln["mode"], f"{prefix}.mode", "live, paced or fast")
            if cam.mode not in MODES:
                raise self.err(ln["mode"], f"{prefix}.mode", f"'{cam.mode}' is not one of {', '.join(MODES)}")
        if d.get("track") is not None:
            cam.track = self.boolean(d["track"], ln["track"], f"{prefix}.track")
        for key, points, example in (("zones", 0, "door: [[10, 10], [200, 10], [200, 150]]"),
                                     ("lines", 2, "gate: [[160, 0], [160, 240]]")):  # fmt: skip
            if d.get(key) is not None:
                shapes = self.mapping(d[key], ln[key], f"{prefix}.{key}", f"name: points, e.g. {example}")
                for shape, pts in shapes.items():
                    k = f"{prefix}.{key}.{shape}"
                    own = f"{shape}: {example.partition(': ')[2]}"  # the example under this zone's or line's name
                    getattr(cam, key)[str(shape)] = self._points(pts, shapes.lines[shape], k, points, own)
        if d.get("record") is not None:
            cam.record = self._record(d["record"], ln["record"], f"{prefix}.record")
        if d.get("clips") is not None:
            cam.clips = self._clips(d["clips"], ln["clips"], f"{prefix}.clips")
            if not (cam.zones or cam.lines):
                raise self.err(ln["clips"], f"{prefix}.clips", "clips are recorded around zone and line events; "
                               "give zones: or lines: for this camera")  # fmt: skip
        if d.get("sinks") is not None:
            cam.sinks = self._sinks(d["sinks"], ln["sinks"], f"{prefix}.sinks")
        return cam

    def _source(self, value: Any, line: int, key: str) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        text = self.text(value, line, key, SOURCE_HINT)
        if text.isdigit() or text.startswith("/dev/video") or re.match(r"^[a-z][a-z0-9+.\-]+:", text, re.I):
            return text
        head, sep, query = text.partition("?")
        p = self.path(head)
        if not p.exists():
            raise self.err(line, key, f"{p} does not exist; {SOURCE_HINT}")
        return str(p) + sep + query

    def _points(self, value: Any, line: int, key: str, count: int, example: str) -> list[tuple[float, float]]:
        if isinstance(value, str):
            value = [v for v in value.replace(";", ",").split(",") if v.strip()]
            try:
                value = [float(v) for v in value]
            except ValueError:
                raise self.err(line, key, f"coordinates must be numbers, e.g. {example}") from None
        if not isinstance(value, list):
            raise self.err(line, key, f"expected a list of [x, y] points, got {show(value)}; e.g. {example}")
        flat: list[float] = []
        for v in value:
            items = v if isinstance(v, list) else [v]
            if isinstance(v, list) and len(v) != 2:
                raise self.err(line, key, f"a point is [x, y], got {v}; e.g. {example}")
            for x in items:
                if isinstance(x, bool) or not isinstance(x, (int, float)):
                    raise self.err(line, key, f"coordinates must be numbers, got {show(x)}; e.g. {example}")
                flat.append(float(x))
        pts = list(zip(flat[0::2], flat[1::2]))
        if len(flat) % 2:
            raise self.err(line, key, f"{len(flat)} coordinates: points are x, y pairs; e.g. {example}")
        if (count and len(pts) != count) or (not count and len(pts) < 3):
            need = f"{count} points" if count else "at least 3 points"
            raise self.err(line, key, f"give {need} in source image pixels, e.g. {example}")
        return pts

    def _record(self, value: Any, line: int, key: str) -> RecordConfig:
        from edge_sdk.sinks import VIDEO_SUFFIXES

        if isinstance(value, str):
            value = Marked(path=value)
            value.line, value.lines = line, {"path": line}
        d = self.mapping(value, line, key, "path: FILE.mp4, annotated: true")
        self.keys(d, f"{key}.", RECORD_KEYS, {"path": "give the video file to write, e.g. door-{time}.mp4"}, at=line)
        text = self.text(d["path"], d.lines["path"], f"{key}.path", "e.g. door-{time}.mp4")
        p = self.path(text.replace("{time}", time.strftime("%Y%m%d-%H%M%S")))
        if p.suffix.lower() not in VIDEO_SUFFIXES:
            kinds = ", ".join(VIDEO_SUFFIXES)
            raise self.err(d.lines["path"], f"{key}.path", f"'{text}' is not a video file ({kinds})")
        if not p.parent.is_dir():
            raise self.err(d.lines["path"], f"{key}.path", f"the folder {p.parent} does not exist; create it first")
        rec = RecordConfig(p)
        if d.get("annotated") is not None:
            rec.annotated = self.boolean(d["annotated"], d.lines["annotated"], f"{key}.annotated")
        return rec

    def _clips(self, value: Any, line: int, key: str) -> ClipsConfig:
        if isinstance(value, str):
            value = Marked(dir=value)
            value.line, value.lines = line, {"dir": line}
        d = self.mapping(value, line, key, "dir:, pre_s:, post_s:, max_mb:, max_age:")
        self.keys(d, f"{key}.", CLIP_KEYS, {"dir": "give the folder for the clips, e.g. dir: clips/"}, at=line)
        ln = d.lines
        folder = self.path(self.text(d["dir"], ln["dir"], f"{key}.dir", "e.g. dir: clips/"))
        if not folder.is_dir():
            raise self.err(ln["dir"], f"{key}.dir", f"the folder {folder} does not exist; create it first")
        c = ClipsConfig(folder)
        for k in ("pre_s", "post_s"):
            if d.get(k) is not None:
                setattr(c, k, float(self.number(d[k], ln[k], f"{key}.{k}")))
        if "max_mb" in d:
            c.max_mb = None if d["max_mb"] is None else float(self.number(d["max_mb"], ln["max_mb"], f"{key}.max_mb"))
        if "max_age" in d:
            c.max_age_s = None if d["max_age"] is None else self._age(d["max_age"], ln["max_age"], f"{key}.max_age")
        if d.get("events") is not None:
            ev = d["events"] if isinstance(d["events"], list) else [d["events"]]
            bad = [e for e in ev if e not in ("enter", "leave", "cross")]
            if bad or not ev:
                got = ", ".join(show(e) for e in bad) if bad else "none"
                raise self.err(ln["events"], f"{key}.events", f"give enter, leave and/or cross; not one: {got}")
            c.events = tuple(ev)
        if d.get("annotated") is not None:
            c.annotated = self.boolean(d["annotated"], ln["annotated"], f"{key}.annotated")
        return c

    def _age(self, value: Any, line: int, key: str) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(self.number(value, line, key))
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", str(value))
        if not m:
            raise self.err(line, key, f"expected seconds or a duration like 30m, 12h, 7d; got {show(value)}")
        return float(m.group(1)) * AGE_UNITS[m.group(2)]
