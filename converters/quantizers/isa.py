"""The int8 scheme that fits the instruction set an artifact will run on.

x86 CPUs without VNNI multiply u8 activations by s8 weights with ``VPMADDUBSW``, whose 16-bit
intermediate sums saturate when both operands use their full range; ONNX Runtime documents this
(its fixes: ``reduce_range`` = 7-bit weights, or U8U8 / S8S8 types) and so does OpenVINO (NNCF's
``overflow_fix``: 7-bit weights). With VNNI (``VPDPBUSD``) or AMX the sum is 32-bit and full 8 bits are
safe. Arm cores widen to 32 bits (``SDOT``/``SMMLA`` with dot-product / i8mm, ``SMULL``/``SADALP``
without), so signed 8-bit weights and activations need no guard. LiteRT's XNNPACK kernels are
signed 8-bit everywhere and widen before accumulating, so TFLite uses one scheme for every ISA.

The ISA comes from this machine (``devices``) or from ``--target-isa`` when converting for another one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edge_sdk.errors import ConversionError

#: the ISAs a scheme is chosen for, with what they mean
ISAS: dict[str, str] = {
    "x86-avx2": "x86-64 with AVX2, no VNNI (u8 x s8 dot products saturate at 16 bits)",
    "x86-avx512": "x86-64 with AVX-512, no VNNI (u8 x s8 dot products saturate at 16 bits)",
    "x86-vnni": "x86-64 with VNNI or AMX (AVX512_VNNI / AVX_VNNI / AMX-INT8: 32-bit int8 dot products)",
    "arm64": "64-bit Arm with NEON, no dot-product instructions",
    "arm64-dotprod": "64-bit Arm with SDOT/UDOT (ARMv8.2 dot-product)",
    "arm64-i8mm": "64-bit Arm with SMMLA (i8mm) and dot-product",
}


@dataclass(frozen=True)
class Int8Scheme:
    """How each target's static int8 is laid out for one ISA; recorded in the manifest."""

    isa: str
    detected: bool  # True: read from this machine; False: given with --target-isa
    onnx_activations: str  # "u8" | "s8"
    onnx_weights: str  # "s8" | "u8"
    onnx_reduce_range: bool  # 7-bit weights (ORT's guard against u8s8 saturation)
    openvino_overflow_fix: str  # NNCF OverflowFix: "enable" (7-bit weights everywhere) | "first_layer" | "disable"
    tflite: str = "s8 activations x s8 per-channel weights (XNNPACK widens before accumulating)"
    why: str = ""

    @property
    def onnx(self) -> str:
        """E.g. ``"u8s8"`` or ``"u8s8 reduce_range"``, as ONNX Runtime's documentation names them."""
        return f"{self.onnx_activations}{self.onnx_weights}" + (" reduce_range" if self.onnx_reduce_range else "")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "onnx": self.onnx}


def detect_isa() -> str:
    """This machine's ISA name (a key of :data:`ISAS`), from ``/proc/cpuinfo`` through ``devices``."""
    from devices.probe import Probe

    cpu = Probe().cpu
    arch = cpu.arch.lower()
    if arch in ("x86_64", "amd64", "i686", "x86"):
        if any(cpu.has(f) for f in ("avx512_vnni", "avx_vnni", "amx_int8")):
            return "x86-vnni"
        return "x86-avx512" if cpu.has("avx512f") else "x86-avx2"
    if arch in ("aarch64", "arm64"):
        if cpu.has("i8mm"):
            return "arm64-i8mm"
        return "arm64-dotprod" if cpu.has("dotprod") else "arm64"
    raise ConversionError(
        f"no int8 scheme is known for this CPU ({cpu.arch}); pass --target-isa with one of {', '.join(ISAS)}"
    )


def scheme_for(isa: str | None = None) -> Int8Scheme:
    """The int8 scheme for ``isa`` (a key of :data:`ISAS`), or for this machine when ``isa`` is None."""
    detected = isa is None
    name = detect_isa() if isa is None else isa.strip().lower()
    if name not in ISAS:
        raise ConversionError(f"unknown target ISA '{isa}'; use one of {', '.join(ISAS)} ({_listing()})")
    if name in ("x86-avx2", "x86-avx512"):
        return Int8Scheme(
            name, detected, "u8", "s8", True, "enable",
            why="no VNNI: u8 x s8 pairs saturate 16-bit sums (VPMADDUBSW); weights use 7 bits (ORT reduce_range, "
            "NNCF overflow fix on every layer)",
        )  # fmt: skip
    if name == "x86-vnni":
        return Int8Scheme(name, detected, "u8", "s8", False, "disable",
                          why="VNNI/AMX accumulate int8 products in 32 bits: full 8-bit weights")  # fmt: skip
    arm = "Arm widens int8 products to 32 bits (SDOT/SMMLA/SMLAL): signed 8-bit, full range"
    return Int8Scheme(name, detected, "s8", "s8", False, "disable", why=arm)


def _listing() -> str:
    return "; ".join(f"{k}: {v}" for k, v in ISAS.items())
