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


class CLIUsageError(EdgeSDKError):
    """A command-line argument is wrong in a way argparse cannot see."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of a runtime's exception text, for one-line messages."""
    for line in str(exc).strip().splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__


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
