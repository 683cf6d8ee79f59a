"""Typed errors for edge_sdk.

Every error a user can cause derives from :class:`EdgeSDKError`. The CLI turns
these into one clear line and a non-zero exit code; library callers catch the
specific subclass they care about.
"""

from __future__ import annotations

import re


class EdgeSDKError(Exception):
    """Base class of every error edge_sdk raises on purpose."""

    #: CLI exit code for this kind of error.
    exit_code: int = 2


class ModelFileError(EdgeSDKError):
    """The model file is missing, not a regular file, empty, truncated or corrupt."""


class ModelMetadataError(ModelFileError):
    """The metadata a model file carries (edge_sdk's embedded record) is malformed; names the file and the field."""


class UnsupportedFormatError(EdgeSDKError):
    """The file's content is not a model format edge_sdk knows."""


class UnsafeModelError(ModelFileError):
    """The model file tries to reach outside its folder (e.g. ONNX external data)."""


class ModelLoadError(EdgeSDKError):
    """The runtime refused or crashed while loading a model that passed our checks."""


class BackendUnavailableError(EdgeSDKError):
    """The runtime a backend needs is not installed; the message names the extra."""

    def __init__(self, backend: str, extra: str, detail: str = "") -> None:
        self.backend = backend
        self.extra = extra
        msg = (
            f"backend '{backend}' is not available: its runtime is not installed. "
            f'Install it with: pip install "edge-sdk[{extra}]"'
        )
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class BackendOptionError(EdgeSDKError):
    """A backend option (provider, delegate, device, hint) is unknown or unusable."""


class InputMismatchError(EdgeSDKError):
    """The inputs given to ``Model.run`` do not match the model's inputs."""


class ConcurrentUseError(EdgeSDKError):
    """A Model was called from a second thread while a run was in flight."""


class ModelClosedError(EdgeSDKError):
    """The model was closed and cannot run any more."""


class ConversionError(EdgeSDKError):
    """A conversion route failed or a source cannot be converted to the target."""


class UnsupportedOperatorError(ConversionError):
    """The target cannot express an operator of the source; names the op and the node."""


class PruneError(ConversionError):
    """A pruning request is invalid (amount, layer names, data) or the model has nothing to prune."""


class SourceModelError(EdgeSDKError):
    """The source model is of an unknown kind, does not load, or is refused as unsafe."""


class DiffError(EdgeSDKError):
    """``edge-sdk diff`` cannot compare the two models: their inputs or outputs do not correspond."""


class CalibrationError(EdgeSDKError):
    """Calibration data is missing, does not decode, or does not fit the model."""


class ValidationFailedError(EdgeSDKError):
    """A converted model disagrees with the original beyond the precision's tolerance."""

    exit_code = 3


class OutputDirError(EdgeSDKError):
    """The output directory cannot be created or written."""


class PreprocessError(EdgeSDKError):
    """A preprocessing spec is invalid, or an image or audio clip cannot be preprocessed with it."""


class LabelsError(EdgeSDKError):
    """A labels file is missing, unreadable or empty."""


class ZooError(EdgeSDKError):
    """A zoo model or sample image is unknown, or an option it was given is wrong."""


#: pip's index of CPU-only torch wheels: PyPI's Linux torch pulls gigabytes of CUDA libraries
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def pip_hint(requirement: str, *, torch: bool = False) -> str:
    """``pip install "<requirement>"``, with the CPU torch index when the requirement brings torch."""
    return f'pip install "{requirement}"' + (f" --extra-index-url {TORCH_CPU_INDEX}" if torch else "")


class MissingExtraError(EdgeSDKError):
    """A feature's optional packages (a pip extra of edge-sdk) are not installed; names the extra and the package."""

    def __init__(self, what: str, extra: str, package: str) -> None:
        self.extra, self.package = extra, package
        super().__init__(
            f"{what} needs edge-sdk's [{extra}] extra ({package} is not installed). "
            f"Install it with: {pip_hint(f'edge-sdk[{extra}]', torch=extra == 'convert')}"
        )


class ZooPackageMissingError(ZooError):
    """The pip package that carries a zoo model or sample image is not installed; names it."""

    def __init__(self, what: str, package: str, detail: str = "") -> None:
        self.what = what
        self.package = package
        msg = (
            f"{what} needs the pip package '{package}', which is not installed. "
            f"Install it with: {pip_hint('edge-sdk[zoo]', torch=package.startswith('torch'))} {package}"
        )
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class CLIUsageError(EdgeSDKError):
    """A command-line argument is wrong in a way argparse cannot see."""


#: where a runtime says where in its sources it failed: "Exception from src/x.cpp:84:", "Check 'c' failed at y.hpp:26:"
_SOURCE_REF = re.compile(r"(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:)")
#: lines that only say which stage failed, never why
_GENERIC = re.compile(
    r"^(Converting input model|Loading input model|Summary:?|Model wasn't fully converted\.?"
    r"( Failed operations detailed log:)?|FrontEnd API failed with \w+:?)$"
)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The runtime's reason from an exception's text, on one line, for one-line messages.

    OpenVINO wraps its reason in source locations ("Exception from src/...:", "Check '...' failed
    at ...:") and stage headers ("Converting input model", "FrontEnd API failed with ..."), with
    context lines ending in ':' ("While validating node '...':"). Those are dropped or moved after
    the reason: ``"<reason>; <reason> (<context>; <context>)"``, cut at ``limit`` characters, so the
    cause survives. A one-line message comes back as it is.
    """
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    reasons: list[str] = []
    context: list[str] = []
    for raw in lines:
        line = _SOURCE_REF.sub("", raw).strip().lstrip("-").strip()
        for stage in ("Converting input model", "Loading input model"):
            line = line.removeprefix(stage).strip() if line != stage else line
        if not line or _GENERIC.match(line) or line.endswith((".cpp:", ".hpp:", ".cc:", ".h:")):
            continue
        if line.endswith(":") or line.startswith("Conversion is failed for"):
            context.append(line.rstrip(":").strip())
        else:
            reasons.append(line)
    if not reasons and not context:
        return (lines[0] if lines else type(exc).__name__)[:limit]
    text = "; ".join(dict.fromkeys(reasons or context))
    if reasons and context:
        text += " (" + "; ".join(dict.fromkeys(context)) + ")"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_to_dict(exc: BaseException) -> dict[str, str]:
    """Serialise an error raised in a child process (typed errors keep their class)."""
    if isinstance(exc, EdgeSDKError):
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"error": "ModelLoadError", "message": first_line(exc)}


def error_from_dict(reply: dict[str, object], default: str) -> EdgeSDKError:
    """Rebuild the typed error a child process reported with :func:`error_to_dict`."""
    cls = globals().get(str(reply.get("error")), ModelLoadError)
    if not (isinstance(cls, type) and issubclass(cls, EdgeSDKError)):
        cls = ModelLoadError
    err = cls.__new__(cls)
    Exception.__init__(err, str(reply.get("message") or default))
    return err


class SourceError(EdgeSDKError):
    """A camera, stream, file or microphone source is unknown, does not exist or cannot be opened."""


class SourceTimeoutError(SourceError):
    """A source delivered nothing within its read timeout."""


class TaskError(EdgeSDKError):
    """A pipeline task (classify, detect, vad, ...) is unknown, or the model does not fit it."""


class TaskOptionError(TaskError):
    """A post-processor option is unknown or out of range. ``options``: the names at fault; ``bare``: the message
    without the hint on how to pass options (each front end says it its own way: ``--post-opt KEY=VALUE`` on the
    CLI, keyword arguments in Python, ``options:`` in a serve config)."""

    def __init__(self, bare: str, options: tuple[str, ...] | list[str] = ()) -> None:
        self.bare, self.options = bare, tuple(options)
        super().__init__(f"{bare} (CLI: --post-opt KEY=VALUE)")


class OutputMismatchError(TaskError):
    """A model's outputs do not fit the task's post-processor; the message names the output and why."""


class SinkError(EdgeSDKError):
    """A sink (window, http, file, jsonl, mqtt) is unknown or cannot be opened."""


class AudioFileError(SourceError):
    """An audio (WAV) file is missing, is not a WAV, or has a sample format edge_sdk cannot read; names the file."""


class ToolMissingError(EdgeSDKError):
    """A system program (e.g. espeak-ng) is not installed; the message names the package to install."""

    def __init__(self, tool: str, package: str, why: str = "") -> None:
        self.tool = tool
        self.package = package
        why = f" ({why})" if why else ""
        msg = f"'{tool}' is not installed{why}; install the Debian package: apt-get install {package}"
        super().__init__(msg)


class ModelTooLargeError(ModelFileError):
    """A model file declares tensors or weights past the memory budget; names the tensor, its size and the limit."""


class InferenceError(EdgeSDKError):
    """The runtime failed while running a model that loaded; carries the runtime's reason."""


class InferenceStalledError(InferenceError):
    """A shared model's watchdog abandoned an inference that ran far past its recent p99 (or a request that went
    stale while it hung); the caller's frame is dropped, the backend is restarted (``edge_sdk.multistream``)."""


class ResourceLimitError(ModelLoadError):
    """Loading a model in the isolated probe passed its memory or time limit; names the limit and how to raise it."""


class DiskFullError(OutputDirError):
    """A conversion ran out of disk space (ENOSPC, quota); names the folder, the space needed and the space free."""

    def __init__(self, message: str, *, folder: object = None, needed: int | None = None, free: int | None = None):
        super().__init__(message)
        self.folder, self.needed, self.free = folder, needed, free


class ConfigError(EdgeSDKError):
    """A configuration file (``edge-sdk serve CONFIG.yaml``) is invalid; the message names the file, the line and
    the key (``door.yaml line 4: cameras.door.source: missing; ...``)."""

    def __init__(self, message: str, *, file: object = None, line: int | None = None, key: str | None = None) -> None:
        self.file, self.line, self.key = file, line, key
        super().__init__(message)


class KeyFileError(EdgeSDKError):
    """A signing or trusted key file is missing, malformed, not Ed25519, or would be overwritten; names the file."""


class BundleError(EdgeSDKError):
    """A model bundle (``.edgebundle``) failed verification or cannot be built; says what failed.

    ``reason`` is one of: ``not_a_bundle``, ``unsigned``, ``no_trusted_keys``, ``untrusted_key``,
    ``bad_signature``, ``tampered``, ``missing_member``, ``unlisted_member``, ``unsafe_member``, ``too_large``,
    ``bad_manifest``, ``build``; ``member`` names the file and ``key_id`` the signing key when they apply.
    """

    exit_code = 4
    reason: str = "invalid"
    member: str | None = None
    key_id: str | None = None

    def __init__(self, message: str, *, reason: str = "invalid", member: str | None = None,
                 key_id: str | None = None) -> None:  # fmt: skip
        self.reason, self.member, self.key_id = reason, member, key_id
        super().__init__(message)


class UnsignedModelError(BundleError):
    """Trusted keys are set (``trusted_keys=`` or ``EDGE_SDK_TRUSTED_KEYS``) and a plain, unsigned model was given."""


class SlotError(EdgeSDKError):
    """A model slot (``STATE_DIR/slots/a|b``) or the active-slot record cannot be used; names the slot and why."""


class FleetError(EdgeSDKError):
    """A fleet agent cannot act on a desired state (bad document, refused URL, download or sha256 mismatch)."""


class RolloutError(FleetError):
    """A rollout did not reach every device: stopped on failures, timed out, or found no devices; says which."""

    exit_code = 3
