"""Validation and calibration inputs of the kind the model sees: token ids inside the vocabulary, the user's
own data split into calibration and held-out parts, integers never filled with random floats, and ONNX
graphs with Erf (exact GELU) reaching TFLite."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from converters import convert  # noqa: E402
from converters.realistic_inputs import input_roles, realistic_samples  # noqa: E402
from converters.sources import open_source  # noqa: E402
from converters.vocab import vocab_sizes  # noqa: E402


class TokenClassifier(torch.nn.Module):
    """A text classifier: word + segment embeddings, masked mean, linear head."""

    def __init__(self, vocab: int = 100) -> None:
        super().__init__()
        self.words = torch.nn.Embedding(vocab, 16)
        self.segments = torch.nn.Embedding(2, 16)
        self.head = torch.nn.Linear(16, 10)

    def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001
        h = (self.words(input_ids) + self.segments(token_type_ids)) * attention_mask.unsqueeze(-1).float()
        return self.head(h.sum(1) / attention_mask.sum(1, keepdim=True).clamp(min=1).float())


def _token_inputs(seq: int = 12) -> tuple:
    torch.manual_seed(0)
    return (
        torch.randint(0, 100, (1, seq)),
        torch.ones(1, seq, dtype=torch.int64),
        torch.zeros(1, seq, dtype=torch.int64),
    )


def test_token_ids_stay_inside_the_vocabulary_read_from_the_embedding_table():
    source = open_source(TokenClassifier(100), example_inputs=_token_inputs())
    roles = {r.name: r for r in input_roles(source)}
    assert [r.role for r in roles.values()] == ["token_ids", "attention_mask", "token_type_ids"]
    assert roles["input_0"].vocab == 100 and not roles["input_0"].synthetic
    samples, origin, synthetic = realistic_samples(source, 40)
    ids = np.stack([s[0] for s in samples])
    mask = np.stack([s[1] for s in samples])
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 100  # never outside the table
    assert np.all(ids[mask == 0] == 0) and np.all(ids[mask == 1] > 0)  # padding after the used length
    lengths = mask.sum(axis=(1, 2))
    assert lengths.min() >= 3 and lengths.max() <= 12 and len(set(lengths.tolist())) > 3  # realistic, varied
    assert np.all(np.stack([s[2] for s in samples]) == 0)
    assert not synthetic and "vocabulary (100)" in origin


def test_token_model_converts_and_validates_in_range(tmp_path):
    """Random integers outside the vocabulary were an IndexError in the original model's own run."""
    result = convert(TokenClassifier(100), to=["onnx"], example_inputs=_token_inputs(), output_dir=tmp_path,
                     progress=False)  # fmt: skip
    assert result.passed
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["validation"]["synthetic"] is False
    assert "token ids within the vocabulary (100)" in manifest["validation"]["origin"]
    # the ONNX artifact as a source: its vocabulary comes from the Gather on the initializer
    onnx_source = open_source(result.artifact("onnx", "fp32").path)
    assert vocab_sizes(onnx_source) == {"input_0": 100, "input_2": 2}


def test_huggingface_bert_vocabulary_from_its_word_embeddings(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=500, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    model = transformers.BertModel(config).eval()
    ids = torch.randint(0, 500, (1, 16))
    source = open_source(model, example_inputs=(ids, torch.ones(1, 16, dtype=torch.int64)))
    roles = input_roles(source)
    assert [(r.role, r.vocab) for r in roles] == [("token_ids", 500), ("attention_mask", None)]


def test_user_npy_is_split_into_calibration_and_held_out(tmp_path):
    """--calib data.npy without --held-out: 80% calibrates, the other 20% validates (seeded, disjoint)."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    data = np.random.default_rng(5).normal(3.0, 2.0, size=(50, 1, 8)).astype(np.float32)  # the user's kind of data
    np.save(tmp_path / "data.npy", data)
    out = tmp_path / "out"
    convert(model, to=["onnx"], precision=["fp32", "int8"], example_inputs=(torch.zeros(1, 8),),
            calibration=str(tmp_path / "data.npy"), output_dir=out, progress=False, allow_degraded=True)  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["validation"]["count"] == 10 and manifest["calibration"]["count"] == 40
    assert "held-out 20% of" in manifest["validation"]["origin"] and "data.npy" in manifest["validation"]["origin"]
    assert manifest["validation"]["synthetic"] is False
    assert "10 of 50 samples kept apart for validation" in manifest["calibration"]["notes"]


def test_split_is_deterministic_and_disjoint(tmp_path):
    from converters.plan.data_stage import split_user_data as _split_user_data

    torch.manual_seed(1)
    data = np.arange(30 * 8, dtype=np.float32).reshape(30, 1, 8)
    np.save(tmp_path / "d.npy", data)
    source = open_source(torch.nn.Linear(8, 2).eval(), example_inputs=(torch.zeros(1, 8),))
    cal1, held1 = _split_user_data(str(tmp_path / "d.npy"), None, source, None, 32)
    cal2, held2 = _split_user_data(str(tmp_path / "d.npy"), None, source, None, 32)
    firsts = lambda samples: {float(s[0].ravel()[0]) for s in samples}  # noqa: E731
    assert firsts(held1.samples) == firsts(held2.samples) and len(held1.samples) == 6
    assert not firsts(held1.samples) & firsts(cal1.samples)
    assert len(firsts(held1.samples) | firsts(cal1.samples)) == 30
    # an explicit --held-out wins: nothing is split off
    cal3, held3 = _split_user_data(str(tmp_path / "d.npy"), str(tmp_path / "d.npy"), source, None, 32)
    assert held3 is None and cal3 == str(tmp_path / "d.npy")


def test_integer_inputs_with_no_table_are_never_random_floats_and_are_marked():
    class Index(torch.nn.Module):
        def forward(self, x, k):  # noqa: ANN001
            return x * (k.float() + 1)

    source = open_source(Index(), example_inputs=(torch.zeros(1, 4), torch.zeros(1, 4, dtype=torch.int32)))
    roles = input_roles(source)
    assert roles[1].role == "token_ids" and roles[1].synthetic and "no embedding table" in roles[1].note
    samples, origin, synthetic = realistic_samples(source, 8)
    assert all(s[1].dtype == np.int32 and set(np.unique(s[1])) <= {0, 1} for s in samples)
    assert synthetic and "seeded random values (synthetic)" in origin


def _gelu_onnx(path):
    class Gelu(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(16, 32), torch.nn.Linear(32, 10)

        def forward(self, x):  # noqa: ANN001
            return self.b(torch.nn.functional.gelu(self.a(x)))

    torch.manual_seed(0)
    torch.onnx.export(Gelu().eval(), (torch.randn(1, 16),), str(path), input_names=["x"], opset_version=17,
                      dynamo=False)  # fmt: skip
    assert "Erf" in {n.op_type for n in onnx.load(str(path)).graph.node}
    return path


def test_erf_decomposition_matches_erf():
    from math import erf

    from converters.routes.onnx_decompose import ERF_A, ERF_B, ERF_C, ERF_CLIP

    x = np.linspace(-9, 9, 20001)
    z = np.clip(x, -ERF_CLIP, ERF_CLIP)
    approx = np.tanh(z * (ERF_A + ERF_B * z**2 + ERF_C * z**4))
    assert np.max(np.abs(approx - np.vectorize(erf)(x))) < 4e-5


@pytest.mark.slow
def test_onnx_with_erf_reaches_tflite_fp32_and_int8(tmp_path):
    """TFLite has no Erf builtin: the graph is rewritten into ops that have fp32 and int8 kernels."""
    src = _gelu_onnx(tmp_path / "gelu.onnx")
    result = convert(src, to=["tflite"], precision=["fp32", "int8"], calibration="synthetic",
                     output_dir=tmp_path / "out", progress=False)  # fmt: skip
    assert result.passed
    assert result.artifact("tflite", "fp32").metrics[0].cosine > 0.99999
    assert result.artifact("tflite", "int8").metrics[0].cosine > 0.99


def test_unknown_target_isa_is_refused_before_any_work(tmp_path):
    from edge_sdk.errors import ConversionError

    with pytest.raises(ConversionError, match=r"unknown target ISA 'zz'; use one of x86-avx2"):
        convert(torch.nn.Linear(4, 2).eval(), to=["onnx"], example_inputs=(torch.zeros(1, 4),), target_isa="zz",
                output_dir=tmp_path / "o")  # fmt: skip
    assert not (tmp_path / "o" / "linear_fp32.onnx").exists()


def test_unknown_conversion_option_lists_the_known_ones():
    from converters.plan import ConversionOptions
    from edge_sdk.errors import ConversionError

    with pytest.raises(ConversionError, match=r"got unknown option\(s\) \['calib'\]; options are .*calibration"):
        ConversionOptions.from_keywords(calib="x.npy")
    opts = ConversionOptions.from_keywords(calibration="x.npy", fallback=False, opset=13)
    assert (opts.data.calibration, opts.quant.fallback, opts.source.opset) == ("x.npy", False, 13)
