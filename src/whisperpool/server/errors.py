"""HTTP errors in OpenAI's shape, mapped from whisperpool's exceptions in this one place.

Every error response is ``{"error": {"message", "type", "param", "code"}}``. The classes
live in :mod:`whisperpool.errors` (the one registry); they are re-exported here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..errors import (
    ClientDisconnected,
    ConfigError,
    InvalidAudio,
    InvalidParameter,
    ModelError,
    PoolClosed,
    PoolNotReady,
    QueueFull,
    RequestTimeout,
    TranscriptionError,
    Unauthorized,
    UnknownModel,
    UploadTimeout,
    UploadTooLarge,
    WhisperPoolError,
    WorkerCrashed,
)

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2


@dataclass(frozen=True)
class _Mapping:
    status: int
    type: str
    param: str | None = None
    retry: bool = False
    close: bool = False  # end the connection: the client may still be sending the body


# The one table: exception class -> HTTP status and OpenAI error type. First match wins.
HTTP_ERRORS: tuple[tuple[type[BaseException], _Mapping], ...] = (
    (InvalidParameter, _Mapping(400, "invalid_request_error")),
    (ConfigError, _Mapping(400, "invalid_request_error")),
    (InvalidAudio, _Mapping(400, "invalid_request_error", param="file")),
    (Unauthorized, _Mapping(401, "invalid_request_error")),
    (UnknownModel, _Mapping(404, "invalid_request_error", param="model")),
    (UploadTooLarge, _Mapping(413, "invalid_request_error", param="file")),
    (UploadTimeout, _Mapping(408, "invalid_request_error", close=True)),
    (ClientDisconnected, _Mapping(499, "invalid_request_error")),  # as nginx logs it
    (QueueFull, _Mapping(503, "server_error", retry=True)),
    (PoolNotReady, _Mapping(503, "server_error", retry=True)),  # PoolFailed too
    (PoolClosed, _Mapping(503, "server_error", retry=True)),
    (RequestTimeout, _Mapping(504, "server_error")),
    (WorkerCrashed, _Mapping(500, "server_error")),
    (TranscriptionError, _Mapping(500, "server_error")),
    (ModelError, _Mapping(500, "server_error")),
)


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def to_response(exc: BaseException) -> JSONResponse:
    for cls, m in HTTP_ERRORS:
        if isinstance(exc, cls):
            param = getattr(exc, "param", None) or m.param
            code = getattr(exc, "code", None)
            headers = {"Retry-After": str(RETRY_AFTER_S)} if m.retry else {}
            if m.close:
                headers["Connection"] = "close"
            if isinstance(exc, ClientDisconnected):  # nobody reads this answer: no traceback, no alarm
                log.info("%s", exc)
            return JSONResponse(error_body(str(exc), m.type, param, code), status_code=m.status, headers=headers)
    log.error("unexpected error", exc_info=exc)
    return JSONResponse(error_body("internal server error", "server_error", None, "internal_error"), status_code=500)


async def _on_whisperpool_error(_request: Request, exc: Exception) -> JSONResponse:
    return to_response(exc)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    message = f"invalid parameter {param}: {first.get('msg', 'invalid')}" if param else str(first.get("msg", exc))
    return JSONResponse(error_body(message, "invalid_request_error", param, "invalid_parameter"), status_code=400)


async def _on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    return to_response(exc)


def install(app) -> None:
    app.add_exception_handler(WhisperPoolError, _on_whisperpool_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)


__all__ = [
    "HTTP_ERRORS",
    "ClientDisconnected",
    "InvalidParameter",
    "Unauthorized",
    "UploadTimeout",
    "UploadTooLarge",
    "error_body",
    "install",
    "to_response",
]
