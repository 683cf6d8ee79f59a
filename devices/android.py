"""Android phones and tablets (Termux, Chaquopy): LiteRT's GPU delegate, ORT's NNAPI EP, else XNNPACK.

Detected from ``/system/build.prop`` (``ro.build.version.sdk``, ``ro.product.model``) and the
NNAPI runtime ``/system/lib64/libneuralnetworks.so``. NNAPI is deprecated from Android 15 (API 35);
there the GPU delegate or the vendor's own delegate is the way to an accelerator.
"""

from __future__ import annotations

from devices.base import Accelerator, DeviceInfo, Plan, Target
from devices.cpu import with_cpu_fallback
from devices.probe import Probe

FAMILY = "android"
PROFILES = {"android": "Android device: GPU delegate (fp16) or NNAPI, else XNNPACK"}


def detect(probe: Probe) -> DeviceInfo | None:
    props = probe.build_prop
    if "ro.build.version.sdk" not in props and not probe.exists("system/bin/app_process64"):
        return None
    sdk = props.get("ro.build.version.sdk", "")
    accs = []
    nnapi = probe.exists("system/lib64/libneuralnetworks.so")
    if nnapi:
        missing = ("NNAPI is deprecated from Android 15 (API 35)",) if sdk.isdigit() and int(sdk) >= 35 else ()
        accs.append(
            Accelerator("npu", "NNAPI (vendor driver)", "soc", ("/system/lib64/libneuralnetworks.so",), missing)
        )
    gpu_lib = probe.find_library("libOpenCL.so") or probe.find_library("libGLESv3.so")
    if gpu_lib:
        accs.append(Accelerator("gpu", "GPU (OpenCL / OpenGL ES)", "soc", (gpu_lib,)))
    name = " ".join(x for x in (props.get("ro.product.manufacturer"), props.get("ro.product.model")) if x) or "Android"
    details = {"sdk": sdk, "platform": props.get("ro.board.platform", "")}
    return DeviceInfo(FAMILY, "android", name, probe.cpu, tuple(accs), ("/system/build.prop",), details)


def plan(profile: str, info: DeviceInfo | None = None) -> Plan:
    gpu = Target("litert", "gpu", {"delegate": "gpu"}, "LiteRT GPU delegate (fp16)")
    nnapi = Target(
        "onnxruntime",
        "nnapi",
        {"providers": ["NnapiExecutionProvider", "CPUExecutionProvider"]},
        "ONNX Runtime NNAPI EP",
    )
    return Plan(
        profile=profile,
        description=PROFILES[profile],
        format="tflite",
        precision="fp16",
        targets=with_cpu_fallback({"tflite": (gpu,), "onnx": (nnapi,)}),
        notes=("int8 models run best on XNNPACK or the vendor NPU delegate; fp16 on the GPU delegate",),
    )
