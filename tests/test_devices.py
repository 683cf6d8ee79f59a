"""Device detection from fixture trees (one per family, built from the real files' documented contents) and plans."""

from __future__ import annotations

from pathlib import Path

import pytest

import devices
from devices import RuntimeReport, Target
from devices.probe import parse_cpuinfo

FIXTURES = Path(__file__).parent / "fixtures" / "devices"


def detect_fixture(name: str, runtimes: RuntimeReport | None = None) -> devices.DeviceInfo:
    root = FIXTURES / name
    kwargs = {}
    if name.startswith("apple"):  # macOS has no /proc: the facts come from sysctl
        kwargs = {"system": "Darwin", "machine": "arm64", "sysctl": (root / "sysctl.txt").read_text()}
    return devices.detect(root, runtimes=runtimes, env={}, **kwargs)


# fixture, family, profile, name contains, ISA that must be seen, accelerator kinds, plan format/precision
CASES = [
    ("jetson_nano", "jetson", "jetson-nano", "Jetson Nano", {"neon"}, ["gpu"], "onnx", "fp16"),
    ("jetson_xavier_nx", "jetson", "jetson-xavier", "Xavier NX", {"neon", "fp16"}, ["gpu", "dla"], "onnx", "fp16"),
    ("jetson_agx_orin", "jetson", "jetson-orin", "AGX Orin", {"dotprod"}, ["gpu", "dla"], "onnx", "fp16"),
    ("pi4", "raspberry_pi", "pi4", "Raspberry Pi 4", {"neon"}, [], "tflite", "int8"),
    ("pi5_hailo", "raspberry_pi", "pi5", "Raspberry Pi 5", {"neon", "dotprod"}, ["hailo"], "tflite", "int8"),
    ("pi5_coral_usb", "raspberry_pi", "coral-usb", "Raspberry Pi 5", {"dotprod"}, ["edgetpu"], "tflite", "int8"),
    ("coral_usb_x86", "intel", "coral-usb", "i5-8250U", {"avx2"}, ["edgetpu"], "tflite", "int8"),
    ("coral_pcie_x86", "cpu", "coral-pcie", "Ryzen", {"avx2"}, ["edgetpu"], "tflite", "int8"),
    ("qualcomm_rb5", "qualcomm", "qualcomm-htp", "Robotics RB5", {"dotprod"}, ["npu"], "onnx", "int8"),
    ("qualcomm_android", "qualcomm", "qualcomm-htp", "SM-S911B", set(), ["npu"], "onnx", "int8"),
    ("android_pixel", "android", "android", "Pixel 8", {"sve2", "i8mm"}, ["npu", "gpu"], "tflite", "fp16"),
    ("apple_m2", "apple", "apple", "Apple M2", {"neon", "dotprod"}, ["npu", "gpu"], "onnx", "fp16"),
    ("intel_core_ultra", "intel", "intel-npu", "Core(TM) Ultra", {"avx_vnni"}, ["npu", "gpu"], "openvino", "int8"),
    ("intel_xeon_spr", "intel", "intel-cpu", "Xeon", {"avx512_vnni", "amx_int8"}, [], "openvino", "int8"),
    ("x86_avx512_amd", "cpu", "cpu", "EPYC", {"avx512f", "avx512_vnni"}, [], "onnx", "int8"),
    ("arm64_graviton3", "cpu", "cpu", "Neoverse-V1", {"neon", "dotprod", "sve", "i8mm"}, [], "onnx", "int8"),
]


@pytest.mark.parametrize(
    ("fixture", "family", "profile", "name", "isa", "accels", "fmt", "precision"), CASES, ids=[c[0] for c in CASES]
)
def test_detect_family_from_fixture(fixture, family, profile, name, isa, accels, fmt, precision):
    info = detect_fixture(fixture)
    assert (info.family, info.profile) == (family, profile)
    assert name in info.name or name in info.cpu.model
    assert isa <= set(info.cpu.isa)
    assert [a.kind for a in info.accelerators] == accels
    plan = devices.plan(info)
    assert (plan.format, plan.precision) == (fmt, precision)
    for targets in plan.targets.values():  # every format ends on the CPU, so device="auto" always lands
        assert targets[-1].device == "cpu"


def test_every_fixture_family_is_covered():
    families = {c[1] for c in CASES} | {c[2].split("-")[0] for c in CASES}
    assert {"jetson", "raspberry_pi", "coral", "qualcomm", "android", "apple", "intel", "cpu"} <= families
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(c[0] for c in CASES)


def test_jetson_details_and_trt_plan():
    info = detect_fixture("jetson_agx_orin")
    assert info.details == {"soc": "nvidia,tegra234", "l4t": "R36.3.0"}
    assert info.accelerators[0].missing == ()  # libnvinfer + libcudart found on the fixture's library path
    trt, cuda, cpu = devices.plan(info).targets_for("onnx")
    name, opts = trt.options["providers"][0]
    assert name == "TensorrtExecutionProvider" and opts["trt_fp16_enable"] and opts["trt_engine_cache_enable"]
    assert [t.label for t in (cuda, cpu)] == ["ONNX Runtime CUDA EP", "ONNX Runtime CPU"]
    xavier = detect_fixture("jetson_xavier_nx")
    assert any("libnvinfer" in m for m in xavier.accelerators[0].missing)
    assert xavier.cpu.model == "NVIDIA Carmel"


def test_coral_usb_ids_and_missing_runtime():
    flashed = detect_fixture("pi5_coral_usb").accelerators[0]
    assert flashed.name == "Coral USB Accelerator" and flashed.interface == "usb" and flashed.missing == ()
    assert "18d1:9302" in flashed.evidence[0]
    fresh = detect_fixture("coral_usb_x86").accelerators[0]
    assert "firmware not loaded" in fresh.name
    assert "libedgetpu1-std" in fresh.missing[0]
    pcie = detect_fixture("coral_pcie_x86")
    assert "/dev/apex_0" in pcie.accelerators[0].evidence
    plan = devices.plan(pcie)
    assert plan.static_shapes and any("edgetpu_compiler" in s for s in plan.steps)
    tpu = plan.targets_for("tflite")[0]
    assert tpu.options["delegate"] == "edgetpu" and tpu.options["delegate_options"] == {"device": "pci"}


def test_hailo_on_pi5_is_listed_with_what_is_missing():
    hailo = detect_fixture("pi5_hailo").accelerators[0]
    assert "/dev/hailo0" in hailo.evidence and any("1e60:2864" in e for e in hailo.evidence)
    assert any("no HailoRT backend" in m for m in hailo.missing)


def test_cpu_isa_parsing():
    x86 = detect_fixture("x86_avx512_amd").cpu
    assert x86.arch == "x86_64" and x86.cores == 2 and x86.vendor == "AuthenticAMD" and x86.int8_fast
    assert not detect_fixture("pi4").cpu.int8_fast  # Cortex-A72: no dot-product
    spr = detect_fixture("intel_xeon_spr").cpu
    assert spr.has("amx_tile", "amx_int8", "amx_bf16")
    assert parse_cpuinfo("").arch == "unknown"


def test_runtime_report_adds_evidence_and_says_what_is_missing():
    report = RuntimeReport(
        onnxruntime="1.32.0",
        ort_providers=["CPUExecutionProvider"],
        openvino="2026.4.1",
        ov_devices={"CPU": "Intel Xeon", "NPU": "Intel(R) AI Boost"},
        litert="ai_edge_litert",
        delegates={"xnnpack": "built in", "edgetpu": None},
    )
    # an Intel NPU that only OpenVINO reports (no /dev/accel in the tree) is still found
    info = devices.detect(FIXTURES / "intel_xeon_spr", runtimes=report, env={})
    assert info.profile == "intel-npu" and info.accelerators[0].name == "Intel(R) AI Boost"
    trt = devices.plan("jetson-orin").targets_for("onnx")[0]
    assert "TensorrtExecutionProvider is not in this onnxruntime build; pip install onnxruntime-gpu" in report.missing(
        trt
    )
    assert report.missing(devices.plan("cpu").targets_for("onnx")[0]) is None
    assert report.missing(Target("openvino", "NPU")) is None
    assert "OpenVINO device GPU is not available" in report.missing(Target("openvino", "GPU"))
    assert "libedgetpu1-std" in report.missing(devices.plan("coral-usb").targets_for("tflite")[0])
    assert 'pip install "edge-sdk[openvino]"' in RuntimeReport().missing(Target("openvino"))


def test_named_profiles_and_unknown_profile():
    names = devices.profiles()
    assert {"cpu", "jetson-nano", "jetson-orin", "pi4", "pi5", "coral-usb", "intel-npu", "apple"} <= set(names)
    for name in names:
        plan = devices.plan(name)
        assert plan.profile == name and set(plan.targets) == {"onnx", "tflite", "openvino"}
        assert plan.to_dict()["targets"]["onnx"][-1]["label"] == "ONNX Runtime CPU"
    with pytest.raises(devices.UnknownProfileError, match="unknown device profile 'tpu9'; profiles: jetson-nano"):
        devices.plan("tpu9")


def test_this_machine():
    """The real result here; the CI box is an x86-64 with AVX-512 + VNNI (skips elsewhere)."""
    info = devices.detect("/")
    assert info.cpu.arch in ("x86_64", "aarch64", "arm64")
    if info.cpu.arch == "x86_64" and not info.cpu.has("avx512f", "avx512_vnni"):
        pytest.skip("this machine has no AVX-512 VNNI")
    if info.cpu.arch == "x86_64":
        assert info.cpu.int8_fast and devices.plan(info).precision == "int8"


def test_devices_package_is_light():
    import subprocess
    import sys

    code = "import devices; devices.current(); import sys; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not {m.split(".")[0] for m in out} & {"onnxruntime", "openvino", "tensorflow", "torch", "numpy", "cv2"}
