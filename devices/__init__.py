"""Device families: what this machine is, and the plan (format, precision, backend, accelerator) it implies.

One registry, one module per family. Each family module provides::

    FAMILY: str                                   # registry key
    PROFILES: dict[str, str]                      # named profiles -> description
    detect(probe: Probe) -> DeviceInfo | None     # from files under probe.root (+ runtime report)
    plan(profile: str, info: DeviceInfo | None) -> Plan

Families are tried in :data:`FAMILIES` order; the generic CPU always matches last. Add-on
accelerators (Coral, Hailo) are found on any host; a Coral takes over the plan because it only
helps when the model is compiled for it, and the plan says so. Stdlib-only at import.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import replace
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

from devices.base import Accelerator, CpuInfo, DeviceInfo, Plan, Target
from devices.probe import Probe

if TYPE_CHECKING:
    from devices.runtimes import RuntimeReport

log = logging.getLogger("edge_sdk")

#: a folder read instead of ``/`` by ``detect("/")``: a board's files on an emulator or in a container
ROOT_ENV = "EDGE_SDK_DEVICE_ROOT"

#: family modules, most specific first; ``cpu`` matches everything
FAMILIES: tuple[str, ...] = ("jetson", "raspberry_pi", "coral", "qualcomm", "android", "apple", "intel", "cpu")


class UnknownProfileError(ValueError):
    """A profile name that no family defines (``edge_sdk`` turns it into a BackendOptionError)."""


def family_module(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise UnknownProfileError(f"unknown device family '{name}'; families: {', '.join(FAMILIES)}")
    return importlib.import_module(f"devices.{name}")


def profiles() -> dict[str, str]:
    """Every named profile -> its description (the names ``edge_sdk.load(device=...)`` accepts)."""
    out: dict[str, str] = {}
    for fam in FAMILIES:
        out.update(family_module(fam).PROFILES)
    return out


def _family_of(profile: str) -> ModuleType:
    for fam in FAMILIES:
        mod = family_module(fam)
        if profile in mod.PROFILES:
            return mod
    raise UnknownProfileError(f"unknown device profile '{profile}'; profiles: {', '.join(profiles())}")


def addon_accelerators(probe: Probe) -> list[Accelerator]:
    from devices import coral, raspberry_pi

    return coral.find(probe) + raspberry_pi.find_hailo(probe)


def detect(
    root: str | os.PathLike[str] = "/", *, runtimes: RuntimeReport | None = None, **probe_kwargs: Any
) -> DeviceInfo:
    """Identify the machine under ``root`` (``/`` = this one). ``runtimes`` adds what the runtimes report.

    With ``root`` ``/`` and ``$EDGE_SDK_DEVICE_ROOT`` set, that folder is read instead (a board's
    ``/proc`` and device-tree files under an emulator, where ``/proc/cpuinfo`` is the host's).
    """
    override = os.environ.get(ROOT_ENV, "") if str(root) in ("/", "") else ""
    if override:
        info = detect_with(Probe(override, runtimes=runtimes, **probe_kwargs))
        return replace(info, details={**info.details, "root": f"{override} (${ROOT_ENV})"})
    return detect_with(Probe(root, runtimes=runtimes, **probe_kwargs))


def detect_with(probe: Probe) -> DeviceInfo:
    info: DeviceInfo | None = None
    for fam in FAMILIES:
        info = family_module(fam).detect(probe)
        if info is not None:
            break
    assert info is not None  # the cpu family always matches
    addons = [a for a in addon_accelerators(probe) if a not in info.accelerators]
    if addons:
        info = replace(info, accelerators=info.accelerators + tuple(addons))
        coral_addon = next((a for a in addons if a.kind == "edgetpu"), None)
        if coral_addon is not None and info.family != "coral":
            details = {**info.details, "host_profile": info.profile}
            info = replace(
                info, profile=f"coral-{'usb' if coral_addon.interface == 'usb' else 'pcie'}", details=details
            )
    return info


def plan(info_or_profile: DeviceInfo | str) -> Plan:
    """The plan for a detected device, or for a named profile (``"jetson-orin"``, ``"pi5"``, ``"cpu"``...)."""
    if isinstance(info_or_profile, str):
        return _family_of(info_or_profile).plan(info_or_profile, None)
    info = info_or_profile
    return _family_of(info.profile).plan(info.profile, info)


def __getattr__(name: str) -> Any:  # RuntimeReport on first use: detection (every model load) does not need it
    if name == "RuntimeReport":
        from devices.runtimes import RuntimeReport

        return RuntimeReport
    raise AttributeError(f"module 'devices' has no attribute {name!r}")


@lru_cache(maxsize=1)
def current() -> tuple[DeviceInfo, Plan]:
    """This machine's device and plan, detected once per process from files only (no runtime import)."""
    try:
        info = detect("/")
    except Exception as e:  # detection must never stop a load: fall back to the generic CPU plan
        log.warning("device detection failed (%s: %s); using the generic CPU plan", type(e).__name__, e)
        info = DeviceInfo("cpu", "cpu", "CPU", CpuInfo("unknown"))
    return info, plan(info)


__all__ = [
    "FAMILIES",
    "Accelerator",
    "CpuInfo",
    "DeviceInfo",
    "Plan",
    "Probe",
    "RuntimeReport",
    "Target",
    "UnknownProfileError",
    "current",
    "detect",
    "detect_with",
    "plan",
    "profiles",
]
