"""Apple silicon Macs: ONNX Runtime's Core ML EP (Neural Engine + GPU), else the CPU.

Detected from ``system == "Darwin"`` with an ``arm64`` machine, ``sysctl``'s
``machdep.cpu.brand_string`` (``Apple M2``) and ``hw.optional.arm.FEAT_*`` keys, and
``/System/Library/CoreServices/SystemVersion.plist`` under the probe's root.
"""

from __future__ import annotations

from devices.base import Accelerator, DeviceInfo, Plan, Target
from devices.cpu import with_cpu_fallback
from devices.probe import Probe

FAMILY = "apple"
PROFILES = {"apple": "Apple silicon Mac: Core ML (Neural Engine, GPU) through ONNX Runtime"}


def detect(probe: Probe) -> DeviceInfo | None:
    brand = probe.sysctl.get("machdep.cpu.brand_string", "")
    if probe.system != "Darwin" or not (brand.startswith("Apple") or probe.machine == "arm64"):
        return None
    evidence = ["sysctl machdep.cpu.brand_string"] if brand else ["platform: Darwin arm64"]
    if probe.exists("System/Library/CoreServices/SystemVersion.plist"):
        evidence.append("/System/Library/CoreServices/SystemVersion.plist")
    accs = (
        Accelerator("npu", "Apple Neural Engine", "soc", ("Apple silicon",)),
        Accelerator("gpu", "Apple GPU (Metal)", "soc", ("Apple silicon",)),
    )
    return DeviceInfo(FAMILY, "apple", f"Mac ({brand or 'Apple silicon'})", probe.cpu, accs, tuple(evidence))


def plan(profile: str, info: DeviceInfo | None = None) -> Plan:
    coreml = Target(
        "onnxruntime",
        "coreml",
        {
            "providers": [
                ("CoreMLExecutionProvider", {"ModelFormat": "MLProgram", "MLComputeUnits": "ALL"}),
                "CPUExecutionProvider",
            ]
        },
        "ONNX Runtime Core ML EP (ANE/GPU/CPU)",
    )
    return Plan(
        profile=profile,
        description=PROFILES[profile],
        format="onnx",
        precision="fp16",
        targets=with_cpu_fallback({"onnx": (coreml,)}),
        notes=("Core ML compiles the model on first load; static shapes let more of it run on the Neural Engine",),
    )
