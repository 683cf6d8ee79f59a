"""Google Coral Edge TPU (USB Accelerator, M.2 / mini-PCIe, Dev Board): fully int8 TFLite, compiled.

The USB Accelerator enumerates as ``1a6e:089a`` (Global Unichip) until the runtime loads its
firmware, then as ``18d1:9302`` (Google); the PCIe/M.2 card is PCI ``1ac1:089a`` and shows up
as ``/dev/apex_0`` once the ``gasket``/``apex`` driver is loaded. The runtime is ``libedgetpu.so.1``.
Only a fully int8 TFLite model passed through ``edgetpu_compiler`` runs on the TPU; ops the
compiler cannot map stay on the CPU (the compiler's log lists them).
"""

from __future__ import annotations

from devices.base import Accelerator, DeviceInfo, Plan, Target
from devices.cpu import with_cpu_fallback
from devices.probe import Probe

FAMILY = "coral"
USB_IDS = {"1a6e:089a": "Coral USB Accelerator (firmware not loaded yet)", "18d1:9302": "Coral USB Accelerator"}
PCI_IDS = {"1ac1:089a": "Coral M.2 / PCIe Accelerator"}
PROFILES = {
    "coral-usb": "Coral USB Accelerator on any host (Edge TPU, int8 TFLite)",
    "coral-pcie": "Coral M.2 / mini-PCIe card or Dev Board (Edge TPU, int8 TFLite)",
}
RUNTIME_HINT = "Edge TPU runtime libedgetpu.so.1: apt install libedgetpu1-std (Coral's apt repository)"
DRIVER_HINT = "PCIe driver (/dev/apex_0 missing): apt install gasket-dkms, then reboot"


def find(probe: Probe) -> list[Accelerator]:
    """Every Edge TPU attached to this machine, as an add-on accelerator."""
    runtime = probe.find_library("libedgetpu.so")
    found = []
    for usb_id, name in USB_IDS.items():
        if usb_id in probe.usb_ids:
            missing = () if runtime else (RUNTIME_HINT,)
            found.append(Accelerator("edgetpu", name, "usb", (f"{probe.usb_ids[usb_id]} ({usb_id})",), missing))
    apex = probe.glob("dev/apex_*")
    pci = [(pid, path) for pid, path in probe.pci_ids.items() if pid in PCI_IDS]
    if apex or pci:
        evidence = tuple(probe.rel(a) for a in apex) + tuple(f"{path} ({pid})" for pid, path in pci)
        missing = tuple(h for h, ok in ((RUNTIME_HINT, runtime), (DRIVER_HINT, apex)) if not ok)
        found.append(Accelerator("edgetpu", PCI_IDS["1ac1:089a"], "pcie", evidence, missing))
    return found


def detect(probe: Probe) -> DeviceInfo | None:
    """The Coral Dev Board (NXP i.MX 8M with an on-board Edge TPU)."""
    compat = probe.compatible_with("fsl,imx8mq-phanbell")
    if compat is None and "phanbell" not in probe.dt_model.lower():
        return None
    accs = tuple(find(probe)) or (Accelerator("edgetpu", "Coral Dev Board Edge TPU", "pcie", (compat or "",)),)
    return DeviceInfo(FAMILY, "coral-pcie", "Coral Dev Board", probe.cpu, accs, ("/proc/device-tree/compatible",))


def edgetpu_target(interface: str = "usb") -> Target:
    return Target(
        "litert",
        "edgetpu",
        {"delegate": "edgetpu", "delegate_options": {"device": interface if interface == "usb" else "pci"}},
        f"LiteRT + Edge TPU delegate ({interface})",
    )


def plan(profile: str, info: DeviceInfo | None = None) -> Plan:
    interface = "usb" if profile == "coral-usb" else "pci"
    return Plan(
        profile=profile,
        description=PROFILES[profile],
        format="tflite",
        precision="int8",
        static_shapes=True,
        targets=with_cpu_fallback({"tflite": (edgetpu_target(interface),)}),
        steps=(
            "quantize fully to int8 (inputs and outputs int8/uint8) with a calibration set",
            "edgetpu_compiler model_int8.tflite  ->  model_int8_edgetpu.tflite",
            "load model_int8_edgetpu.tflite; ops the compiler left out run on the CPU",
        ),
        notes=("ONNX and OpenVINO models cannot use the Edge TPU; they run on the CPU",),
    )
