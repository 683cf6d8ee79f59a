"""Generic x86-64 / ARM64 CPU: the fallback family. Its ISA decides the precision to aim for.

x86-64: AVX2, AVX-512, VNNI (AVX512_VNNI / AVX_VNNI) and AMX make int8 fast in ONNX Runtime,
OpenVINO and XNNPACK. ARM64: NEON always, dot-product (``asimddp``), i8mm and SVE help int8.
"""

from __future__ import annotations

from devices.base import DeviceInfo, Plan, Target
from devices.probe import Probe

FAMILY = "cpu"
PROFILES = {"cpu": "any x86-64 or ARM64 CPU, no accelerator"}


def cpu_targets(threads: int | None = None) -> dict[str, tuple[Target, ...]]:
    """The CPU target for each format; every plan ends with these."""
    return {
        "onnx": (Target("onnxruntime", "cpu", {"providers": ["CPUExecutionProvider"]}, "ONNX Runtime CPU"),),
        "tflite": (Target("litert", "cpu", {"delegate": "xnnpack"}, "LiteRT XNNPACK (CPU)"),),
        "openvino": (Target("openvino", "cpu", {}, "OpenVINO CPU"),),
    }


def with_cpu_fallback(first: dict[str, tuple[Target, ...]]) -> dict[str, tuple[Target, ...]]:
    """``first`` targets per format, then the CPU target of that format."""
    base = cpu_targets()
    return {fmt: tuple(first.get(fmt, ())) + base[fmt] for fmt in base}


def isa_summary(info_isa: tuple[str, ...]) -> str:
    return ", ".join(info_isa) or "baseline"


def detect(probe: Probe) -> DeviceInfo:
    """Always matches: the machine's CPU and its ISA."""
    cpu = probe.cpu
    name = f"{cpu.arch} CPU with {cpu.headline}" + (f" ({cpu.model})" if cpu.model else "")
    evidence = ("/proc/cpuinfo",) if probe.cpuinfo else ()
    return DeviceInfo(FAMILY, "cpu", name, cpu, evidence=evidence)


def plan(profile: str = "cpu", info: DeviceInfo | None = None) -> Plan:
    cpu = info.cpu if info else None
    int8 = bool(cpu and cpu.int8_fast)
    notes = []
    if cpu:
        notes.append(f"ISA: {isa_summary(cpu.isa)}")
        if int8:
            notes.append("int8 dot-product instructions present: int8 models run ~2-4x faster than fp32")
        if cpu.has("amx_bf16") or cpu.has("avx512_bf16"):
            notes.append("bf16 available (OpenVINO inference_precision='bf16' trades accuracy for speed)")
    return Plan(
        profile=profile,
        description=PROFILES["cpu"],
        format="onnx",
        precision="int8" if int8 else "fp32",
        targets=cpu_targets(),
        notes=tuple(notes),
    )
