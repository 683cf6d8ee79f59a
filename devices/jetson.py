"""NVIDIA Jetson (Nano, Xavier, Orin): ONNX Runtime with the TensorRT EP in fp16, then CUDA, then CPU.

Detected from ``/proc/device-tree/compatible`` (``nvidia,tegra210`` = Nano, ``nvidia,tegra194`` =
Xavier, ``nvidia,tegra234`` = Orin), ``/proc/device-tree/model`` and ``/etc/nv_tegra_release``
(the L4T release line, e.g. ``# R36 (release), REVISION: 3.0, ...``); TensorRT is ``libnvinfer``.
"""

from __future__ import annotations

import re

from devices.base import Accelerator, DeviceInfo, Plan, Target
from devices.cpu import isa_notes, target_isa, with_cpu_fallback
from devices.probe import Probe

FAMILY = "jetson"
SOCS = {"nvidia,tegra210": "nano", "nvidia,tegra194": "xavier", "nvidia,tegra234": "orin"}
PROFILES = {
    "jetson-nano": "Jetson Nano (Maxwell GPU, fp16)",
    "jetson-xavier": "Jetson Xavier NX / AGX (Volta GPU + 2 DLA, fp16/int8)",
    "jetson-orin": "Jetson Orin Nano / NX / AGX (Ampere GPU, DLA on NX/AGX, fp16/int8)",
}


def detect(probe: Probe) -> DeviceInfo | None:
    soc = probe.compatible_with(*SOCS)
    release = probe.read("etc/nv_tegra_release") or ""
    if soc is None and not release and "jetson" not in probe.dt_model.lower():
        return None
    kind = SOCS.get(soc or "", "")
    if not kind:
        model = probe.dt_model.lower()
        kind = next((k for k in ("orin", "xavier", "nano") if k in model), "orin")
    details = {"soc": soc or "unknown"}
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
    if m:
        details["l4t"] = f"R{m.group(1)}.{m.group(2)}"
    evidence = [e for e, ok in (("/proc/device-tree/compatible", soc), ("/etc/nv_tegra_release", release)) if ok]
    trt = probe.find_library("libnvinfer.so")
    cuda = probe.find_library("libcudart.so")
    missing = []
    if not trt:
        missing.append("TensorRT (libnvinfer): install JetPack's tensorrt package")
    if not cuda:
        missing.append("CUDA runtime (libcudart): install JetPack's cuda-runtime")
    gpu = Accelerator("gpu", f"NVIDIA {kind.title()} integrated GPU", "soc", tuple(evidence), tuple(missing))
    accs = [gpu]
    if kind in ("xavier", "orin") and "nano" not in probe.dt_model.lower():
        accs.append(
            Accelerator("dla", "NVIDIA Deep Learning Accelerator (DLA)", "soc", tuple(evidence), tuple(missing[:1]))
        )
    name = probe.dt_model or f"NVIDIA Jetson {kind.title()}"
    return DeviceInfo(FAMILY, f"jetson-{kind}", name, probe.cpu, tuple(accs), tuple(evidence), details)


def trt_options(fp16: bool = True, dla: bool = False) -> dict[str, object]:
    """TensorRT EP options; the engine cache path is filled in by the backend's per-user cache."""
    opts: dict[str, object] = {
        "trt_fp16_enable": fp16,
        "trt_engine_cache_enable": True,
        "trt_timing_cache_enable": True,
    }
    if dla:
        opts["trt_dla_enable"] = True
    return opts


def plan(profile: str, info: DeviceInfo | None = None) -> Plan:
    trt = Target(
        "onnxruntime",
        "tensorrt",
        {"providers": [("TensorrtExecutionProvider", trt_options()), "CUDAExecutionProvider", "CPUExecutionProvider"]},
        "ONNX Runtime TensorRT EP fp16 (engine cache on)",
    )
    cuda = Target(
        "onnxruntime", "cuda", {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}, "ONNX Runtime CUDA EP"
    )
    notes = ["the first load builds the TensorRT engine (minutes on a Nano); later loads reuse the engine cache"]
    if profile != "jetson-nano":
        notes.append("int8 needs a calibrated QDQ model; trt_dla_enable=True offloads to the DLA (fewer ops)")
    cpu = info.cpu if info else None
    if cpu is not None and cpu.isa:  # the CPU fallback's int8 layout (Orin: Cortex-A78AE, dot-product)
        isa = target_isa(cpu)
        notes += [f"CPU fallback {n}" if n.startswith("ISA") else n for n in isa_notes(cpu)]
        if isa:
            notes.append(f"int8 for the CPU fallback: edge-sdk convert MODEL --precision int8 --target-isa {isa}")
    return Plan(
        profile=profile,
        description=PROFILES[profile],
        format="onnx",
        precision="fp16",
        targets=with_cpu_fallback({"onnx": (trt, cuda)}),
        notes=tuple(notes),
    )
