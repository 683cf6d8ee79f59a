"""Raspberry Pi 4 / 5: int8 TFLite on XNNPACK (or ONNX Runtime) on the Cortex-A cores; add-ons noted.

Detected from ``/proc/device-tree/model`` (``Raspberry Pi 5 Model B Rev 1.0``) and ``compatible``
(``raspberrypi,5-model-b``, ``brcm,bcm2712``; Pi 4: ``raspberrypi,4-model-b``, ``brcm,bcm2711``).
The Pi 5 (Cortex-A76) has the ARM dot-product instructions; the Pi 4 (Cortex-A72) does not.
A Hailo-8/8L AI Kit (PCI ``1e60:2864``, ``/dev/hailo0``) or a Coral is listed as an accelerator;
Hailo needs a ``.hef`` compiled by Hailo's Dataflow Compiler, which edge_sdk does not run yet.
"""

from __future__ import annotations

from devices.base import Accelerator, DeviceInfo, Plan
from devices.cpu import int8_step, isa_notes, target_isa, with_cpu_fallback
from devices.probe import Probe

FAMILY = "raspberry_pi"
BOARDS = {"raspberrypi,5-model-b": "pi5", "raspberrypi,4-model-b": "pi4", "brcm,bcm2712": "pi5", "brcm,bcm2711": "pi4"}
PROFILES = {
    "pi5": "Raspberry Pi 5 (4x Cortex-A76 with dot-product, int8 on XNNPACK)",
    "pi4": "Raspberry Pi 4 (4x Cortex-A72, int8 on XNNPACK)",
}
HAILO_PCI = {"1e60:2864": "Hailo-8/8L AI accelerator"}
#: the int8 layout (--target-isa) of each board's cores when only the profile name is known
PROFILE_ISA = {"pi5": "arm64-dotprod", "pi4": "arm64"}


def find_hailo(probe: Probe) -> list[Accelerator]:
    """A Hailo-8/8L on PCIe (Raspberry Pi AI Kit / AI HAT+, or any host)."""
    nodes = [probe.rel(p) for p in probe.glob("dev/hailo*")]
    pci = [f"{path} ({pid})" for pid, path in probe.pci_ids.items() if pid in HAILO_PCI]
    if not nodes and not pci:
        return []
    missing = ["edge_sdk has no HailoRT backend yet: compile to .hef with Hailo's Dataflow Compiler and use HailoRT"]
    if not probe.find_library("libhailort.so"):
        missing.insert(0, "HailoRT (libhailort.so): apt install hailo-all (Raspberry Pi OS)")
    return [Accelerator("hailo", HAILO_PCI["1e60:2864"], "pcie", tuple(nodes + pci), tuple(missing))]


def detect(probe: Probe) -> DeviceInfo | None:
    compat = probe.compatible_with(*BOARDS)
    model = probe.dt_model
    if compat is None and not model.startswith("Raspberry Pi"):
        return None
    kind = BOARDS.get(compat or "") or ("pi5" if "Pi 5" in model else "pi4")
    evidence = tuple(
        e for e, ok in (("/proc/device-tree/model", model), ("/proc/device-tree/compatible", compat)) if ok
    )
    return DeviceInfo(FAMILY, kind, model or PROFILES[kind], probe.cpu, (), evidence, {"board": compat or ""})


def plan(profile: str, info: DeviceInfo | None = None) -> Plan:
    targets = with_cpu_fallback({})
    cpu = info.cpu if info else None
    notes = ["an int8 TFLite on XNNPACK is usually the fastest CPU path on a Pi"]
    if cpu is not None and cpu.isa:  # the detected cores decide (a Pi 4 board and a Pi 5 differ here)
        notes += isa_notes(cpu)
    elif profile == "pi4":
        notes.append("no dot-product instructions: int8 gains are smaller than on a Pi 5")
    isa = target_isa(cpu) if cpu is not None and cpu.isa else PROFILE_ISA[profile]
    return Plan(
        profile=profile,
        description=PROFILES[profile],
        format="tflite",
        precision="int8",
        targets=targets,
        steps=int8_step(isa),
        notes=tuple(notes),
    )
