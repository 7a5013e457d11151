"""The exceptions whisperpool raises.

Every error derives from :class:`WhisperPoolError`, so callers can catch one type. Each
class has a stable ``code`` (used in JSON output and, later, mapped to one HTTP status
in one place in the server). Errors that cross the process boundary travel as plain
data (:class:`ErrorInfo`) and are rebuilt in the parent with the worker's traceback as
``__cause__``, as ``concurrent.futures`` does.
"""

from __future__ import annotations

import importlib
import traceback
from dataclasses import dataclass


class WhisperPoolError(Exception):
    """Base class of every whisperpool error."""

    code = "whisperpool_error"

    def to_dict(self) -> dict[str, str]:
        return {"type": type(self).__name__, "code": self.code, "message": str(self)}


class ConfigError(WhisperPoolError, ValueError):
    """A setting is out of range or of the wrong kind; the message names it."""

    code = "invalid_config"


class ModelError(WhisperPoolError):
    """The model cannot be found, joined, verified or loaded; the message names the file."""

    code = "model_error"


class InvalidAudio(WhisperPoolError, ValueError):
    """The input is not decodable audio (not audio, empty, truncated, bad array)."""

    code = "invalid_audio"


class AudioTooLong(InvalidAudio):
    """The audio is longer than the configured limit (``max_audio_s``)."""

    code = "audio_too_long"


class AudioTooShort(InvalidAudio):
    """The audio is shorter than 0.1 s: nothing to transcribe (OpenAI's API refuses it too)."""

    code = "audio_too_short"


class InvalidStateTransition(WhisperPoolError, RuntimeError):
    """A worker was asked to move between two states the lifecycle table does not link."""

    code = "invalid_state_transition"


class PoolNotReady(WhisperPoolError):
    """The pool has no warm worker (yet) to serve the request."""

    code = "pool_not_ready"


class PoolFailed(PoolNotReady):
    """Every worker failed to warm up; the message carries each worker's reason."""

    code = "pool_failed"


class UnknownModel(WhisperPoolError):
    """A request named a model configuration this engine does not serve."""

    code = "model_not_found"


class PoolClosed(WhisperPoolError):
    """The pool was closed before the request could be served."""

    code = "pool_closed"


class QueueFull(WhisperPoolError):
    """The request queue is at its limit; retry later."""

    code = "queue_full"


class RequestTimeout(WhisperPoolError, TimeoutError):
    """The request did not finish within its timeout (queue wait plus inference)."""

    code = "request_timeout"


class WorkerCrashed(WhisperPoolError):
    """The worker process serving the request died."""

    code = "worker_crashed"


class TranscriptionError(WhisperPoolError):
    """The backend raised while transcribing; the worker's traceback is the cause."""

    code = "transcription_error"


class InvalidParameter(WhisperPoolError, ValueError):
    """A request parameter is missing or wrong; ``param`` names it."""

    code = "invalid_parameter"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class Unauthorized(WhisperPoolError):
    """The request carries no API key, or the wrong one."""

    code = "invalid_api_key"


class UploadTooLarge(WhisperPoolError):
    """An upload is over the server's size limit."""

    code = "upload_too_large"


class UploadTimeout(WhisperPoolError):
    """A client took longer than the server's read timeout to send its request."""

    code = "upload_timeout"


class ClientDisconnected(WhisperPoolError):
    """The client went away before its answer was ready; nobody reads this response."""

    code = "client_disconnected"


class MissingDependency(WhisperPoolError, ImportError):
    """An optional part needs packages that are not installed; the message names the extra."""

    code = "missing_dependency"

    @classmethod
    def unless_importable(cls, modules: tuple[str, ...], *, extra: str, needed_for: str) -> None:
        """Raise one naming ``extra`` (and what is missing) unless all ``modules`` import."""
        missing = []
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(module)
        if missing:
            raise cls(
                f"{needed_for} needs the '{extra}' extra: pip install 'whisperpool[{extra}]' "
                f"(missing: {', '.join(missing)})"
            )


class RemoteTraceback(Exception):
    """Carries a worker's formatted traceback as the ``__cause__`` of a rebuilt error."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


# The one error registry: every whisperpool error, by class name (errors that cross the
# worker pipe) and by code (errors that cross HTTP). Codes are unique.
ERRORS: tuple[type[WhisperPoolError], ...] = (
    WhisperPoolError,
    ConfigError,
    ModelError,
    InvalidAudio,
    AudioTooLong,
    AudioTooShort,
    InvalidStateTransition,
    PoolNotReady,
    PoolFailed,
    UnknownModel,
    PoolClosed,
    QueueFull,
    RequestTimeout,
    WorkerCrashed,
    TranscriptionError,
    InvalidParameter,
    Unauthorized,
    UploadTooLarge,
    UploadTimeout,
    ClientDisconnected,
    MissingDependency,
)
_BY_NAME: dict[str, type[WhisperPoolError]] = {cls.__name__: cls for cls in ERRORS}
_BY_CODE: dict[str, type[WhisperPoolError]] = {cls.code: cls for cls in ERRORS}


def error_class(*, name: str | None = None, code: str | None = None) -> type[WhisperPoolError] | None:
    """The whisperpool error class with this class ``name`` or this ``code``; None if none has it."""
    if name is not None:
        return _BY_NAME.get(name)
    if code is not None:
        return _BY_CODE.get(code)
    return None


def rebuild(cls: type[WhisperPoolError], message: str) -> WhisperPoolError:
    """An instance of ``cls`` carrying ``message`` (the base class if ``cls`` takes other arguments)."""
    try:
        return cls(message)
    except TypeError:
        return WhisperPoolError(message)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception as plain data, so it can cross a pipe whatever its class."""

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(type=type(exc).__name__, message=str(exc) or type(exc).__name__, traceback=tb)

    @property
    def code(self) -> str:
        """The error's stable code (a foreign exception is a ``transcription_error``)."""
        cls = error_class(name=self.type)
        return cls.code if cls is not None else TranscriptionError.code

    def to_exception(self, default: type[WhisperPoolError] = TranscriptionError) -> WhisperPoolError:
        """Rebuild the error: whisperpool types keep their class, others become ``default``."""
        cls = error_class(name=self.type)
        if cls is None:
            exc: WhisperPoolError = default(f"{self.type}: {self.message}")
        else:
            exc = rebuild(cls, self.message)
        if self.traceback:
            exc.__cause__ = RemoteTraceback(self.traceback)
        return exc


__all__ = [
    "AudioTooLong",
    "AudioTooShort",
    "ERRORS",
    "ClientDisconnected",
    "ConfigError",
    "ErrorInfo",
    "InvalidAudio",
    "InvalidParameter",
    "InvalidStateTransition",
    "MissingDependency",
    "ModelError",
    "PoolClosed",
    "PoolFailed",
    "PoolNotReady",
    "QueueFull",
    "RemoteTraceback",
    "RequestTimeout",
    "TranscriptionError",
    "Unauthorized",
    "UnknownModel",
    "UploadTimeout",
    "UploadTooLarge",
    "WhisperPoolError",
    "WorkerCrashed",
    "error_class",
    "rebuild",
]
