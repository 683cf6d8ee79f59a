"""The x86 side of the arm64 check: artifacts, inputs, x86 reference outputs and media, made once and cached.

    .venv/bin/python scripts/arm64/host_prep.py --work DIR

Writes under ``DIR`` (skipping what is already there):

- ``artifacts/``: EfficientNet-Lite0 (``zoo:efficientnet-lite0``) as ONNX, TFLite and OpenVINO at fp32 and
  static int8, int8 laid out for ``--target-isa arm64-dotprod`` (the Pi 5 / Orin layout; calibration on 64
  real photo crops, validated by ``convert`` against PyTorch);
- ``reference.npz``: for each artifact, ``NAME/input`` (4 real photos through the preprocessing the file
  carries, in its layout) and ``NAME/x86`` (this host's outputs for them);
- ``clip.mp4`` (3 s of real photos with a pan, 15 fps) and ``clip_x86.jsonl`` (this host's pipeline run of
  the int8 TFLite on it); ``speech.wav`` (espeak-ng speech at known times), ``speech.json`` (where),
  ``silero_vad.onnx`` (the zoo's Silero VAD file) and ``speech_x86.jsonl`` (this host's run of it on the WAV).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

MODEL = "zoo:efficientnet-lite0"
CONVERT = ["--to", "onnx,tflite,openvino", "--precision", "fp32,int8", "--calib", "photos:64"]
TARGET_ISA = "arm64-dotprod"
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
EXPECTED = 6  # 3 formats x 2 precisions


def cli() -> list[str]:
    return [sys.executable, "-m", "edge_sdk.cli.main"]


def artifacts(work: Path) -> list[Path]:
    folder = work / "artifacts"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".onnx", ".tflite", ".xml"))


def convert(work: Path) -> list[Path]:
    found = artifacts(work)
    if len(found) >= EXPECTED:
        return found
    out = work / "artifacts"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*cli(), "convert", MODEL, *CONVERT, "--target-isa", TARGET_ISA, "-o", str(out)]
    print("host:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)
    found = artifacts(work)
    if len(found) < EXPECTED:
        raise SystemExit(f"convert wrote {len(found)} artifacts, {EXPECTED} expected: {[p.name for p in found]}")
    return found


def photos() -> list[np.ndarray]:
    from converters.datasets import available_photos, named_image

    have = available_photos()
    names = [n for n in PHOTOS if n in have] or have[:4]
    imgs = []
    for n in names:
        img = named_image(n)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        imgs.append(np.ascontiguousarray(img[..., :3]))
    return imgs


def reference(work: Path, arts: list[Path]) -> Path:
    import edge_sdk

    ref = work / "reference.npz"
    if ref.is_file():
        have = set(np.load(ref).files)
        if all(f"{p.name}/x86" in have for p in arts):
            return ref
    imgs, data = photos(), {}
    for path in arts:
        model = edge_sdk.load(path)
        spec = model.metadata.preprocess_spec()
        x = np.stack([spec.apply(img) for img in imgs]).astype(model.inputs[0].dtype, copy=False)
        if x.ndim == len(model.inputs[0].shape) + 1:  # apply() keeps a batch axis of 1
            x = x[:, 0]
        data[f"{path.name}/input"] = x
        data[f"{path.name}/x86"] = np.stack([np.asarray(model(x[i : i + 1]))[0] for i in range(len(x))])
        model.close()
    np.savez(ref, **data)
    return ref


def media(work: Path, arts: list[Path]) -> None:
    clip = work / "clip.mp4"
    if not clip.is_file():
        from edge_sdk.cli.demo_media import demo_clip

        demo_clip(clip, seconds_each=1.0)
    x86 = work / "clip_x86.jsonl"
    if not x86.is_file():
        tfl = next(p for p in arts if p.suffix == ".tflite" and "int8" in p.name)
        tmp = x86.with_name(".clip_x86.partial.jsonl")
        tmp.unlink(missing_ok=True)
        subprocess.run(
            [*cli(), "run", str(tfl), "--source", str(clip), "--sink", str(tmp), "--no-status"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tmp.replace(x86)
    wav = work / "speech.wav"
    if not wav.is_file():
        from edge_sdk.audio.default_media import default_speech_wav

        src, segments = default_speech_wav()
        shutil.copyfile(src, wav)
        (work / "speech.json").write_text(json.dumps({"segments": segments}))
    silero = work / "silero_vad.onnx"
    if not silero.is_file():  # the zoo file as `edge-sdk run zoo:silero-vad` materializes it (needs onnx: host side)
        from converters import zoo
        from converters.zoo.base import default_cache_dir

        shutil.copyfile(zoo.get("silero-vad").materialize(default_cache_dir()), silero)
    vad = work / "speech_x86.jsonl"
    if not vad.is_file():
        tmp = vad.with_name(".speech_x86.partial.jsonl")
        tmp.unlink(missing_ok=True)
        subprocess.run(
            [*cli(), "run", "zoo:silero-vad", "--source", str(wav), "--sink", str(tmp), "--no-status"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tmp.replace(vad)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    arts = convert(args.work)
    reference(args.work, arts)
    media(args.work, arts)
    print(f"host: {len(arts)} artifacts, reference outputs and media ready in {args.work}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
