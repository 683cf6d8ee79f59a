"""Generic x86-64 / ARM64 CPU: the fallback family. Its ISA decides the precision to aim for.

x86-64: AVX2, AVX-512, VNNI (AVX512_VNNI / AVX_VNNI) and AMX make int8 fast in ONNX Runtime,
OpenVINO and XNNPACK. ARM64: NEON always, dot-product (``asimddp``), i8mm and SVE help int8.
"""

from __future__ import annotations

from devices.base import CpuInfo, DeviceInfo, Plan, Target
from devices.probe import Probe, arch_family

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


def target_isa(cpu: CpuInfo | None) -> str | None:
    """The ``--target-isa`` name (``converters/quantizers/isa.py``) of this CPU's int8 layout, or None.

    The same rule the converter applies to the converting machine: ARM i8mm > dot-product > plain
    NEON; x86 VNNI/AMX > AVX-512 > AVX2. None for 32-bit ARM, unknown CPUs and an emulated CPU whose
    features could not be read.
    """
    if cpu is None or (cpu.emulated and not cpu.isa):
        return None
    family = arch_family(cpu.arch)
    if family == "arm" and cpu.arch != "armv7l":
        return "arm64-i8mm" if cpu.has("i8mm") else "arm64-dotprod" if cpu.has("dotprod") else "arm64"
    if family == "x86":
        if any(cpu.has(f) for f in ("avx512_vnni", "avx_vnni", "amx_int8")):
            return "x86-vnni"
        return "x86-avx512" if cpu.has("avx512f") else "x86-avx2"
    return None


def int8_step(isa: str | None) -> tuple[str, ...]:
    """The conversion step that lays int8 out for ``isa`` (empty when unknown)."""
    if not isa:
        return ()
    return (f"convert int8 for this CPU: edge-sdk convert MODEL --precision int8 --target-isa {isa} (docs/int8.md)",)


def isa_notes(cpu: CpuInfo | None) -> list[str]:
    """What the CPU's ISA means for int8 / bf16 (ARM dot-product, i8mm, SVE; x86 VNNI, AMX)."""
    if cpu is None:
        return []
    notes = [f"ISA: {isa_summary(cpu.isa)}"]
    if cpu.emulated:
        notes.append(
            "emulated CPU (user-mode emulation such as qemu-user): /proc/cpuinfo is the host's, the ISA above is "
            "the emulator's (AT_HWCAP) and timings mean nothing; for a board's plan use --root with its files "
            "or EDGE_SDK_DEVICE_ROOT"
        )
    if arch_family(cpu.arch) == "arm" and cpu.has("neon"):
        if cpu.has("dotprod"):
            notes.append("ARM dot-product (asimddp): SDOT/UDOT int8 kernels in XNNPACK and ONNX Runtime")
        else:
            notes.append(
                "no ARM dot-product (asimddp; Cortex-A72/A57/A53 class): int8 runs on widening multiplies, "
                "so its gain over fp32 is smaller; measure with edge-sdk bench"
            )
        if cpu.has("i8mm"):
            notes.append("i8mm: SMMLA int8 matrix-multiply kernels (ONNX Runtime MLAS, XNNPACK)")
    elif cpu.int8_fast:
        notes.append("int8 dot-product instructions present: int8 models run ~2-4x faster than fp32")
    if cpu.has("amx_bf16") or cpu.has("avx512_bf16"):
        notes.append("bf16 available (OpenVINO inference_precision='bf16' trades accuracy for speed)")
    return notes


def detect(probe: Probe) -> DeviceInfo:
    """Always matches: the machine's CPU and its ISA."""
    cpu = probe.cpu
    name = f"{cpu.arch} CPU with {cpu.headline}" + (f" ({cpu.model})" if cpu.model else "")
    evidence: tuple[str, ...] = ("/proc/cpuinfo",) if probe.cpuinfo else ()
    details = {}
    if cpu.emulated:
        evidence = ("/proc/cpuinfo (the host's)",) + (("/proc/self/auxv (AT_HWCAP)",) if cpu.isa else ())
        details["emulated"] = probe.emulated
    return DeviceInfo(FAMILY, "cpu", name, cpu, evidence=evidence, details=details)


def plan(profile: str = "cpu", info: DeviceInfo | None = None) -> Plan:
    cpu = info.cpu if info else None
    int8 = bool(cpu and cpu.int8_fast)
    return Plan(
        profile=profile,
        description=PROFILES["cpu"],
        format="onnx",
        precision="int8" if int8 else "fp32",
        targets=cpu_targets(),
        steps=int8_step(target_isa(cpu)) if int8 else (),
        notes=tuple(isa_notes(cpu)),
    )
