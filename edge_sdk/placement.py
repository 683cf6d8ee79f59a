"""Where a model runs: turn ``load(device=...)`` into backend attempts, following the device plan.

- ``device="auto"``: this machine's plan (``devices.current()``), best target first; a target whose
  provider, delegate or device is missing is skipped with a logged warning, ending on the CPU.
- ``device="<profile>"`` (``"cpu"``, ``"jetson-orin"``, ``"pi5"``, ... see ``devices.profiles()``):
  that profile's best target for the format, strictly: anything missing is an error that says
  what to install.
- any other string (``"NPU"``, ``"GPU"``, ``"HETERO:NPU,CPU"``): passed to the backend as is.

Options the caller gives win over the plan's options for the same backend.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from edge_sdk.backends import canonical_name, choose_backend, get_backend_class
from edge_sdk.errors import BackendOptionError, BackendUnavailableError, EdgeSDKError, ModelLoadError, first_line

if TYPE_CHECKING:
    from edge_sdk.backends.base import Backend

log = logging.getLogger("edge_sdk")

#: errors after which ``device="auto"`` tries the next target instead of failing
FALLBACK_ERRORS = (BackendOptionError, BackendUnavailableError, ModelLoadError)


@dataclass(frozen=True)
class Attempt:
    """One way to load: backend class, the device string it gets, merged options, a label for logs."""

    backend_cls: type[Backend]
    device: str
    options: Mapping[str, Any]
    label: str


def plan_attempts(fmt: str, backend: str | None, device: str, options: Mapping[str, Any]) -> list[Attempt]:
    """The loads to try, in order; every one but the last may fail over to the next (``device="auto"``)."""
    import devices

    wanted = canonical_name(backend) if backend else None
    if device == "auto":
        profile, targets = devices.current()[1].profile, devices.current()[1].targets_for(fmt)
        strict = False
    elif device in devices.profiles():
        profile, targets = device, devices.plan(device).targets_for(fmt)[:1]
        strict = True
    else:
        cls = choose_backend(fmt, backend)
        return [Attempt(cls, device, dict(options), f"{cls.name} {device}")]
    attempts = []
    for target in targets:
        if wanted and target.backend != wanted:
            continue
        cls = get_backend_class(target.backend)
        if not cls.is_available():
            log.info("device plan %s: %s skipped, %s is not installed", profile, target.describe(), cls.name)
            continue
        dev = target.device if strict or target.device != "cpu" else "auto"
        attempts.append(Attempt(cls, dev, {**target.options, **options}, f"{target.describe()} [{profile}]"))
    if not attempts:  # the plan has nothing for this backend/format: the backend's own default
        cls = choose_backend(fmt, backend)
        attempts.append(Attempt(cls, "auto" if device == "auto" else "cpu", dict(options), f"{cls.name} default"))
    elif not strict and attempts[-1].device != "auto":  # always end somewhere lenient
        cls = choose_backend(fmt, backend)
        attempts.append(Attempt(cls, "auto", dict(options), f"{cls.name} default"))
    return attempts


def construct(attempts: list[Attempt], model_file: Any, threads: int | None) -> Backend:
    """Build the first attempt that works; log each fallback; re-raise the last attempt's error."""
    for i, attempt in enumerate(attempts):
        try:
            impl = _build(attempt, model_file, threads)
        except FALLBACK_ERRORS as e:
            if i == len(attempts) - 1:
                raise
            log.warning(
                "device=auto: %s is not usable (%s); falling back to %s", attempt.label, e, attempts[i + 1].label
            )
            continue
        if i or len(attempts) > 1:
            log.info("device=auto: running %s on %s", model_file.path.name, attempt.label)
        return impl
    raise BackendOptionError("no way to run this model was found")  # unreachable: attempts is never empty


def _build(attempt: Attempt, model_file: Any, threads: int | None) -> Backend:
    """One attempt; a runtime error its backend did not foresee is still a typed ModelLoadError (so the
    next attempt is tried), with the runtime's reason."""
    try:
        return attempt.backend_cls(model_file, threads=threads, device=attempt.device, options=attempt.options)
    except EdgeSDKError:
        raise
    except Exception as e:
        raise ModelLoadError(
            f"{attempt.label} could not load {model_file.path.name}: {type(e).__name__}: {first_line(e)}"
        ) from None
