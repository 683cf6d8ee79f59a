"""Qualcomm Snapdragon / QCS boards: the Hexagon NPU (HTP) through ONNX Runtime's QNN EP or LiteRT's QNN delegate.

Detected from device-tree ``compatible`` (``qcom,qcs6490``, ``qcom,qrb5165``, ``qcom,x1e80100``, ...),
Android's ``ro.soc.manufacturer=QTI`` / ``ro.board.platform``, the DSP device nodes
(``/dev/fastrpc-cdsp``, ``/dev/adsprpc-smd``) and the QNN libraries (``libQnnHtp.so``,
``libQnnTFLiteDelegate.so``). The HTP wants an int8 (QDQ) model with static shapes.
"""

from __future__ import annotations

from devices.base import Accelerator, DeviceInfo, Plan, Target
from devices.cpu import with_cpu_fallback
from devices.probe import Probe

FAMILY = "qualcomm"
PROFILES = {"qualcomm-htp": "Qualcomm Snapdragon / QCS with the Hexagon HTP NPU (int8, static shapes)"}
DSP_NODES = ("dev/fastrpc-cdsp", "dev/adsprpc-smd", "dev/fastrpc-adsp")
QNN_HINT = "Qualcomm AI Engine Direct (QAIRT) SDK: libQnnHtp.so on the library path"


def detect(probe: Probe) -> DeviceInfo | None:
    compat = probe.compatible_with("qcom,")
    props = probe.build_prop
    android_qti = props.get("ro.soc.manufacturer", "").upper() in ("QTI", "QUALCOMM")
    if compat is None and not android_qti:
        return None
    evidence = [f"/proc/device-tree/compatible ({compat})"] if compat else ["/system/build.prop (ro.soc.manufacturer)"]
    dsp = [f"/{n}" for n in DSP_NODES if probe.exists(n)]
    htp = probe.find_library("libQnnHtp.so")
    missing = [] if htp else [QNN_HINT]
    if not dsp:
        missing.append("no DSP device node (/dev/fastrpc-cdsp): the board's FastRPC driver is not loaded")
    soc = props.get("ro.soc.model") or props.get("ro.board.platform") or _soc_of(probe)
    name = probe.dt_model or props.get("ro.product.model") or f"Qualcomm {soc}"
    acc = Accelerator("npu", f"Hexagon HTP ({soc})", "soc", tuple(dsp + ([htp] if htp else [])), tuple(missing))
    return DeviceInfo(FAMILY, "qualcomm-htp", name, probe.cpu, (acc,), tuple(evidence), {"soc": soc})


def plan(profile: str, info: DeviceInfo | None = None) -> Plan:
    qnn_ep = Target(
        "onnxruntime",
        "htp",
        {
            "providers": [
                ("QNNExecutionProvider", {"backend_path": "libQnnHtp.so", "htp_performance_mode": "burst"}),
                "CPUExecutionProvider",
            ]
        },
        "ONNX Runtime QNN EP (HTP)",
    )
    qnn_delegate = Target(
        "litert",
        "htp",
        {"delegate": "libQnnTFLiteDelegate.so", "delegate_options": {"backend_type": "htp"}},
        "LiteRT QNN delegate (HTP)",
    )
    return Plan(
        profile=profile,
        description=PROFILES[profile],
        format="onnx",
        precision="int8",
        static_shapes=True,
        targets=with_cpu_fallback({"onnx": (qnn_ep,), "tflite": (qnn_delegate,)}),
        steps=("quantize to int8 QDQ (ONNX) or full int8 (TFLite)", "fix dynamic dims: edge_sdk.reshape(...)"),
        notes=("ops the HTP cannot run are placed on the CPU by ORT; `edge-sdk info MODEL --device htp` lists them",),
    )


def _soc_of(probe: Probe) -> str:
    """The SoC from ``compatible``: its last ``qcom,`` entry (the most generic one, e.g. ``sm8250``)."""
    qcom = [c for c in probe.dt_compatible if c.startswith("qcom,")]
    return qcom[-1].split(",", 1)[1] if qcom else "Snapdragon"
