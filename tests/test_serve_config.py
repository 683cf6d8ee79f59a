"""``edge-sdk serve`` config (edge_sdk.serve.config): every error names the file, the line and the key; unknown keys
list the valid ones; the smallest config is enough; relative paths resolve against the config's folder; the CLI
turns a bad config into one line; the systemd unit; a non-loopback address without a token is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("yaml")

from edge_sdk.errors import ConfigError  # noqa: E402
from edge_sdk.serve.config import load_config, parse_config  # noqa: E402

MINIMAL = """\
model: zoo:centerface
http: 127.0.0.1:8090
cameras: {door: {source: door.mp4}, yard: {source: yard.mp4}}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("door.mp4", "yard.mp4"):
        (tmp_path / name).write_bytes(b"")  # the config checks that a file source exists, not what it holds
    (tmp_path / "clips").mkdir()
    return tmp_path


def write(folder: Path, text: str, name: str = "door.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: zoo:centerface\ncameras:\n  yard: {source: yard.mp4}\n  door:\n    loop: true\n",
         "door.yaml line 4: cameras.door.source: missing; give a file, rtsp:// URI or camera index"),
        ("model: zoo:centerface\ncameras:\n  door:\n    source: door.mp4\n    lopo: true\n",
         "door.yaml line 5: cameras.door.lopo: unknown key (did you mean 'loop'?); valid keys: source, loop, mode, "
         "track, zones, lines, record, clips, sinks"),
        ("model: zoo:centerface\nthreads: two\ncameras: {door: door.mp4}\n",
         "door.yaml line 2: threads: expected a whole number, got 'two'"),
        ("model: zoo:centerface\nhttp: 127.0.0.1:http\ncameras: {door: door.mp4}\n",
         "door.yaml line 2: http: port 'http' is not a number 0..65535"),
        ("cameras: {door: door.mp4}\n", "door.yaml line 1: model: missing; give zoo:NAME"),
        ("model: zoo:centerface\nmodle: x\ncameras: {door: door.mp4}\n",
         "door.yaml line 2: modle: unknown key (did you mean 'model'?); valid keys: model, task, http, token"),
        ("model: zoo:centerface\ncameras:\n  door:\n    source: nothere.mp4\n",
         "door.yaml line 4: cameras.door.source: "),
        ("model: zoo:centerface\ncameras:\n  door:\n    source: door.mp4\n    zones: {z: [[0, 0], [1, 1]]}\n",
         "door.yaml line 5: cameras.door.zones.z: give at least 3 points in source image pixels, e.g. z: [[10, 10], "),
        ("model: zoo:centerface\ncameras:\n  door:\n    source: door.mp4\n    zones: {z: '0,0,100,0,100'}\n",
         "door.yaml line 5: cameras.door.zones.z: 5 coordinates: points are x, y pairs; e.g. z: [[10, 10], "),
        ("model: zoo:centerface\ncameras:\n  door: {source: door.mp4, record: r-{time}.mp4}\n",
         "door.yaml line 3: not valid YAML: expected ',' or '}', but got '{'; inside { }, quote a value that holds "
         "braces, e.g. record: 'rec/cam-{time}.mp4'"),
        ("model: zoo:centerface\ncameras:\n  door:\n    source: door.mp4\n    lines: {g: [[0, 0], [1, 1]]}\n"
         "    clips: {dir: clips, events: [enter, crosss]}\n",
         "door.yaml line 6: cameras.door.clips.events: give enter, leave and/or cross; not one: 'crosss'"),
        ("model: zoo:centerface\ncameras:\n  door:\n    source: door.mp4\n    lines:\n      gate: [1, 2, x, 4]\n",
         "door.yaml line 6: cameras.door.lines.gate: coordinates must be numbers"),
        ("model: zoo:centerface\ncameras:\n  door:\n    source: door.mp4\n    clips: {dir: clips}\n",
         "door.yaml line 5: cameras.door.clips: clips are recorded around zone and line events"),
        ("model: zoo:centerface\ncameras:\n  door:\n    source: door.mp4\n    record: out/door.mp4\n",
         "door.yaml line 5: cameras.door.record.path: the folder"),
        ("model: zoo:centerface\ncameras:\n  door: {source: door.mp4, mode: slow}\n",
         "door.yaml line 3: cameras.door.mode: 'slow' is not one of live, paced, fast"),
        ("model: zoo:centerface\nsinks: [window]\ncameras: {door: door.mp4}\n",
         "door.yaml line 2: sinks[0]: 'window' is not a serve sink"),
        ("model: zoo:centerface\ntask: pose\ncameras: {door: door.mp4}\n",
         "door.yaml line 2: task: unknown task 'pose'; known tasks: classify, detect"),
        ("model: zoo:centerface\ncameras: {door: door.mp4}\ncameras: {yard: yard.mp4}\n",
         "door.yaml line 3: cameras: given twice"),
        ("model: zoo:centerface\ncameras: {door: door.mp4\n",
         "door.yaml line 2: not valid YAML: the { opened on this line is never closed"),
        ("model: zoo:centerface\ncameras: []\n", "door.yaml line 2: cameras: expected a mapping"),
        ("", "door.yaml: the file is empty"),
        ("model: zoo:centerface\ncameras:\n  door/1: door.mp4\n", "door.yaml line 3: cameras.door/1: a camera name"),
        ("model: zoo:centerface\ncameras:\n  door:\n    source: door.mp4\n    clips:\n      dir: clips\n"
         "      max_age: soon\n    lines: {g: [[0, 0], [1, 1]]}\n",
         "door.yaml line 7: cameras.door.clips.max_age: expected seconds or a duration like 30m"),
    ],
)  # fmt: skip
def test_errors_name_the_line_and_the_key(folder, text, message):
    with pytest.raises(ConfigError) as e:
        load_config(write(folder, text))
    assert message in str(e.value)


def test_smallest_config_is_enough_and_paths_resolve_against_its_folder(folder, monkeypatch):
    monkeypatch.chdir("/")
    cfg = load_config(write(folder, MINIMAL))
    assert cfg.model == "zoo:centerface" and cfg.task is None and cfg.token is None
    assert (cfg.host, cfg.port, cfg.loopback) == ("127.0.0.1", 8090, True)
    assert list(cfg.cameras) == ["door", "yard"]
    door = cfg.cameras["door"]
    assert door.source == str(folder / "door.mp4") and door.mode == "live" and not door.loop
    assert door.zones == {} and door.record is None and door.clips is None and door.sinks == []


def test_a_quoted_port_is_a_port(folder):
    cfg = load_config(write(folder, MINIMAL.replace("127.0.0.1:8090", '"8091"')))
    assert (cfg.host, cfg.port) == ("127.0.0.1", 8091)


def test_every_key(folder, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_SERVE_TOKEN", "from-env")
    text = """\
    model: zoo:centerface
    task: detect
    http: 0.0.0.0:9000
    threads: 2
    loop: true
    options: {threshold: 0.4}
    max_upload_mb: 2
    sinks: [events.jsonl, "mqtt://127.0.0.1:1883/edge"]
    cameras:
      door:
        source: door.mp4
        mode: paced
        zones: {mid: [[100, 0], [220, 0], [220, 240], [100, 240]]}
        lines: {gate: "160,0,160,240"}
        record: {path: "door-{time}.mp4", annotated: false}
        clips: {dir: clips, pre_s: 1, post_s: 2.5, max_mb: 50, max_age: 2d, events: [enter]}
        sinks: [door.jsonl]
      cam0: {source: 0, loop: false}
      street: rtsp://10.0.0.2/stream
    """
    cfg = load_config(write(folder, text))
    assert (cfg.task, cfg.host, cfg.port, cfg.threads, cfg.loopback) == ("detect", "0.0.0.0", 9000, 2, False)
    assert cfg.token == "from-env" and cfg.options == {"threshold": 0.4} and cfg.max_upload_mb == 2.0
    assert cfg.sinks == [str(folder / "events.jsonl"), "mqtt://127.0.0.1:1883/edge"]
    door = cfg.cameras["door"]
    assert door.loop and door.mode == "paced"
    assert door.zones == {"mid": [(100, 0), (220, 0), (220, 240), (100, 240)]}
    assert door.lines == {"gate": [(160, 0), (160, 240)]}
    assert door.record is not None and door.record.path.parent == folder and "{time}" not in door.record.path.name
    assert not door.record.annotated
    c = door.clips
    assert c is not None and (c.dir, c.pre_s, c.post_s, c.max_mb, c.max_age_s, c.events) == (
        folder / "clips", 1.0, 2.5, 50.0, 172800.0, ("enter",))  # fmt: skip
    assert door.sinks == [str(folder / "door.jsonl")]
    assert cfg.cameras["cam0"].source == "0" and not cfg.cameras["cam0"].loop
    assert cfg.cameras["street"].source == "rtsp://10.0.0.2/stream" and cfg.cameras["street"].loop
    text = textwrap.dedent(text).replace("task: detect", "task: detect\ntoken: s3cret")
    cfg = parse_config(text, file=folder / "door.yaml")
    assert cfg.token == "s3cret"  # the config's token wins over the environment


def test_non_loopback_without_a_token_is_refused_before_anything_starts(folder, monkeypatch):
    from edge_sdk.serve.service import Service

    monkeypatch.delenv("EDGE_SDK_SERVE_TOKEN", raising=False)
    cfg = load_config(write(folder, MINIMAL.replace("127.0.0.1:8090", "0.0.0.0:0")))
    with pytest.raises(ConfigError, match=r"door.yaml line 2: http: 0.0.0.0:0 is not a loopback address: serving "
                                          r"other machines needs a bearer token; set token:"):  # fmt: skip
        Service(cfg).start()


def test_cli_bad_config_is_one_line_exit_2(folder, capsys):
    from edge_sdk.cli.main import main

    path = write(folder, "model: zoo:centerface\ncameras:\n  door:\n    loop: true\n")
    assert main(["serve", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("edge-sdk serve: error: door.yaml line 3: cameras.door.source: missing; give a file, "
                           "rtsp:// URI or camera index")  # fmt: skip
    assert main(["serve", str(folder / "none.yaml")]) == 2
    assert "config file" in capsys.readouterr().err


def test_print_systemd_unit(folder, capsys):
    from edge_sdk.cli.main import main

    path = write(folder, MINIMAL)
    assert main(["serve", "--print-systemd-unit", str(path)]) == 0
    unit = capsys.readouterr().out
    exec_line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    assert exec_line == f"ExecStart={sys.executable} -m edge_sdk.cli.main serve {path.resolve()}"
    for line in ("Restart=on-failure", "KillSignal=SIGTERM", f"WorkingDirectory={folder.resolve()}", "[Install]"):
        assert line in unit.splitlines()
    assert any(ln.startswith("TimeoutStopSec=") for ln in unit.splitlines())
    assert any(ln.startswith("User=") and len(ln) > 5 for ln in unit.splitlines())
    assert main(["serve", "--print-systemd-unit", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"unit": unit, "install_as": "/etc/systemd/system/edge-sdk-serve.service"}
    # a unit for a config that does not load would fail and be restarted every few seconds: refused, no unit
    bad = folder / "typo.yaml"
    bad.write_text(MINIMAL.replace("cameras:", "camras:", 1))
    assert main(["serve", "--print-systemd-unit", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "typo.yaml line" in err and "camras" in err
    assert main(["serve", "--print-systemd-unit", str(folder / "nowhere.yaml")]) == 2
    assert "config file" in capsys.readouterr().err


def test_cli_stays_light():
    code = ("import sys; from edge_sdk.cli.main import build_parser; build_parser(); import edge_sdk.serve; "
            "print(sorted(m for m in ('yaml', 'prometheus_client', 'cv2') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_each_camera_publishes_under_its_own_mqtt_topic():
    from edge_sdk.serve.service import camera_topic

    assert camera_topic("mqtt://127.0.0.1:1883/edge", "door") == "mqtt://127.0.0.1:1883/edge/door"
    assert camera_topic("mqtt://broker", "door") == "mqtt://broker/edge_sdk/events/door"
    assert camera_topic("mqtts://u:p@broker:8883/a/b/", "yard") == "mqtts://u:p@broker:8883/a/b/yard"
