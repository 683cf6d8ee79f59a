"""The data every device family speaks: what was found (:class:`DeviceInfo`) and what to do (:class:`Plan`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class CpuInfo:
    """The host CPU: architecture, name, core count and the ISA extensions that matter for inference."""

    arch: str  # "x86_64" | "aarch64" | "armv7l" | ...
    model: str = ""
    vendor: str = ""
    cores: int = 0
    isa: tuple[str, ...] = ()  # normalised names, e.g. ("avx2", "avx512f", "avx512_vnni") or ("neon", "dotprod")
    emulated: bool = False  # user-mode emulation (qemu-user): /proc/cpuinfo was the host's, ISA from AT_HWCAP

    def has(self, *names: str) -> bool:
        return all(n in self.isa for n in names)

    @property
    def headline(self) -> str:
        """The inference-relevant ISA in a few words, e.g. ``"AVX2, AVX-512, VNNI"`` or ``"NEON, dot-product, SVE"``."""
        words = [
            w
            for w, keys in (
                ("AVX2", ("avx2",)),
                ("AVX-512", ("avx512f",)),
                ("VNNI", ("avx512_vnni", "avx_vnni")),
                ("BF16", ("avx512_bf16", "bf16")),
                ("AMX", ("amx_tile",)),
                ("NEON", ("neon",)),
                ("dot-product", ("dotprod",)),
                ("i8mm", ("i8mm",)),
                ("SVE", ("sve",)),
                ("SVE2", ("sve2",)),
            )
            if any(k in self.isa for k in keys)
        ]
        return ", ".join(words) or "baseline"

    @property
    def int8_fast(self) -> bool:
        """True when the CPU has int8 dot-product instructions (VNNI, AMX, ARM dot-product)."""
        return any(n in self.isa for n in ("avx512_vnni", "avx_vnni", "amx_int8", "dotprod", "i8mm"))


@dataclass(frozen=True)
class Accelerator:
    """An accelerator seen on the machine and whether the software to drive it is there."""

    kind: str  # "gpu" | "npu" | "edgetpu" | "hailo" | "dsp" | "dla"
    name: str
    interface: str = "soc"  # "soc" | "usb" | "pcie"
    evidence: tuple[str, ...] = ()  # files/ids that showed it
    missing: tuple[str, ...] = ()  # what must be installed before it can be used, with how


@dataclass(frozen=True)
class DeviceInfo:
    """What this machine is, as one family's detector sees it."""

    family: str  # registry key of the family module
    profile: str  # the named profile whose plan applies
    name: str  # human name, e.g. "NVIDIA Jetson AGX Orin Developer Kit"
    cpu: CpuInfo
    accelerators: tuple[Accelerator, ...] = ()
    evidence: tuple[str, ...] = ()
    details: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """One way to run a model of a given format: a backend, its device string and options."""

    backend: str  # "onnxruntime" | "litert" | "openvino"
    device: str = "cpu"  # the backend's device ("cpu", "NPU", "GPU", ...)
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""  # what a person calls it: "TensorRT EP fp16"

    def describe(self) -> str:
        return self.label or f"{self.backend} {self.device}"


@dataclass(frozen=True)
class Plan:
    """The recommended way to deploy on a device profile.

    ``format`` / ``precision`` / ``static_shapes`` / ``steps`` say how to *prepare* the model;
    ``targets[fmt]`` says how to *run* a model of that format, best first; the last target of
    every format runs on the CPU, so ``device="auto"`` always has somewhere to land.
    """

    profile: str
    description: str
    format: str
    precision: str
    targets: Mapping[str, tuple[Target, ...]]
    static_shapes: bool = False
    steps: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def targets_for(self, fmt: str) -> tuple[Target, ...]:
        return tuple(self.targets.get(fmt, ()))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"] = {fmt: [asdict(t) | {"label": t.describe()} for t in ts] for fmt, ts in self.targets.items()}
        return d
