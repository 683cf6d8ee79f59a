"""``edge-sdk serve`` configuration: a YAML file read with PyYAML's safe loader, every key checked, errors that name
the file, the line and the key (``door.yaml line 4: cameras.door.source: missing; give a file, rtsp:// URI or
camera index``). Unknown keys are errors listing the valid ones. Relative paths resolve against the file's folder.

The smallest config::

    model: zoo:centerface
    http: 127.0.0.1:8090
    cameras:
      door: {source: door.mp4}
      yard: {source: yard.mp4}

The reference of every key is in docs/serve.md.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.errors import ConfigError

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8090
TOKEN_ENV = "EDGE_SDK_SERVE_TOKEN"
TOP_KEYS = ("model", "task", "http", "token", "threads", "loop", "options", "sinks", "cameras", "max_upload_mb")
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


@dataclass
class ServeConfig:
    model: str
    cameras: dict[str, CameraConfig]
    file: Path | None = None
    task: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    sinks: list[str] = field(default_factory=list)
    max_upload_mb: float = 10.0
    lines_of: dict[str, int] = field(default_factory=dict)  # dotted key -> line, for errors found later

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError for ``key`` (dotted) at its line in the file, for checks made after loading."""
        return _error(self.file, self.lines_of.get(key, 0), key, message)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


class _Marked(dict):
    """A YAML mapping that remembers its line and each key's line (1-based)."""

    line = 0
    lines: dict[Any, int]


class _MarkedList(list):
    line = 0


class _Duplicate(Exception):
    def __init__(self, key: Any, line: int) -> None:
        self.key, self.line = key, line


def _loader() -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any) -> Any:
        data = _Marked()
        data.line, data.lines = node.start_mark.line + 1, {}
        yield data
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = str(key)
            if key in data:
                raise _Duplicate(key, key_node.start_mark.line + 1)
            data[key] = loader.construct_object(value_node, deep=True)
            data.lines[key] = key_node.start_mark.line + 1

    def sequence(loader: Any, node: Any) -> Any:
        data = _MarkedList()
        data.line = node.start_mark.line + 1
        yield data
        data.extend(loader.construct_sequence(node, deep=True))

    Loader.add_constructor("tag:yaml.org,2002:map", mapping)
    Loader.add_constructor("tag:yaml.org,2002:seq", sequence)
    return Loader


def _error(file: Path | None, line: int, key: str, message: str) -> ConfigError:
    where = file.name if file is not None else "config"
    at = f" line {line}" if line else ""
    return ConfigError(f"{where}{at}: {key}: {message}" if key else f"{where}{at}: {message}", file=file, line=line,
                       key=key)  # fmt: skip


def load_config(path: str | os.PathLike[str], *, env: dict[str, str] | None = None) -> ServeConfig:
    """Read and check ``path``; a :class:`ServeConfig` or a ConfigError naming the line and the key."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist", file=file) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {file}: {getattr(e, 'strerror', None) or e}", file=file) from None
    return parse_config(text, file=file, env=env)


def parse_config(text: str, *, file: Path | None = None, env: dict[str, str] | None = None) -> ServeConfig:
    """Check the YAML ``text`` (``file``: for messages and relative paths; default the current folder)."""
    import yaml

    try:
        data = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass that records lines
    except _Duplicate as d:
        raise _error(file, d.line, str(d.key), "given twice; keep one") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise _error(file, line, "", f"not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise _error(file, 0, "", f"not valid YAML: {e}") from None
    if data is None:
        raise _error(file, 0, "", "the file is empty; give at least `model:` and `cameras:`")
    if not isinstance(data, _Marked):
        raise _error(file, 1, "", f"expected a mapping of keys (model:, cameras:, ...), got a {_kind(data)}")
    return _Checker(file, env if env is not None else dict(os.environ)).top(data)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1); a name is resolved."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    import socket

    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def _kind(value: Any) -> str:
    names = {dict: "mapping", _Marked: "mapping", list: "list", _MarkedList: "list", str: "text", bool: "boolean",
             int: "number", float: "number", type(None): "empty value"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


class _Checker:
    def __init__(self, file: Path | None, env: dict[str, str]) -> None:
        self.file = file
        self.base = file.resolve().parent if file is not None else Path.cwd()
        self.env = env
        self.lines_of: dict[str, int] = {}

    def err(self, line: int, key: str, message: str) -> ConfigError:
        return _error(self.file, line, key, message)

    def keys(self, d: _Marked, prefix: str, valid: tuple[str, ...], required: dict[str, str], at: int = 0) -> None:
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

    def mapping(self, value: Any, line: int, key: str, what: str) -> _Marked:
        if not isinstance(value, _Marked):
            raise self.err(line, key, f"expected a mapping ({what}), got {_show(value)}")
        return value

    def number(self, value: Any, line: int, key: str, *, minimum: float = 0.0, integer: bool = False) -> Any:
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            raise self.err(line, key, f"expected {'a whole' if integer else 'a'} number, got {_show(value)}")
        if value < minimum:
            raise self.err(line, key, f"must be >= {minimum:g}, got {value}")
        return value

    def boolean(self, value: Any, line: int, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.err(line, key, f"expected true or false, got {_show(value)}")
        return value

    def text(self, value: Any, line: int, key: str, hint: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.err(line, key, f"expected text, got {_show(value)}; {hint}")
        return value.strip()

    def path(self, text: str) -> Path:
        p = Path(text).expanduser()
        return p if p.is_absolute() else self.base / p

    # -- sections ------------------------------------------------------------------------------------------
    def top(self, d: _Marked) -> ServeConfig:
        self.keys(
            d,
            "",
            TOP_KEYS,
            {
                "model": "give zoo:NAME (see `edge-sdk zoo list`) or a model file",
                "cameras": "give at least one camera, e.g. cameras: {door: {source: door.mp4}}",
            },
        )
        ln = d.lines
        model = self.text(d["model"], ln["model"], "model", "give zoo:NAME or a model file")
        if not model.startswith("zoo:"):
            p = self.path(model)
            if not p.is_file():
                raise self.err(ln["model"], "model", f"{p} does not exist; give zoo:NAME or a model file")
            model = str(p)
        cfg = ServeConfig(model=model, cameras={}, file=self.file)
        if d.get("task") is not None:
            cfg.task = self._task(d["task"], ln["task"])
        if "http" in d:
            cfg.host, cfg.port = self._http(d["http"], ln["http"])
        token = d.get("token")
        if token is not None:
            cfg.token = self.text(token, ln["token"], "token", f"a secret string (or set {TOKEN_ENV})")
        elif self.env.get(TOKEN_ENV, "").strip():
            cfg.token = self.env[TOKEN_ENV].strip()
        if d.get("threads") is not None:
            cfg.threads = self.number(d["threads"], ln["threads"], "threads", minimum=1, integer=True)
        loop = self.boolean(d["loop"], ln["loop"], "loop") if d.get("loop") is not None else False
        if d.get("options") is not None:
            cfg.options = dict(self.mapping(d["options"], ln["options"], "options", "post-processor options"))
        if d.get("max_upload_mb") is not None:
            cfg.max_upload_mb = float(self.number(d["max_upload_mb"], ln["max_upload_mb"], "max_upload_mb"))
        if d.get("sinks") is not None:
            cfg.sinks = self._sinks(d["sinks"], ln["sinks"], "sinks")
        cams = self.mapping(d["cameras"], ln["cameras"], "cameras", "name: {source: ...}")
        if not cams:
            raise self.err(ln["cameras"], "cameras", "empty; give at least one, e.g. door: {source: door.mp4}")
        for name, value in cams.items():
            cfg.cameras[str(name)] = self._camera(str(name), value, cams.lines[name], loop)
        cfg.lines_of = self.lines_of
        return cfg

    def _task(self, value: Any, line: int) -> str:
        from edge_sdk.postprocess.registry import POSTPROCESSORS

        task = self.text(value, line, "task", "e.g. task: detect")
        if task not in POSTPROCESSORS:
            raise self.err(line, "task", f"unknown task '{task}'; known tasks: {', '.join(POSTPROCESSORS)}")
        return task

    def _http(self, value: Any, line: int) -> tuple[str, int]:
        hint = "give HOST:PORT, e.g. 127.0.0.1:8090 (0.0.0.0:8090 for every interface, with a token)"
        if isinstance(value, int) and not isinstance(value, bool):
            host, port_text = DEFAULT_HOST, str(value)
        elif isinstance(value, str) and value.strip():
            text = value.strip().removeprefix("http://").rstrip("/")
            host, sep, port_text = text.rpartition(":")
            if not sep:
                host, port_text = text, str(DEFAULT_PORT)
            host = host.strip("[]") or DEFAULT_HOST
        else:
            raise self.err(line, "http", f"expected HOST:PORT, got {_show(value)}; {hint}")
        if not port_text.isdigit() or int(port_text) > 65535:
            raise self.err(line, "http", f"port '{port_text}' is not a number 0..65535; {hint}")
        return host, int(port_text)

    def _sinks(self, value: Any, line: int, key: str) -> list[str]:
        from edge_sdk.errors import SinkError
        from edge_sdk.sinks import resolve_sink

        hint = "give a JSON-lines file (events.jsonl) or mqtt://127.0.0.1:1883/topic"
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.err(line, key, f"expected a list, got {_show(value)}; {hint}")
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
            value = _Marked(source=value)
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
                    getattr(cam, key)[str(shape)] = self._points(pts, shapes.lines[shape], k, points, example)
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
            raise self.err(line, key, f"expected a list of [x, y] points, got {_show(value)}; e.g. {example}")
        flat: list[float] = []
        for v in value:
            items = v if isinstance(v, list) else [v]
            if isinstance(v, list) and len(v) != 2:
                raise self.err(line, key, f"a point is [x, y], got {v}; e.g. {example}")
            for x in items:
                if isinstance(x, bool) or not isinstance(x, (int, float)):
                    raise self.err(line, key, f"coordinates must be numbers, got {_show(x)}; e.g. {example}")
                flat.append(float(x))
        pts = list(zip(flat[0::2], flat[1::2]))
        if len(flat) % 2 or (count and len(pts) != count) or (not count and len(pts) < 3):
            need = f"{count} points" if count else "at least 3 points"
            raise self.err(line, key, f"give {need} in source image pixels, e.g. {example}")
        return pts

    def _record(self, value: Any, line: int, key: str) -> RecordConfig:
        from edge_sdk.sinks import VIDEO_SUFFIXES

        if isinstance(value, str):
            value = _Marked(path=value)
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
            value = _Marked(dir=value)
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
                raise self.err(ln["events"], f"{key}.events", f"give enter, leave and/or cross, got {_show(bad)}")
            c.events = tuple(ev)
        if d.get("annotated") is not None:
            c.annotated = self.boolean(d["annotated"], ln["annotated"], f"{key}.annotated")
        return c

    def _age(self, value: Any, line: int, key: str) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(self.number(value, line, key))
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", str(value))
        if not m:
            raise self.err(line, key, f"expected seconds or a duration like 30m, 12h, 7d; got {_show(value)}")
        return float(m.group(1)) * AGE_UNITS[m.group(2)]


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"a {_kind(value)}"
    if value is None:
        return "nothing"
    return f"{_kind(value)} {str(value)!r}" if not isinstance(value, str) else repr(value)
