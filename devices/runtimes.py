"""What the installed runtimes say they can use: ORT execution providers, OpenVINO devices, TFLite delegates.

:meth:`RuntimeReport.from_system` imports each runtime that is installed (and only then), so
call it from ``edge-sdk devices`` or a test, not on the load path. Tests build a report by
hand to stand in for hardware that is not here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from typing import Any

from devices.base import Target

#: TFLite delegate name -> the shared library LiteRT loads for it
DELEGATE_LIBRARIES = {
    "edgetpu": "libedgetpu.so",
    "gpu": "libtensorflowlite_gpu_delegate.so",
    "qnn": "libQnnTFLiteDelegate.so",
    "hexagon": "libhexagon_interface.so",
}
#: how to get a missing piece (provider, device, delegate)
INSTALL_HINTS = {
    "TensorrtExecutionProvider": "pip install onnxruntime-gpu on x86, or NVIDIA's onnxruntime-gpu wheel for JetPack, "
    "plus TensorRT (part of JetPack)",
    "CUDAExecutionProvider": "pip install onnxruntime-gpu (Jetson: the JetPack onnxruntime-gpu wheel)",
    "QNNExecutionProvider": "pip install onnxruntime-qnn (Windows on Snapdragon) or build ORT with the QNN SDK",
    "OpenVINOExecutionProvider": "pip install onnxruntime-openvino",
    "CoreMLExecutionProvider": "pip install onnxruntime (the macOS wheel includes it)",
    "NnapiExecutionProvider": "use the onnxruntime-android package",
    "NPU": "install the Intel NPU driver (linux-npu-driver) and openvino>=2024",
    "GPU": "install the Intel compute runtime (intel-opencl-icd / level-zero)",
    "edgetpu": "install the Edge TPU runtime: apt install libedgetpu1-std (Coral's apt repository)",
    "gpu": "build LiteRT's GPU delegate (libtensorflowlite_gpu_delegate.so) for this device",
    "qnn": "install the Qualcomm AI Engine Direct (QAIRT) SDK, which ships libQnnTFLiteDelegate.so",
    "hexagon": "install Qualcomm's Hexagon delegate library",
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class RuntimeReport:
    """One snapshot of the runtimes. ``None`` versions mean "not installed"."""

    onnxruntime: str | None = None
    ort_providers: list[str] = field(default_factory=list)
    openvino: str | None = None
    ov_devices: dict[str, str] = field(default_factory=dict)  # "CPU" -> full device name
    litert: str | None = None  # the interpreter module that imports
    delegates: dict[str, str | None] = field(default_factory=dict)  # name -> library path, None if absent
    errors: dict[str, str] = field(default_factory=dict)  # runtime -> why it could not be asked

    @classmethod
    def from_system(cls, probe: Any = None) -> RuntimeReport:
        """Ask every installed runtime what it can use (imports them; a broken one is noted, not raised)."""
        report = cls()
        if _installed("onnxruntime"):
            try:
                import onnxruntime as ort

                report.onnxruntime = ort.__version__
                report.ort_providers = list(ort.get_available_providers())
            except Exception as e:  # a broken install must not stop the report
                report.errors["onnxruntime"] = f"{type(e).__name__}: {e}"
        if _installed("openvino"):
            try:
                import openvino as ov

                core = ov.Core()
                report.openvino = ov.get_version().split("-")[0]
                for dev in core.available_devices:
                    try:
                        report.ov_devices[dev] = str(core.get_property(dev, "FULL_DEVICE_NAME"))
                    except Exception:
                        report.ov_devices[dev] = dev
            except Exception as e:
                report.errors["openvino"] = f"{type(e).__name__}: {e}"
        for module in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
            if _installed(module):
                report.litert = module
                break
        if probe is None:
            from devices.probe import Probe

            probe = Probe()
        report.delegates = {
            "xnnpack": "built in" if report.litert else None,
            **{name: probe.find_library(lib) for name, lib in DELEGATE_LIBRARIES.items()},
        }
        return report

    def missing(self, target: Target) -> str | None:
        """Why ``target`` cannot run with these runtimes (what is missing and how to get it), or None."""
        if target.backend == "onnxruntime":
            if self.onnxruntime is None:
                return 'onnxruntime is not installed; pip install "edge-sdk[onnx]"'
            for entry in target.options.get("providers", ["CPUExecutionProvider"]):
                name = entry[0] if isinstance(entry, (tuple, list)) else entry
                if name not in self.ort_providers:
                    return (
                        f"{name} is not in this onnxruntime build; {INSTALL_HINTS.get(name, 'install a build with it')}"
                    )
            return None
        if target.backend == "openvino":
            if self.openvino is None:
                return 'openvino is not installed; pip install "edge-sdk[openvino]"'
            dev = "CPU" if target.device == "cpu" else target.device.split(":")[0].split(".")[0]
            if dev not in ("AUTO", "HETERO", "MULTI") and dev not in self.ov_devices:
                return f"OpenVINO device {dev} is not available; {INSTALL_HINTS.get(dev, 'install its driver')}"
            return None
        if target.backend == "litert":
            if self.litert is None:
                return 'no LiteRT interpreter is installed; pip install "edge-sdk[tflite]"'
            delegate = str(target.options.get("delegate", "xnnpack"))
            if delegate not in ("xnnpack", "none") and not self.delegates.get(delegate):
                lib = DELEGATE_LIBRARIES.get(delegate, delegate)
                return f"TFLite delegate {delegate} ({lib}) not found; {INSTALL_HINTS.get(delegate, '')}".rstrip("; ")
            return None
        return f"unknown backend {target.backend}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
