"""``transformers`` models built from a config (random weights, nothing downloaded), each wrapped to return
plain tensors: BERT-tiny-sized, a small DistilBERT, ViT-tiny, a Whisper-tiny-sized encoder, a small wav2vec2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._common import (
    Builder,
    Case,
    fit_photo_heads,
    log_mels,
    normalise,
    photos,
    save_npz,
    speech_windows,
    token_batch,
)

SEQ_LEN = 64


def _wrap(model: Any, keys: tuple[str, ...]) -> Any:
    import torch

    class Outputs(torch.nn.Module):
        """The model with its ModelOutput turned into a tuple of tensors (``convert`` takes tensors)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.model(*args)
            return tuple(out[k] for k in keys)

    return Outputs().eval()


def _text_case(model: Any, keys: tuple[str, ...], vocab: int, workdir: Path, n_calib: int, n_held: int) -> Case:
    import torch

    ids_c, mask_c = token_batch(n_calib, SEQ_LEN, vocab, seed=1)
    ids_h, mask_h = token_batch(n_held, SEQ_LEN, vocab, seed=2)
    calib = save_npz(workdir / "calib.npz", {"input_0": ids_c, "input_1": mask_c})
    held = save_npz(workdir / "held.npz", {"input_0": ids_h, "input_1": mask_h})
    example = (torch.from_numpy(ids_h[:1]), torch.from_numpy(mask_h[:1]))
    return Case(_wrap(model, keys), example, calib, held, "encoder", f"token ids < {vocab}, lengths 8..{SEQ_LEN}",
                f"input_ids + attention_mask 1x{SEQ_LEN} int64")  # fmt: skip


def bert_tiny(workdir: Path, n_calib: int, n_held: int) -> Case:
    """BertModel(BertConfig(hidden 128, 2 layers, 2 heads, intermediate 512)): last hidden state and pooler."""
    from transformers import BertConfig, BertModel

    cfg = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
    return _text_case(BertModel(cfg), ("last_hidden_state", "pooler_output"), cfg.vocab_size, workdir, n_calib,
                      n_held)  # fmt: skip


def distilbert_small(workdir: Path, n_calib: int, n_held: int) -> Case:
    """DistilBertModel(DistilBertConfig(dim 256, 2 layers, 4 heads, hidden 1024))."""
    from transformers import DistilBertConfig, DistilBertModel

    cfg = DistilBertConfig(dim=256, n_layers=2, n_heads=4, hidden_dim=1024)
    return _text_case(DistilBertModel(cfg), ("last_hidden_state",), cfg.vocab_size, workdir, n_calib, n_held)


def vit_tiny(workdir: Path, n_calib: int, n_held: int) -> Case:
    """ViTForImageClassification(ViTConfig(hidden 192, 12 layers, 3 heads, patch 16, 224, 1000 labels))."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
                    num_labels=1000)  # fmt: skip
    norm = {"mean": 0.5, "std": 0.5}
    calib = normalise(photos("calibration", n_calib, 224), **norm)
    held = normalise(photos("held_out", n_held, 224), **norm)
    model = _wrap(ViTForImageClassification(cfg), ("logits",)).eval()
    note = fit_photo_heads(model, 224, **norm)
    return Case(model, (torch.from_numpy(held[:1]),), calib, held, "classifier", note, "image 1x3x224x224")


def _whisper_features(windows: np.ndarray) -> np.ndarray:
    """Whisper's log-mel: 80 mels, 25 ms / 10 ms, log10 clamped to max - 8, scaled (x + 4) / 4; (n, 80, 3000)."""
    mel = log_mels(windows, n_fft=400, win_length=400, hop_length=160, n_mels=80, log_offset=1e-10)[:, :3000]
    mel = mel / np.log(10.0)
    mel = np.maximum(mel, mel.max(axis=(1, 2), keepdims=True) - 8.0)
    return np.ascontiguousarray(((mel + 4.0) / 4.0).transpose(0, 2, 1), dtype=np.float32)


def whisper_tiny_encoder(workdir: Path, n_calib: int, n_held: int) -> Case:
    """WhisperEncoder at Whisper-tiny size (d_model 384, 4 layers, 6 heads, 80 mels, 30 s = 3000 frames)."""
    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                        num_mel_bins=80, max_source_positions=1500)  # fmt: skip
    calib = _whisper_features(speech_windows("calibration", n_calib, 30.0))
    held = _whisper_features(speech_windows("held_out", n_held, 30.0))
    model = _wrap(WhisperEncoder(cfg), ("last_hidden_state",))
    return Case(model, (torch.from_numpy(held[:1]),), calib, held, "audio", "espeak-ng speech, 30 s log-mel",
                "log-mel 1x80x3000")  # fmt: skip


def wav2vec2_small(workdir: Path, n_calib: int, n_held: int) -> Case:
    """Wav2Vec2Model(Wav2Vec2Config(hidden 256, 4 layers, 4 heads, intermediate 1024)) on 1 s of 16 kHz speech."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
    calib = speech_windows("calibration", n_calib, 1.0)
    held = speech_windows("held_out", n_held, 1.0)
    model = _wrap(Wav2Vec2Model(cfg), ("last_hidden_state",))
    return Case(model, (torch.from_numpy(held[:1]),), calib, held, "audio", "espeak-ng speech, 1 s raw waveform",
                "waveform 1x16000")  # fmt: skip


ARCHS: dict[str, Builder] = {
    "hf_bert_tiny": bert_tiny,
    "hf_distilbert_small": distilbert_small,
    "hf_vit_tiny": vit_tiny,
    "hf_whisper_tiny_encoder": whisper_tiny_encoder,
    "hf_wav2vec2_small": wav2vec2_small,
}
SMALL: dict[str, Builder] = {"hf_bert_tiny": bert_tiny}
