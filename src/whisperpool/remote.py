"""Transcription on a running whisperpool server: the client behind ``whisperpool transcribe --url``.

Files go as they are (the server decodes them) to the OpenAI-compatible
``/v1/audio/transcriptions`` endpoint (``/v1/audio/translations`` for ``task="translate"``),
with the model to route to and the decoding options as form fields. Answers are the
endpoint's ``verbose_json``; an error answer is raised as the whisperpool exception its
``code`` names, so callers handle a remote failure as they would a local one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from .errors import InvalidAudio, PoolNotReady, WhisperPoolError, error_class, rebuild
from .urls import http_url


class RemoteEngine:
    """A whisperpool (or OpenAI-compatible) server at ``url``, used like the local engine.

    ``model`` picks one of the server's models (``GET /v1/models``; None: its default).
    Use as an async context manager; the connection pool is closed on exit.
    """

    def __init__(
        self, url: str, *, model: str | None = None, api_key: str | None = None, timeout_s: float = 600.0
    ) -> None:
        self.url = http_url(url)
        self.model = model
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
        try:
            with open(path, "rb") as f:
                response = await self._client.post(endpoint, data=fields, files={"file": (Path(path).name, f)})
        except OSError as exc:
            raise InvalidAudio(f"cannot read {path}: {exc.strerror or exc}") from None
        except httpx.TransportError as exc:  # refused, reset, timed out: no answer at all
            raise PoolNotReady(
                f"{path}: no answer from the server at {self.url}: {exc or type(exc).__name__}"
            ) from None
        if response.is_success:
            return response.json()
        raise self._error(response, path)

    @staticmethod
    def _error(response: httpx.Response, path: str | Path) -> WhisperPoolError:
        try:
            error = response.json()["error"]
            message, code = error["message"], error.get("code")
        except (ValueError, KeyError, TypeError):
            message, code = response.text[:200] or response.reason_phrase, None
        cls = error_class(code=code or "") or WhisperPoolError
        return rebuild(cls, f"{path}: the server answered HTTP {response.status_code}: {message}")


__all__ = ["RemoteEngine"]
