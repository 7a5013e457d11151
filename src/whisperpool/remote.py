"""Transcription on a running whisperpool server: the client behind ``whisperpool transcribe --url``.

Files go as they are (the server decodes them) to the OpenAI-compatible
``/v1/audio/transcriptions`` endpoint (``/v1/audio/translations`` for ``task="translate"``),
with the model to route to and the decoding options as form fields. Answers are the
endpoint's ``verbose_json``; an error answer is raised as the whisperpool exception its
``code`` names, so callers handle a remote failure as they would a local one.

A transcription changes nothing on the server, so it is sent again (up to ``retries``
times) when no answer came or the answer says to try later: a lost connection, 502, 503
(waiting ``Retry-After``, at most ``MAX_RETRY_WAIT_S``), 504, or a 500 that is not the
server's own error (a proxy's, such as Ray Serve's when the replica holding the request
died). Errors about the request itself (4xx, a 500 naming its cause) are not retried.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from .errors import InvalidAudio, PoolNotReady, WhisperPoolError, error_class, rebuild
from .urls import http_url

RETRY_STATUSES = (500, 502, 503, 504)
MAX_RETRY_WAIT_S = 10.0  # the longest Retry-After honoured between two tries
RETRY_WAIT_S = 0.5  # the wait before the first retry when the answer names none; doubles


class RemoteEngine:
    """A whisperpool (or OpenAI-compatible) server at ``url``, used like the local engine.

    ``model`` picks one of the server's models (``GET /v1/models``; None: its default).
    ``retries``: how many times a request is sent again when the server (or a proxy in
    front of it) could not answer it (see the module docstring).
    Use as an async context manager; the connection pool is closed on exit.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        retries: int = 2,
    ) -> None:
        self.url = http_url(url)
        self.model = model
        self.retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout_s)

    async def __aenter__(self) -> RemoteEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()

    async def transcribe(
        self,
        path: str | Path,
        *,
        language: str | None = None,
        task: str = "transcribe",
        prompt: str | None = None,
        word_timestamps: bool = False,
        window: str | None = None,
    ) -> dict[str, Any]:
        """The server's ``verbose_json`` for the file at ``path``."""
        fields: dict[str, Any] = {"response_format": "verbose_json"}
        if self.model:
            fields["model"] = self.model
        for name, value in (("language", language), ("prompt", prompt), ("window", window)):
            if value:
                fields[name] = value
        if word_timestamps:
            fields["timestamp_granularities[]"] = ["segment", "word"]
        endpoint = "/v1/audio/translations" if task == "translate" else "/v1/audio/transcriptions"
        wait = RETRY_WAIT_S
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                with open(path, "rb") as f:
                    response = await self._client.post(endpoint, data=fields, files={"file": (Path(path).name, f)})
            except OSError as exc:
                raise InvalidAudio(f"cannot read {path}: {exc.strerror or exc}") from None
            except httpx.TransportError as exc:  # refused, reset, timed out: no answer at all
                if last:
                    raise PoolNotReady(
                        f"{path}: no answer from the server at {self.url}: {exc or type(exc).__name__}"
                    ) from None
            else:
                if response.is_success:
                    return response.json()
                if last or not _worth_retrying(response):
                    raise self._error(response, path)
                wait = _retry_after(response) or wait
            await asyncio.sleep(min(wait, MAX_RETRY_WAIT_S))
            wait *= 2
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def _error(response: httpx.Response, path: str | Path) -> WhisperPoolError:
        try:
            error = response.json()["error"]
            message, code = error["message"], error.get("code")
        except (ValueError, KeyError, TypeError):
            message, code = response.text[:200] or response.reason_phrase, None
        cls = error_class(code=code or "") or WhisperPoolError
        return rebuild(cls, f"{path}: the server answered HTTP {response.status_code}: {message}")


def _worth_retrying(response: httpx.Response) -> bool:
    """A status that says "not now" rather than "not this request"."""
    if response.status_code not in RETRY_STATUSES:
        return False
    if response.status_code != 500:
        return True
    try:  # the server's own 500 names its cause; a proxy's does not
        return not response.json()["error"].get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        return True


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


__all__ = ["RemoteEngine"]
