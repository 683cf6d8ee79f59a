"""Intel CPUs, integrated GPUs and NPUs through OpenVINO.

Detected from ``/proc/cpuinfo`` (``GenuineIntel``), ``/dev/dri/renderD*`` whose PCI vendor is
``0x8086`` (iGPU), ``/dev/accel/accel*`` with vendor ``0x8086`` (the NPU, ``intel_vpu`` driver),
and, when asked, OpenVINO's ``available_devices``. The NPU compiles static shapes only.
"""

from __future__ import annotations

from devices.base import Accelerator, DeviceInfo, Plan, Target
from devices.cpu import with_cpu_fallback
from devices.probe import Probe

FAMILY = "intel"
INTEL_VENDOR = "8086"
PROFILES = {
    "intel-npu": "Intel Core Ultra NPU through OpenVINO (int8/fp16, static shapes)",
    "intel-gpu": "Intel integrated / Arc GPU through OpenVINO (fp16)",
    "intel-cpu": "Intel CPU through OpenVINO / ONNX Runtime (int8 with VNNI/AMX)",
}


def detect(probe: Probe) -> DeviceInfo | None:
    cpu = probe.cpu
    ov = probe.runtimes.ov_devices if probe.runtimes else {}
    if cpu.vendor != "GenuineIntel" and not any(k.startswith(("NPU", "GPU")) for k in ov):
        return None
    accs = []
    npu_nodes = [node for node, vendor in probe.accel_vendors().items() if vendor == INTEL_VENDOR]
    if npu_nodes or "NPU" in ov:
        missing = (
            () if "NPU" in ov or probe.runtimes is None else ("OpenVINO does not list NPU: install the NPU driver",)
        )
        evidence = tuple(npu_nodes) + (("OpenVINO available_devices: NPU",) if "NPU" in ov else ())
        accs.append(Accelerator("npu", ov.get("NPU", "Intel NPU"), "soc", evidence, missing))
    gpu_nodes = [node for node, vendor in probe.drm_render_vendors().items() if vendor == INTEL_VENDOR]
    ov_gpus = [k for k in ov if k.startswith("GPU")]
    if gpu_nodes or ov_gpus:
        missing = () if ov_gpus or probe.runtimes is None else ("OpenVINO does not list GPU: install intel-opencl-icd",)
        evidence = tuple(gpu_nodes) + tuple(f"OpenVINO available_devices: {g}" for g in ov_gpus)
        accs.append(
            Accelerator("gpu", ov.get(ov_gpus[0], "Intel GPU") if ov_gpus else "Intel GPU", "soc", evidence, missing)
        )
    profile = "intel-npu" if any(a.kind == "npu" for a in accs) else "intel-gpu" if accs else "intel-cpu"
    name = cpu.model or "Intel CPU"
    return DeviceInfo(FAMILY, profile, name, cpu, tuple(accs), ("/proc/cpuinfo (GenuineIntel)",))


def plan(profile: str, info: DeviceInfo | None = None) -> Plan:
    npu = Target("openvino", "NPU", {}, "OpenVINO NPU")
    gpu = Target("openvino", "GPU", {"inference_precision": "f16"}, "OpenVINO GPU (fp16)")
    first: tuple[Target, ...] = {"intel-npu": (npu, gpu), "intel-gpu": (gpu,)}.get(profile, ())
    int8 = profile == "intel-npu" or bool(info and info.cpu.int8_fast)
    return Plan(
        profile=profile,
        description=PROFILES[profile],
        format="openvino",
        precision="int8" if int8 else ("fp16" if profile == "intel-gpu" else "fp32"),
        static_shapes=profile == "intel-npu",
        targets=with_cpu_fallback({"openvino": first, "onnx": first}),
        steps=("fix dynamic dims: edge_sdk.reshape(...)",) if profile == "intel-npu" else (),
        notes=("OpenVINO's compiled-model cache makes the second load fast (on by default)",),
    )
