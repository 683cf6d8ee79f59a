"""Tracking, zones, lines and their events (edge_sdk.analytics): exact counts on a square moving across a
line and through a zone, driven with Detections directly, then end to end through a real ONNX detector
(it finds the bright square in the frame) on an H.264 file, with the events in the JSON lines."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from realtime_helpers import have

pytest.importorskip("supervision")
pytest.importorskip("trackers")

from edge_sdk.analytics import Analytics, parse_line, parse_zone  # noqa: E402
from edge_sdk.analytics.zones import AnalyticsConfigError  # noqa: E402
from edge_sdk.errors import TaskError  # noqa: E402
from edge_sdk.results import Detections  # noqa: E402

W, H, SIDE, STEP, FRAMES = 320, 240, 30, 5, 60
ZONE = {"mid": [(100, 0), (220, 0), (220, 240), (100, 240)]}
LINE = {"gate": [(160, 0), (160, 240)]}  # drawn top to bottom: left -> right is "in"
EXPECTED = [("enter", "in", "zone", "mid"), ("cross", "in", "line", "gate"), ("leave", "out", "zone", "mid")]


def square_x(i: int) -> int:
    return 10 + STEP * i


def summary(events: list[dict]) -> list[tuple[str, str, str, str]]:
    return [(e["event"], e["direction"], "zone" if "zone" in e else "line", e.get("zone") or e.get("line"))
            for e in events]  # fmt: skip


def test_square_through_zone_and_across_line_exact_events_and_counts():
    a = Analytics(zones=ZONE, lines=LINE)
    events, ids = [], []
    for i in range(FRAMES):
        x = square_x(i)
        dets = Detections([[x, 100, x + SIDE, 100 + SIDE]], [0.9], [0], ["square"], image_hw=(H, W))
        tracked, evs = a.update(dets)
        assert tracked.events == evs
        ids.append(int(tracked.tracker_id[0]))
        events += evs
    assert summary(events) == EXPECTED
    assert ids[0] == -1 and len(set(ids[1:])) == 1  # confirmed on its second frame, then the same id throughout
    assert {e["track_id"] for e in events} == {ids[1]}
    assert all(e["label"] == "square" and e["type"] == "event" and "ts" in e for e in events)
    # bottom centre enters at x + 15 >= 100 (frame 15), the box's left edge passes 160 (frame 31), centre > 220
    frames = [square_x(i) for i in (15, 31, 40)]
    assert frames == [85, 165, 210]
    assert a.counts() == {"tracks": 1, "events": 3, "zones": {"mid": {"in": 1, "out": 1, "inside": 0}},
                          "lines": {"gate": {"in": 1, "out": 0}}}  # fmt: skip


def test_back_and_forth_counts_out_and_two_objects_keep_their_ids():
    a = Analytics(lines=LINE)
    xs = [square_x(i) for i in range(0, 45)] + [square_x(i) for i in range(44, -1, -1)]
    out = []
    for x in xs:
        dets = Detections([[x, 20, x + SIDE, 20 + SIDE], [300 - x, 180, 330 - x, 210]], [0.9, 0.8], [0, 1],
                          ["a", "b"], image_hw=(H, W))  # fmt: skip
        tracked, evs = a.update(dets)
        out += evs
    by_label = {}
    for e in out:
        by_label.setdefault(e["label"], []).append((e["direction"], e["track_id"]))
    assert [d for d, _ in by_label["a"]] == ["in", "out"]
    assert [d for d, _ in by_label["b"]] == ["out", "in"]
    assert len({t for _, t in by_label["a"]}) == 1 and len({t for _, t in by_label["b"]}) == 1
    assert by_label["a"][0][1] != by_label["b"][0][1]
    assert a.counts()["lines"]["gate"] == {"in": 2, "out": 2}
    assert a.counts()["tracks"] == 2


def test_a_track_that_vanishes_inside_a_zone_leaves_it_after_lost_frames():
    a = Analytics(track={"lost_frames": 5}, zones=ZONE)
    box = Detections([[150, 100, 180, 130]], [0.9], [0], ["square"], image_hw=(H, W))
    evs = []
    for _ in range(3):
        evs += a.update(box)[1]
    for _ in range(7):
        evs += a.update(Detections.empty((H, W)))[1]
    assert [(e["event"], e.get("lost", False)) for e in evs] == [("enter", False), ("leave", True)]
    assert a.counts()["zones"]["mid"] == {"in": 1, "out": 1, "inside": 0}


def test_specs_and_errors():
    assert parse_zone("door=10,10,200,10,200,150") == ("door", [(10, 10), (200, 10), (200, 150)])
    assert parse_line("gate=160,0,160,240") == ("gate", [(160, 0), (160, 240)])
    for bad in ("door", "door=1,2,3,4", "door=1,2,x,4,5,6"):
        with pytest.raises(AnalyticsConfigError, match="--zone"):
            parse_zone(bad)
    with pytest.raises(AnalyticsConfigError, match="exactly 2 points"):
        Analytics(lines={"g": [(0, 0), (1, 1), (2, 2)]})
    with pytest.raises(AnalyticsConfigError, match="at least 3"):
        Analytics(zones={"z": [(0, 0), (1, 1)]})
    with pytest.raises(TaskError, match="need boxes"):
        Analytics(task="classify")


# -- end to end: a real ONNX detector on an H.264 file --------------------------------------------------------


def square_detector(path: Path) -> Path:
    """x[1,3,H,W] (0..1) -> [1,1,7] YOLOv5 layout: centre and side of the bright (red > 0.5) pixels, objectness,
    two class scores (1, 0); 7 columns, as (1, N, 6) would read as the NMS-free x1, y1, x2, y2, score, class)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    xs = (np.arange(W, dtype=np.float32) + 0.5).reshape(1, 1, W)
    ys = (np.arange(H, dtype=np.float32) + 0.5).reshape(1, H, 1)
    consts = {"xs": xs, "ys": ys, "half": np.float32(0.5), "one": np.ones(1, np.float32),
              "zero": np.zeros(1, np.float32), "axes": np.array([1, 2], np.int64), "idx": np.array(0, np.int64),
              "shape": np.array([1, 1, 7], np.int64)}  # fmt: skip
    n = helper.make_node
    nodes = [
        n("Gather", ["x", "idx"], ["red"], axis=1),
        n("Greater", ["red", "half"], ["hit"]),
        n("Cast", ["hit"], ["mask"], to=TensorProto.FLOAT),
        n("ReduceSum", ["mask", "axes"], ["area"], keepdims=0),
        n("Mul", ["mask", "xs"], ["mx"]),
        n("Mul", ["mask", "ys"], ["my"]),
        n("ReduceSum", ["mx", "axes"], ["sx"], keepdims=0),
        n("ReduceSum", ["my", "axes"], ["sy"], keepdims=0),
        n("Max", ["area", "one"], ["den"]),
        n("Div", ["sx", "den"], ["cx"]),
        n("Div", ["sy", "den"], ["cy"]),
        n("Sqrt", ["area"], ["side"]),
        n("Min", ["area", "one"], ["obj"]),
        n("Concat", ["cx", "cy", "side", "side", "obj", "one", "zero"], ["flat"], axis=0),
        n("Reshape", ["flat", "shape"], ["boxes"]),
    ]
    graph = helper.make_graph(
        nodes, "square", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 1, 7])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def square_clip(path: Path) -> Path:
    frames = np.full((FRAMES, H, W, 3), 20, np.uint8)
    for i in range(FRAMES):
        x = square_x(i)
        frames[i, 100 : 100 + SIDE, x : x + SIDE] = 255
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
         f"{W}x{H}", "-r", "30", "-i", "-", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-crf", "12", str(path)],
        input=frames.tobytes(), check=True, timeout=60,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def detector_and_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pytest.importorskip("onnx")
    if not have("ffmpeg"):
        pytest.skip("ffmpeg not installed (make sysdeps)")
    folder = tmp_path_factory.mktemp("analytics")
    return square_detector(folder / "square.onnx"), square_clip(folder / "square.mp4")


def test_pipeline_tracks_and_writes_events_to_jsonl_and_metrics(detector_and_clip, tmp_path):
    from edge_sdk.pipeline import Pipeline
    from edge_sdk.preprocess import PreprocessSpec

    model, clip = detector_and_clip
    out = tmp_path / "events.jsonl"
    pairs = []
    pipe = Pipeline(str(clip), str(model), task="detect", preprocess=PreprocessSpec(size=(H, W), mean=0.0, std=255.0),
                    labels=["square", "other"], sinks=[str(out)], metrics_every=0, zones=ZONE, lines=LINE,
                    on_frame_result=lambda f, r: pairs.append((f.index, r)))  # fmt: skip
    metrics = pipe.run()
    lines = [json.loads(s) for s in out.read_text().splitlines()]
    results = [d for d in lines if d["type"] == "result"]
    events = [d for d in lines if d["type"] == "event"]
    assert len(results) == FRAMES
    assert all(r["count"] == 1 for r in results)
    ids = [r["detections"][0]["track_id"] for r in results]
    assert ids[0] == -1 and len(set(ids[1:])) == 1, ids  # one object, one id, no switch
    assert summary(events) == EXPECTED
    assert [e["frame"] for e in events] == [15, 31, 40]
    assert all(e["track_id"] == ids[1] and e["label"] == "square" for e in events)
    assert [e["pos_ms"] for e in events] == pytest.approx([15000 / 30, 31000 / 30, 40000 / 30], abs=1)
    # each event comes right after its frame's result line
    for e in events:
        before = lines[lines.index(e) - 1]
        assert before["type"] in ("result", "event") and before["frame"] == e["frame"]
    counts = {"tracks": 1, "events": 3, "zones": {"mid": {"in": 1, "out": 1, "inside": 0}},
              "lines": {"gate": {"in": 1, "out": 0}}}  # fmt: skip
    assert metrics["analytics"] == counts
    final = [d for d in lines if d["type"] == "metrics" and d["final"]]
    assert final and final[-1]["analytics"] == counts
    # typed results carry the tracker ids and the frame's events
    assert [i for i, r in pairs if r.events] == [15, 31, 40]
    assert int(pairs[20][1].tracker_id[0]) == ids[1]
    assert pairs[20][1].to_supervision().tracker_id.tolist() == [ids[1]]


def test_cli_flags(detector_and_clip, tmp_path, capsys):
    from edge_sdk.cli.main import main

    model, clip = detector_and_clip
    out, folder = tmp_path / "cli.jsonl", tmp_path / "clips"
    folder.mkdir()
    code = main(["run", str(model), "--task", "detect", "--source", str(clip), "--sink", str(out), "--no-probe",
                 "--size", f"{H}x{W}", "--mean", "0", "--std", "255", "--no-status", "--json", "--clips", str(folder),
                 "--zone", "mid=100,0,220,0,220,240,100,240", "--line", "gate=160,0,160,240"])  # fmt: skip
    assert code == 0
    # enter at 0.5 s starts a clip (2 s pre-roll, 3 s post-roll); the cross at 1.03 s extends it to the end
    assert sorted(p.suffix for p in folder.iterdir()) == [".jpg", ".mp4"]
    report = json.loads(capsys.readouterr().out)
    assert report["metrics"]["analytics"]["lines"] == {"gate": {"in": 1, "out": 0}}
    events = [d for d in map(json.loads, out.read_text().splitlines()) if d["type"] == "event"]
    assert summary(events) == EXPECTED
    code = main(["run", str(model), "--task", "detect", "--source", str(clip), "--no-probe", "--line", "g=1,2,3"])
    assert code == 2 and "--line 'g=1,2,3': give x1,y1,x2,y2" in capsys.readouterr().err
    code = main(["run", str(model), "--task", "detect", "--source", str(clip), "--no-probe", "--clips", str(folder)])
    assert code == 2 and "--clips records around zone and line events" in capsys.readouterr().err


def test_cli_events_only_prints_zone_and_line_events(detector_and_clip, tmp_path):
    """``--events-only`` with zones / lines: one line per event in the terminal, or only event JSON lines."""
    import sys

    model, clip = detector_and_clip
    args = [sys.executable, "-m", "edge_sdk.cli.main", "run", str(model), "--task", "detect", "--source", str(clip),
            "--no-probe", "--size", f"{H}x{W}", "--mean", "0", "--std", "255", "--events-only",
            "--zone", "mid=100,0,220,0,220,240,100,240", "--line", "gate=160,0,160,240"]  # fmt: skip
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert [ln.split()[2:5] for ln in lines] == [["enter", "zone", "mid"], ["cross", "line", "gate"],
                                                   ["leave", "zone", "mid"]], r.stdout  # fmt: skip
    assert re.search(r"  cross  line gate in  0 #\d+$", lines[1]), lines[1]  # label (class 0: no labels file), track
    r = subprocess.run([*args, "--sink", "-"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    docs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert summary([d for d in docs if d["type"] == "event"]) == EXPECTED
    assert not [d for d in docs if d["type"] == "result"]


def test_annotate_draws_zones_lines_and_track_ids():
    pytest.importorskip("cv2")
    a = Analytics(zones=ZONE, lines=LINE)
    dets = Detections([[20, 100, 50, 130]], [0.9], [0], ["square"], image_hw=(H, W))
    a.update(dets)
    tracked, _ = a.update(dets)
    img = tracked.annotate(np.zeros((H, W, 3), np.uint8))
    assert (img[:, 160] == (255, 0, 255)).all(axis=1).sum() > H // 2  # the line
    assert (img[:, 100] == (255, 200, 0)).all(axis=1).sum() > H // 2  # the zone's left edge
    assert (img[100:131, 20:51] == (0, 255, 0)).all(axis=2).any()  # the box


def test_event_clip_has_pre_and_post_roll_and_a_snapshot(detector_and_clip, tmp_path):
    cv2 = pytest.importorskip("cv2")
    from edge_sdk.analytics import ClipSink
    from edge_sdk.pipeline import Pipeline
    from edge_sdk.preprocess import PreprocessSpec

    model, clip = detector_and_clip
    folder = tmp_path / "clips"
    folder.mkdir()
    clips = ClipSink(folder, pre=0.5, post=0.5, events=("cross",))
    Pipeline(str(clip), str(model), task="detect", preprocess=PreprocessSpec(size=(H, W), mean=0.0, std=255.0),
             labels=["square", "other"], sinks=[clips], metrics_every=0, zones=ZONE, lines=LINE).run()  # fmt: skip
    assert len(clips.clips) == 1
    c = clips.clips[0]
    assert c["event"]["event"] == "cross" and c["event"]["frame"] == 31
    assert c["frames"] == 31 and c["duration_s"] == pytest.approx(31 / 30, abs=1e-3)  # frames 16..46
    cap = cv2.VideoCapture(str(c["path"]))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    assert len(frames) == 31
    # the square's left edge in the first and last frame: frames 16 and 46 of the source
    lefts = [int(np.flatnonzero(f[115, :, 2] > 128)[0]) for f in (frames[0], frames[-1])]
    assert lefts == [pytest.approx(square_x(16), abs=2), pytest.approx(square_x(46), abs=2)]
    snap = cv2.imread(str(c["snapshot"]))
    assert snap.shape == (H, W, 3) and abs(int(np.flatnonzero(snap[115, :, 2] > 128)[0]) - square_x(31)) <= 2
    assert sorted(p.name for p in folder.iterdir()) == sorted([c["path"].name, c["snapshot"].name])


def test_clips_default_triggers_and_size_limit(detector_and_clip, tmp_path):
    from edge_sdk.analytics import ClipSink
    from edge_sdk.pipeline import Pipeline
    from edge_sdk.preprocess import PreprocessSpec

    model, clip = detector_and_clip
    clips = ClipSink(tmp_path, pre=0.5, post=0.3, max_bytes=1)  # enter (15) and cross (31): two clips
    Pipeline(str(clip), str(model), task="detect", preprocess=PreprocessSpec(size=(H, W), mean=0.0, std=255.0),
             labels=["square", "other"], sinks=[clips], metrics_every=0, zones=ZONE, lines=LINE).run()  # fmt: skip
    assert [c["event"]["event"] for c in clips.clips] == ["enter", "cross"]
    assert [c["frames"] for c in clips.clips] == [25, 25]  # 15 before, the event's frame, 9 after
    left = sorted(p.name for p in tmp_path.glob("clip-*"))  # over 1 byte: only the newest clip stays
    assert left == sorted([clips.clips[1]["path"].name, clips.clips[1]["snapshot"].name])


def test_clip_of_a_live_source_keeps_real_time(detector_and_clip, tmp_path):
    from edge_sdk.analytics import ClipSink
    from edge_sdk.pipeline import Pipeline
    from edge_sdk.preprocess import PreprocessSpec
    from edge_sdk.sources import open_source

    model, clip = detector_and_clip
    clips = ClipSink(tmp_path, pre=0.5, post=0.5, events=("cross",))
    p = Pipeline(open_source(str(clip), mode="live"), str(model), task="detect", labels=["square", "other"],
                 preprocess=PreprocessSpec(size=(H, W), mean=0.0, std=255.0), sinks=[clips], metrics_every=0,
                 zones=ZONE, lines=LINE)  # fmt: skip
    assert p.live
    p.run()
    assert [c["event"]["event"] for c in clips.clips] == ["cross"]
    assert clips.clips[0]["duration_s"] == pytest.approx(31 / 30, abs=0.15)  # placed by capture time
