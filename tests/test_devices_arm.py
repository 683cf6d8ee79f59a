"""ARM detection from board fixture roots (Pi 4, Pi 5, Jetson Orin Nano) and under user-mode emulation.

The fixtures in ``tests/fixtures/arm_boards`` hold each board's ``/proc/cpuinfo`` and device-tree
``model`` / ``compatible`` as the boards write them (NUL-terminated device-tree strings; on the Pis
``/proc/device-tree`` is a link to ``/sys/firmware/devicetree/base``, the Jetson has only the latter).
``qemu_user_aarch64`` is what an arm64 chroot under qemu-user sees: the x86 host's ``/proc/cpuinfo``
and the emulated process's ``/proc/self/auxv``.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

import devices
from devices.cpu import target_isa
from devices.probe import AT_HWCAP, AT_HWCAP2, EMULATED, Probe, arch_family, normalise_arch

BOARDS = Path(__file__).parent / "fixtures" / "arm_boards"

# fixture, profile, name, core model, cores, ISA present, ISA absent, --target-isa
CASES = [
    ("pi4_bookworm", "pi4", "Raspberry Pi 4 Model B Rev 1.4", "Cortex-A72", 4, {"neon"}, {"dotprod", "fp16"}, "arm64"),
    (
        "pi5_bookworm",
        "pi5",
        "Raspberry Pi 5 Model B Rev 1.0",
        "Cortex-A76",
        4,
        {"neon", "dotprod", "fp16"},
        {"i8mm", "sve", "bf16"},
        "arm64-dotprod",
    ),
    (
        "jetson_orin_nano",
        "jetson-orin",
        "NVIDIA Jetson Orin Nano Developer Kit",
        "Cortex-A78AE",
        6,
        {"neon", "dotprod", "fp16"},
        {"i8mm", "sve", "bf16"},
        "arm64-dotprod",
    ),
]


def board(name: str, **kwargs) -> devices.DeviceInfo:
    return devices.detect(BOARDS / name, env={}, **kwargs)


@pytest.mark.parametrize(("fixture", "profile", "name", "core", "cores", "isa", "absent", "tisa"), CASES)
def test_board_from_device_tree_and_cpuinfo(fixture, profile, name, core, cores, isa, absent, tisa):
    info = board(fixture)
    assert info.profile == profile and info.name == name
    cpu = info.cpu
    assert cpu.arch == "aarch64" and cpu.vendor == "ARM" and not cpu.emulated
    assert core in cpu.model and cpu.cores == cores
    assert isa <= set(cpu.isa) and not absent & set(cpu.isa)
    assert cpu.int8_fast == ("dotprod" in isa)
    assert target_isa(cpu) == tisa
    assert "/proc/device-tree/compatible" in info.evidence or "/etc/nv_tegra_release" in info.evidence


def test_device_tree_under_sys_firmware_only():
    """The Jetson fixture has no /proc/device-tree: the model comes from /sys/firmware/devicetree/base."""
    root = BOARDS / "jetson_orin_nano"
    assert not (root / "proc" / "device-tree").exists()
    probe = Probe(root)
    assert probe.dt_model == "NVIDIA Jetson Orin Nano Developer Kit"
    assert probe.dt_compatible[-1] == "nvidia,tegra234"
    assert board("jetson_orin_nano").details == {"soc": "nvidia,tegra234", "l4t": "R36.3.0"}


def test_plans_follow_the_isa():
    pi4, pi5, orin = (devices.plan(board(n)) for n in ("pi4_bookworm", "pi5_bookworm", "jetson_orin_nano"))
    assert (pi4.format, pi4.precision) == (pi5.format, pi5.precision) == ("tflite", "int8")
    assert any("--target-isa arm64 " in s for s in pi4.steps)
    assert any("--target-isa arm64-dotprod" in s for s in pi5.steps)
    assert any("no ARM dot-product" in n for n in pi4.notes)
    assert any("SDOT/UDOT" in n for n in pi5.notes) and not any("no ARM dot-product" in n for n in pi5.notes)
    assert orin.precision == "fp16"  # the GPU path; the CPU fallback's int8 layout is a note
    assert any("--target-isa arm64-dotprod" in n for n in orin.notes)
    # a named profile without a detected CPU still knows its board's cores
    assert any("--target-isa arm64-dotprod" in s for s in devices.plan("pi5").steps)
    assert any("--target-isa arm64 " in s for s in devices.plan("pi4").steps)


def test_generic_arm_cpu_plan_per_isa():
    graviton = devices.detect(Path(__file__).parent / "fixtures" / "devices" / "arm64_graviton3", env={})
    plan = devices.plan(graviton)
    assert plan.precision == "int8" and any("--target-isa arm64-i8mm" in s for s in plan.steps)
    assert any("i8mm" in n and "SMMLA" in n for n in plan.notes)
    # no dot-product on a bare Cortex-A72 (no device tree): fp32, and the note says why
    a72 = devices.detect(BOARDS / "pi4_bookworm", env={})
    bare = devices.plan(devices.DeviceInfo("cpu", "cpu", "A72", a72.cpu))
    assert bare.precision == "fp32" and bare.steps == ()
    assert any("no ARM dot-product" in n for n in bare.notes)


def auxv(hwcap: int, hwcap2: int) -> bytes:
    pairs = [(6, 4096), (AT_HWCAP, hwcap), (AT_HWCAP2, hwcap2), (0, 0)]  # AT_PAGESZ, HWCAP, HWCAP2, AT_NULL
    return b"".join(struct.pack("<QQ", k, v) for k, v in pairs)


@pytest.fixture
def emulated_root(tmp_path):
    """The x86 host's /proc/cpuinfo in an arm64 chroot and the guest's auxv, both read inside a bookworm arm64
    chroot under qemu-aarch64 7.2 (default 'max' CPU: AT_HWCAP 0xecfffffb, AT_HWCAP2 0x7f877fff)."""
    root = tmp_path / "chroot"
    shutil.copytree(BOARDS / "qemu_user_aarch64", root)
    hw = 1 << 1 | 1 << 10 | 1 << 20 | 1 << 22  # asimd, asimdhp, asimddp, sve
    hw2 = 1 << 1 | 1 << 13 | 1 << 14  # sve2, i8mm, bf16
    (root / "proc" / "self").mkdir(parents=True, exist_ok=True)
    if not (root / "proc" / "self" / "auxv").exists():
        (root / "proc" / "self" / "auxv").write_bytes(auxv(hw, hw2))
    return root


def test_emulated_aarch64_with_host_x86_cpuinfo(emulated_root):
    """qemu-user: uname says aarch64, /proc/cpuinfo is the x86 host's. Said so, not '0 cores, unknown model'."""
    info = devices.detect(emulated_root, env={}, machine="aarch64")
    cpu = info.cpu
    assert cpu.emulated and cpu.arch == "aarch64"
    assert cpu.model.startswith(EMULATED) and "x86_64 host" in cpu.model
    assert cpu.cores == 2  # the host's processors, which the emulated process runs on
    assert {"neon", "dotprod", "i8mm", "sve", "bf16"} <= set(cpu.isa) and not {"avx2", "avx"} & set(cpu.isa)
    assert info.family == "cpu" and "aarch64 machine" in info.details["emulated"]
    assert info.evidence == ("/proc/cpuinfo (the host's)", "/proc/self/auxv (AT_HWCAP)")
    plan = devices.plan(info)
    assert any(n.startswith("emulated CPU") and "timings mean nothing" in n for n in plan.notes)
    assert target_isa(cpu) == "arm64-i8mm"


def test_emulated_without_auxv_claims_no_isa(emulated_root):
    (emulated_root / "proc" / "self" / "auxv").unlink()
    cpu = devices.detect(emulated_root, env={}, machine="aarch64", cores=3).cpu
    assert cpu.emulated and cpu.isa == () and cpu.cores == 3
    assert target_isa(cpu) is None and not cpu.int8_fast
    assert devices.plan(devices.detect(emulated_root, env={}, machine="aarch64")).steps == ()


def test_no_false_emulation():
    """Same family on both sides is not emulation: 32-bit Pi OS on a 64-bit kernel, an x86 host."""
    assert not Probe(BOARDS / "pi4_bookworm", machine="armv7l").emulated
    assert not Probe(BOARDS / "pi5_bookworm", machine="aarch64").emulated
    x86 = Probe(BOARDS / "qemu_user_aarch64", machine="x86_64")
    assert not x86.emulated and x86.cpu.arch == "x86_64" and not x86.cpu.emulated
    assert not Probe(BOARDS / "qemu_user_aarch64").emulated  # a fixture without a machine: nothing to compare


def test_arch_names():
    assert [arch_family(a) for a in ("x86_64", "AMD64", "aarch64", "arm64", "armv7l", "riscv64", "", "unknown")] == [
        "x86",
        "x86",
        "arm",
        "arm",
        "arm",
        "riscv64",
        "",
        "",
    ]
    assert normalise_arch("arm64") == "aarch64" and normalise_arch("AMD64") == "x86_64"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no sched_getaffinity on this OS")
def test_live_core_count_comes_from_the_os():
    cpu = Probe("/").cpu
    assert cpu.cores == len(os.sched_getaffinity(0))


def test_device_root_env_reads_a_board_instead_of_this_machine(monkeypatch):
    """On an emulator the board's files stand in for / (EDGE_SDK_DEVICE_ROOT); --root still wins."""
    monkeypatch.setenv(devices.ROOT_ENV, str(BOARDS / "pi5_bookworm"))
    info = devices.detect("/", env={})
    assert info.profile == "pi5" and "EDGE_SDK_DEVICE_ROOT" in info.details["root"]
    assert devices.detect(BOARDS / "pi4_bookworm", env={}).profile == "pi4"
    monkeypatch.delenv(devices.ROOT_ENV)
    assert "root" not in devices.detect("/", env={}).details
