"""Read the system's self-description from a root folder, so tests can point it at fixture trees.

Everything is read relative to ``root`` (``/`` on a real machine): device-tree ``model`` and
``compatible``, ``/proc/cpuinfo``, ``/etc/nv_tegra_release``, Android's ``build.prop``, USB and
PCI vendor/product ids under ``/sys/bus``, device nodes (``/dev/apex_0``, ``/dev/accel/*``,
``/dev/hailo0``) and shared libraries on the library path. Nothing here imports a runtime;
what the runtimes report comes in separately as a :class:`~devices.runtimes.RuntimeReport`.
"""

from __future__ import annotations

import os
import platform
import struct
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from devices.base import CpuInfo

if TYPE_CHECKING:
    from devices.runtimes import RuntimeReport

#: folders searched for shared libraries (relative to root), after $LD_LIBRARY_PATH
LIBRARY_DIRS = (
    "usr/lib",
    "usr/lib64",
    "usr/local/lib",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/arm-linux-gnueabihf",
    "usr/lib/aarch64-linux-gnu/tegra",
    "usr/local/cuda/lib64",
    "usr/local/cuda/targets/aarch64-linux/lib",
    "opt/qcom/aistack/qairt/lib/aarch64-oe-linux-gcc11.2",
    "system/lib64",
    "vendor/lib64",
    "system/vendor/lib64",
)

#: x86 /proc/cpuinfo "flags" that matter for inference (kept as written by the kernel)
X86_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
)  # fmt: skip
#: ARM /proc/cpuinfo "Features" -> our names
ARM_FEATURES = {
    "asimd": "neon",
    "neon": "neon",
    "asimddp": "dotprod",
    "asimdhp": "fp16",
    "i8mm": "i8mm",
    "bf16": "bf16",
    "sve": "sve",
    "sve2": "sve2",
    "sme": "sme",
}
#: ARM implementer 0x41 part numbers -> core names (from the Arm TRMs; what Pi/Jetson/phones use)
ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd41": "Cortex-A78",
    "0xd42": "Cortex-A78AE",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd48": "Cortex-X2",
    "0xd4d": "Cortex-A715",
    "0xd4e": "Cortex-X3",
    "0xd40": "Neoverse-V1",
    "0xd4f": "Neoverse-V2",
}
#: (implementer, part) of non-Arm-designed cores seen on edge boards
OTHER_PARTS = {("0x4e", "0x004"): "NVIDIA Carmel", ("0x51", "0x001"): "Qualcomm Oryon"}
#: aarch64 ELF auxiliary vector: AT_HWCAP / AT_HWCAP2 bits -> the /proc/cpuinfo feature names
#: (Linux arch/arm64/include/uapi/asm/hwcap.h); read from /proc/self/auxv when cpuinfo cannot be trusted
AT_HWCAP, AT_HWCAP2 = 16, 26
HWCAP_BITS = {1: "asimd", 10: "asimdhp", 20: "asimddp", 22: "sve"}
HWCAP2_BITS = {1: "sve2", 13: "i8mm", 14: "bf16", 23: "sme"}
#: what an emulated machine's CPU model says, so `devices` shows it instead of the host's
EMULATED = "emulated: host cpuinfo shows through"


class Probe:
    """Reads one machine's description under ``root``; results are cached per probe.

    ``system`` / ``machine`` default to this interpreter's (``platform``) only when ``root`` is
    ``/``; ``sysctl`` is macOS's ``sysctl -a`` output (read live on a real Mac, injected in tests);
    ``runtimes`` is what the installed runtimes report, when the caller asked for it.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = "/",
        *,
        system: str | None = None,
        machine: str | None = None,
        sysctl: str | Mapping[str, str] | None = None,
        runtimes: RuntimeReport | None = None,
        env: Mapping[str, str] | None = None,
        cores: int | None = None,
    ) -> None:
        self.root = Path(root)
        live = self.root == Path("/")
        self.live = live
        self.system = system or (platform.system() if live else "Linux")
        self.machine = machine or (platform.machine() if live else "")
        self._cores = cores if cores is not None else (_os_cores() if live else None)
        self._sysctl = sysctl
        self.runtimes = runtimes
        self.env = dict(os.environ if env is None and live else env or {})
        self._dir_cache: dict[Path, frozenset[str]] = {}

    # -- files -----------------------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def read(self, rel: str, limit: int = 1 << 20) -> str | None:
        """Text of ``rel`` under root (NULs become newlines, as in device-tree strings), or None."""
        try:
            with open(self.path(rel), "rb") as f:
                data = f.read(limit)
        except OSError:
            return None
        return data.replace(b"\0", b"\n").decode("utf-8", "replace").strip()

    def exists(self, rel: str) -> bool:
        return os.path.lexists(self.path(rel))

    def glob(self, pattern: str) -> list[Path]:
        rel = pattern.lstrip("/")
        folder, _, name = rel.rpartition("/")
        prefix = name[:-1]
        if name.endswith("*") and not any(c in folder + prefix for c in "*?[]"):  # "dev/apex_*": no regex to build
            try:  # (pathlib's glob compiles one per pattern: a few ms of every detection, so of every model load)
                names = os.listdir(self.root / folder)
            except OSError:
                return []
            return sorted(self.root / folder / n for n in names if n.startswith(prefix))
        return sorted(self.root.glob(rel))

    def rel(self, p: Path) -> str:
        return "/" + str(p.relative_to(self.root)) if p.is_relative_to(self.root) else str(p)

    # -- identity --------------------------------------------------------------------------------
    @cached_property
    def dt_model(self) -> str:
        """``/proc/device-tree/model`` (ARM boards), or ``""``."""
        return self.read("proc/device-tree/model") or self.read("sys/firmware/devicetree/base/model") or ""

    @cached_property
    def dt_compatible(self) -> tuple[str, ...]:
        """``/proc/device-tree/compatible`` entries, most specific first."""
        text = self.read("proc/device-tree/compatible") or self.read("sys/firmware/devicetree/base/compatible") or ""
        return tuple(line.strip() for line in text.splitlines() if line.strip())

    def compatible_with(self, *prefixes: str) -> str | None:
        """The first ``compatible`` entry that starts with one of ``prefixes``."""
        return next((c for c in self.dt_compatible if c.startswith(prefixes)), None)

    @cached_property
    def cpuinfo(self) -> str:
        return self.read("proc/cpuinfo") or ""

    @cached_property
    def build_prop(self) -> dict[str, str]:
        """Android's ``/system/build.prop`` (and ``/vendor/build.prop``) as a dict; empty elsewhere."""
        props: dict[str, str] = {}
        for rel in ("vendor/build.prop", "system/build.prop"):
            for line in (self.read(rel) or "").splitlines():
                key, sep, value = line.partition("=")
                if sep and not key.startswith("#"):
                    props[key.strip()] = value.strip()
        return props

    @cached_property
    def sysctl(self) -> dict[str, str]:
        """macOS ``sysctl -a`` as a dict (empty on other systems)."""
        raw = self._sysctl
        if raw is None and self.system == "Darwin" and self.root == Path("/"):
            import subprocess

            try:
                raw = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=5).stdout
            except (OSError, subprocess.SubprocessError):
                raw = ""
        if isinstance(raw, Mapping):
            return dict(raw)
        out = {}
        for line in (raw or "").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                out[key.strip()] = value.strip()
        return out

    @cached_property
    def auxv(self) -> dict[int, int]:
        """``/proc/self/auxv`` as {type: value} (64-bit little-endian pairs); empty when unreadable.

        Under qemu-user this is the emulated process's vector, so ``AT_HWCAP`` is the guest CPU's
        features even where ``/proc/cpuinfo`` is the host's.
        """
        try:
            with open(self.path("proc/self/auxv"), "rb") as f:
                data = f.read(1 << 16)
        except OSError:
            return {}
        order = "=" if self.live else "<"  # fixtures are written little-endian, like aarch64 Linux
        out: dict[int, int] = {}
        for i in range(0, len(data) - 15, 16):
            key, value = struct.unpack_from(f"{order}QQ", data, i)
            if key == 0:  # AT_NULL ends the vector
                break
            out[key] = value
        return out

    def hwcap_features(self) -> set[str]:
        """The aarch64 features ``AT_HWCAP``/``AT_HWCAP2`` announce, as cpuinfo names (``asimddp``, ``i8mm``...)."""
        aux = self.auxv
        if AT_HWCAP not in aux:
            return set()
        hw, hw2 = aux.get(AT_HWCAP, 0), aux.get(AT_HWCAP2, 0)
        return {n for b, n in HWCAP_BITS.items() if hw >> b & 1} | {n for b, n in HWCAP2_BITS.items() if hw2 >> b & 1}

    @cached_property
    def emulated(self) -> str:
        """Why this machine looks emulated (user-mode emulation such as qemu-user), or ``""``.

        The sign: ``uname`` says one architecture and ``/proc/cpuinfo`` describes another
        (qemu-user emulates the syscalls of the guest but passes the host's ``/proc/cpuinfo`` through).
        """
        seen = parse_cpuinfo(self.cpuinfo).arch if self.cpuinfo else ""
        want = arch_family(self.machine)
        if want and seen not in ("", "unknown") and arch_family(seen) not in ("", want):
            return f"{self.machine} machine, but /proc/cpuinfo describes a {seen} CPU"
        return ""

    @cached_property
    def cpu(self) -> CpuInfo:
        """The CPU from ``/proc/cpuinfo`` (macOS: sysctl); cores from the OS on a live machine.

        When ``/proc/cpuinfo`` is another architecture's (see :attr:`emulated`), its model and ISA are
        not this machine's: the model says so and the ISA comes from ``AT_HWCAP`` when readable.
        """
        cpu = parse_cpuinfo(self.cpuinfo, machine=self.machine, sysctl=self.sysctl)
        if self.emulated:
            host = parse_cpuinfo(self.cpuinfo)
            features = self.hwcap_features() if normalise_arch(self.machine) == "aarch64" else set()
            isa = tuple(dict.fromkeys(ARM_FEATURES[f] for f in sorted(features) if f in ARM_FEATURES))
            host_model = f"{host.arch} host" + (f": {host.model}" if host.model else "")
            cpu = CpuInfo(
                normalise_arch(self.machine), f"{EMULATED} ({host_model})", "", host.cores, isa, emulated=True
            )
        elif not cpu.isa and normalise_arch(cpu.arch) == "aarch64" and self.live:
            features = self.hwcap_features()  # no Features line (some containers): the kernel's auxv says it
            isa = tuple(dict.fromkeys(ARM_FEATURES[f] for f in sorted(features) if f in ARM_FEATURES))
            if isa:
                cpu = replace(cpu, arch="aarch64", isa=isa)
        if self._cores:
            cpu = replace(cpu, cores=self._cores)
        return cpu

    # -- buses and device nodes -------------------------------------------------------------------
    @cached_property
    def usb_ids(self) -> dict[str, str]:
        """``"vvvv:pppp"`` -> sysfs folder, for every USB device under ``/sys/bus/usb/devices``."""
        ids = {}
        for dev in self.glob("sys/bus/usb/devices/*"):
            vendor, product = _read_hex(dev / "idVendor"), _read_hex(dev / "idProduct")
            if vendor and product:
                ids[f"{vendor}:{product}"] = self.rel(dev)
        return ids

    @cached_property
    def pci_ids(self) -> dict[str, str]:
        """``"vvvv:dddd"`` -> sysfs folder, for every PCI device under ``/sys/bus/pci/devices``."""
        ids = {}
        for dev in self.glob("sys/bus/pci/devices/*"):
            vendor, device = _read_hex(dev / "vendor"), _read_hex(dev / "device")
            if vendor and device:
                ids[f"{vendor}:{device}"] = self.rel(dev)
        return ids

    def accel_vendors(self) -> dict[str, str]:
        """``/dev/accel/accelN`` (Linux compute accelerators) -> PCI vendor id from sysfs (``""`` if unknown)."""
        out = {}
        for node in self.glob("dev/accel/accel*"):
            vendor = _read_hex(self.path(f"sys/class/accel/{node.name}/device/vendor"))
            out[self.rel(node)] = vendor
        return out

    def drm_render_vendors(self) -> dict[str, str]:
        """``/dev/dri/renderD*`` -> PCI vendor id from sysfs (GPUs that can run compute)."""
        out = {}
        for node in self.glob("dev/dri/renderD*"):
            vendor = _read_hex(self.path(f"sys/class/drm/{node.name}/device/vendor"))
            out[self.rel(node)] = vendor
        return out

    # -- libraries -------------------------------------------------------------------------------
    def library_dirs(self) -> list[Path]:
        dirs = [Path(d) for d in self.env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
        if self.root != Path("/"):
            dirs = [self.path(str(d)) for d in dirs]
        return dirs + [self.path(d) for d in LIBRARY_DIRS]

    def find_library(self, stem: str) -> str | None:
        """Path of the first ``stem*`` file (e.g. ``libedgetpu.so``) on the library path, or None."""
        for d in self.library_dirs():
            names = self._dir_cache.get(d)
            if names is None:
                try:
                    names = frozenset(os.listdir(d))
                except OSError:
                    names = frozenset()
                self._dir_cache[d] = names
            hit = sorted(n for n in names if n.startswith(stem))
            if hit:
                return self.rel(d / hit[0])
        return None


def _os_cores() -> int | None:
    """CPUs this process may run on (affinity), else the OS's count; None when unknown."""
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):
        return os.cpu_count()


def normalise_arch(machine: str) -> str:
    """``arm64`` (macOS, Windows) -> ``aarch64``; ``AMD64`` -> ``x86_64``; others as given."""
    m = machine.lower()
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(m, machine)


def arch_family(arch: str) -> str:
    """``"x86"``, ``"arm"``, another lower-case name, or ``""`` when unknown."""
    a = arch.lower()
    if a in ("x86_64", "amd64", "i386", "i686", "x86"):
        return "x86"
    if a in ("aarch64", "arm64") or a.startswith("arm"):
        return "arm"
    return "" if a in ("", "unknown") else a


def _read_hex(path: Path) -> str:
    try:
        text = path.read_text().strip().lower()
    except OSError:
        return ""
    return text[2:] if text.startswith("0x") else text


def _field(cpuinfo: str, key: str) -> str:
    for line in cpuinfo.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip().lower() == key.lower():
            return v.strip()
    return ""


def parse_cpuinfo(text: str, *, machine: str = "", sysctl: Mapping[str, str] | None = None) -> CpuInfo:
    """Architecture, model, vendor, core count and inference-relevant ISA from ``/proc/cpuinfo``.

    x86 lists ``flags``; ARM lists ``Features`` (``asimd`` = NEON, ``asimddp`` = dot-product, ``sve``).
    On macOS (no cpuinfo) the ``sysctl`` keys ``machdep.cpu.brand_string`` and
    ``hw.optional.arm.FEAT_*`` give the same facts.
    """
    sysctl = sysctl or {}
    cores = sum(1 for line in text.splitlines() if line.split(":")[0].strip() == "processor")
    flags = set(_field(text, "flags").split())
    features = set(_field(text, "Features").split())
    if flags:
        isa = tuple(f for f in X86_FLAGS if f in flags)
        vendor = _field(text, "vendor_id")
        return CpuInfo("x86_64", _field(text, "model name"), vendor, cores, isa)
    if features or _field(text, "CPU implementer"):
        isa = tuple(dict.fromkeys(ARM_FEATURES[f] for f in sorted(features) if f in ARM_FEATURES))
        arch = (
            "aarch64" if _field(text, "CPU architecture") in ("8", "9", "AArch64") or "asimd" in features else "armv7l"
        )
        if arch == "armv7l" and "neon" in features:
            isa = ("neon",)
        impl = _field(text, "CPU implementer")
        parts = [line.split(":")[1].strip() for line in text.splitlines() if line.startswith("CPU part")]
        names = sorted(
            {OTHER_PARTS.get((impl, p), "") if impl != "0x41" else ARM_PARTS.get(p, "") for p in parts} - {""}
        )
        cores_text = "/".join(names)
        board = _field(text, "Model") or _field(text, "Hardware")
        model = f"{board} ({cores_text})" if board and cores_text else board or cores_text or "ARM CPU"
        return CpuInfo(arch, model, "ARM", cores, isa)
    if sysctl:
        isa = ["neon"] if machine in ("arm64", "aarch64") else []
        for key, name in (
            ("FEAT_DotProd", "dotprod"),
            ("FEAT_I8MM", "i8mm"),
            ("FEAT_BF16", "bf16"),
            ("FEAT_SME", "sme"),
        ):
            if sysctl.get(f"hw.optional.arm.{key}") == "1":
                isa.append(name)
        if sysctl.get("hw.optional.arm.FEAT_FP16") == "1" or sysctl.get("hw.optional.neon_fp16") == "1":
            isa.append("fp16")
        ncpu = int(sysctl.get("hw.ncpu", "0") or 0)
        arch = "aarch64" if machine in ("arm64", "aarch64") else machine
        return CpuInfo(arch, sysctl.get("machdep.cpu.brand_string", ""), "Apple", ncpu, tuple(isa))
    return CpuInfo(machine or "unknown", "", "", cores, ())
