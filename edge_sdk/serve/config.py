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

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.errors import ConfigError
from edge_sdk.serve.config_camera import CameraConfig, Checks, ClipsConfig, RecordConfig  # noqa: F401 - re-exported
from edge_sdk.serve.yaml_lines import Marked, config_error, read_yaml, show

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8090
TOKEN_ENV = "EDGE_SDK_SERVE_TOKEN"
TOP_KEYS = ("model", "task", "http", "token", "threads", "loop", "options", "sinks", "cameras", "max_upload_mb")


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
        return config_error(self.file, self.lines_of.get(key, 0), key, message)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


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
    data = read_yaml(text, file)
    if data is None:
        raise config_error(file, 0, "", "the file is empty; give at least `model:` and `cameras:`")
    if not isinstance(data, Marked):
        raise config_error(file, 1, "", f"expected a mapping of keys (model:, cameras:, ...), got {show(data)}")
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


class _Checker(Checks):
    """The top level of the config (the cameras are checked by :class:`Checks`)."""

    # -- sections ------------------------------------------------------------------------------------------
    def top(self, d: Marked) -> ServeConfig:
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
            opts = self.mapping(d["options"], ln["options"], "options", "post-processor options")
            cfg.options = dict(opts)
            self.lines_of.update({f"options.{k}": opts.lines[k] for k in opts})
        if d.get("max_upload_mb") is not None:
            cfg.max_upload_mb = float(self.number(d["max_upload_mb"], ln["max_upload_mb"], "max_upload_mb"))
        if d.get("sinks") is not None:
            cfg.sinks = self._sinks(d["sinks"], ln["sinks"], "sinks")
        cams = self.mapping(d["cameras"], ln["cameras"], "cameras", "name: {source: ...}")
        if not cams:
            raise self.err(ln["cameras"], "cameras", "empty; give at least one, e.g. door: {source: door.mp4}")
        for name, value in cams.items():
            self.lines_of[f"cameras.{name}"] = cams.lines[name]
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
            if not sep and text.isdigit():  # http: "8090", quoted: a port, as http: 8090 is
                host, port_text = DEFAULT_HOST, text
            elif not sep:
                host, port_text = text, str(DEFAULT_PORT)
            host = host.strip("[]") or DEFAULT_HOST
        else:
            raise self.err(line, "http", f"expected HOST:PORT, got {show(value)}; {hint}")
        if not port_text.isdigit() or int(port_text) > 65535:
            raise self.err(line, "http", f"port '{port_text}' is not a number 0..65535; {hint}")
        return host, int(port_text)
