"""OpenAI's Realtime transcription protocol: ``WS /v1/realtime?intent=transcription``.

One WebSocket is one :class:`~whisperpool.streaming.StreamingSession`. What is spoken:

client -> server
    ``transcription_session.update`` (beta) or ``session.update`` with
    ``session.type = "transcription"`` (GA): audio format and rate, language, prompt,
    ``turn_detection`` (``server_vad``, the default, or ``null``: the client commits)
    ``input_audio_buffer.append`` ``{"audio": base64 pcm16 mono}``
    ``input_audio_buffer.commit``, ``input_audio_buffer.clear``
server -> client
    ``transcription_session.created`` / ``.updated`` (``session.updated`` for GA updates)
    ``input_audio_buffer.speech_started`` / ``.speech_stopped`` / ``.committed`` / ``.cleared``
    ``conversation.item.input_audio_transcription.delta`` - committed words, append-only
    ``conversation.item.input_audio_transcription.completed`` - the utterance's transcript
    ``conversation.item.input_audio_transcription.failed``, ``error`` (OpenAI's shape)

Audio is pcm16 little-endian mono at 24 kHz unless the session declares another rate
(``audio.input.format.rate``, or ``input_audio_format: "pcm16_16000"``-style beta
names); it is resampled to 16 kHz. A bad event gets an ``error`` event naming it and the
session goes on; only a client that will not speak the protocol at all is disconnected.

The transcription ``model`` is routed by the engine (:meth:`TranscriptionEngine.resolve_model`):
a served name, ``whisper-1`` or none picks a model; any other name gets an ``error`` event
with code ``model_not_found`` and the session keeps its settings. Session events become
server events in :mod:`whisperpool.streaming.realtime`, the one mapping.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from ..engine import OPENAI_ALIAS, TranscriptionEngine
from ..errors import ConfigError, UnknownModel, WhisperPoolError
from ..streaming import StreamingSession
from ..streaming.realtime import RealtimeEvents
from .auth import authorized
from .settings import ServerSettings

log = logging.getLogger(__name__)

DEFAULT_RATE = 24_000
RATES = (8_000, 16_000, 24_000, 44_100, 48_000)
MAX_CHUNK_BYTES = 15 * 24_000 * 2  # 15 s of 24 kHz pcm16 in one append
MAX_MESSAGE_CHARS = 4 * MAX_CHUNK_BYTES // 3 + 4096
POLICY_VIOLATION = 1008
_ids = itertools.count(1)


def _event_id() -> str:
    return f"event_{next(_ids)}"


@dataclass
class _Config:
    """A session's effective configuration, as the protocol shows it."""

    rate: int = DEFAULT_RATE
    language: str | None = None
    prompt: str | None = None
    model: str = OPENAI_ALIAS
    vad: bool = True
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    include: list[str] = field(default_factory=list)

    def turn_detection(self) -> dict[str, Any] | None:
        if not self.vad:
            return None
        return {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
        }

    def beta(self, session_id: str) -> dict[str, Any]:
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "input_audio_format": "pcm16" if self.rate == DEFAULT_RATE else f"pcm16_{self.rate}",
            "input_audio_transcription": {"model": self.model, "language": self.language, "prompt": self.prompt or ""},
            "turn_detection": self.turn_detection(),
            "input_audio_noise_reduction": None,
            "include": self.include,
        }

    def ga(self, session_id: str) -> dict[str, Any]:
        return {
            "id": session_id,
            "object": "realtime.session",
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": self.rate},
                    "transcription": {"model": self.model, "language": self.language, "prompt": self.prompt or ""},
                    "turn_detection": self.turn_detection(),
                    "noise_reduction": None,
                }
            },
            "include": self.include,
        }


class ProtocolError(Exception):
    def __init__(self, message: str, code: str = "invalid_request", param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.param = code, param


class RealtimeConnection:
    """One client: reads its events, drives its session, writes the session's events."""

    def __init__(self, websocket: WebSocket, engine: TranscriptionEngine, settings: ServerSettings) -> None:
        self.ws = websocket
        self.engine = engine
        self.settings = settings
        self.config = _Config(language=engine.options().language)
        self.id = f"sess_{int(time.time() * 1000):x}{next(_ids)}"
        self.session: StreamingSession | None = None
        self.pumps: list[asyncio.Task[None]] = []
        self.events = RealtimeEvents()
        self.send_lock = asyncio.Lock()

    async def send(self, event: dict[str, Any]) -> None:
        event = {"event_id": _event_id(), **event}
        async with self.send_lock:
            await self.ws.send_text(json.dumps(event, ensure_ascii=False))

    async def error(self, exc: ProtocolError, event_id: str | None = None) -> None:
        await self.send(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": exc.code,
                    "message": str(exc),
                    "param": exc.param,
                    "event_id": event_id,
                },
            }
        )

    # -- the session ---------------------------------------------------------------------
    def _ensure_session(self) -> StreamingSession:
        if self.session is None:
            changes: dict[str, Any] = {"language": self.config.language}
            if self.config.prompt:
                changes["initial_prompt"] = self.config.prompt
            try:
                options = self.engine.options(self.config.model, **changes)
                self.session = self.engine.stream(
                    model=self.config.model,
                    options=options,
                    vad=self.config.vad,
                    vad_threshold=self.config.threshold,
                    min_silence_s=self.config.silence_duration_ms / 1000,
                )
            except ConfigError as exc:
                raise ProtocolError(str(exc), "invalid_value", "session.input_audio_transcription.language") from None
            except UnknownModel as exc:  # checked at session.update already; kept for safety
                raise ProtocolError(str(exc), exc.code, "session.input_audio_transcription.model") from None
            self.pumps.append(asyncio.create_task(self._pump(self.session)))
        return self.session

    async def _end_session(self) -> None:
        """Flush the current session (its last final is sent) before a new one starts."""
        if self.session is not None:
            session, self.session = self.session, None
            await session.close()

    async def _pump(self, session: StreamingSession) -> None:
        async for event in session:
            for message in self.events.translate(event):
                await self.send(message)

    # -- client events -------------------------------------------------------------------
    async def handle(self, raw: str) -> None:
        if len(raw) > MAX_MESSAGE_CHARS:
            raise ProtocolError(f"event of {len(raw)} characters is over the limit of {MAX_MESSAGE_CHARS}", "too_large")
        try:
            event = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"not valid JSON: {exc}", "invalid_json") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise ProtocolError("an event is a JSON object with a string 'type'", "invalid_event", "type")
        kind = event["type"]
        if kind in ("transcription_session.update", "session.update"):
            await self._update(event, kind)
        elif kind == "input_audio_buffer.append":
            self._append(event)
        elif kind == "input_audio_buffer.commit":
            item = self.session.commit() if self.session is not None else None
            if item is None:
                raise ProtocolError(
                    "buffer too small: no audio was appended since the last commit", "input_audio_buffer_commit_empty"
                )
            await self.send(self.events.committed(item))
        elif kind == "input_audio_buffer.clear":
            if self.session is not None:
                self.session.clear()
            await self.send({"type": "input_audio_buffer.cleared"})
        else:
            raise ProtocolError(f"unknown event type {kind!r}", "unknown_event", "type")

    def _append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise ProtocolError("input_audio_buffer.append needs 'audio': base64 pcm16", "invalid_value", "audio")
        if len(audio) > 4 * (MAX_CHUNK_BYTES // 3 + 1):  # before decoding it
            raise ProtocolError(f"an append may carry at most {MAX_CHUNK_BYTES} bytes of audio", "too_large", "audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("'audio' is not valid base64", "invalid_base64", "audio") from None
        if len(data) > MAX_CHUNK_BYTES:
            raise ProtocolError(f"an append may carry at most {MAX_CHUNK_BYTES} bytes of audio", "too_large", "audio")
        if len(data) % 2:
            raise ProtocolError("pcm16 audio has an even number of bytes", "invalid_audio", "audio")
        if not data:
            return
        samples = np.frombuffer(data, dtype="<i2")
        try:
            self._ensure_session().feed(samples, self.config.rate)
        except WhisperPoolError as exc:
            raise ProtocolError(str(exc), "invalid_audio", "audio") from None

    async def _update(self, event: dict[str, Any], kind: str) -> None:
        session = event.get("session")
        if not isinstance(session, dict):
            raise ProtocolError(f"{kind} needs a 'session' object", "invalid_value", "session")
        new = _Config(**{k: getattr(self.config, k) for k in self.config.__dataclass_fields__})
        if kind == "session.update":
            if session.get("type", "transcription") != "transcription":
                raise ProtocolError(
                    "this server transcribes only: session.type must be 'transcription'",
                    "invalid_value",
                    "session.type",
                )
            audio_in = (session.get("audio") or {}).get("input") or {}
            fmt = audio_in.get("format") or {}
            if fmt:
                if fmt.get("type", "audio/pcm") != "audio/pcm":
                    raise ProtocolError(
                        "only audio/pcm input is supported", "invalid_value", "session.audio.input.format"
                    )
                new.rate = _rate(fmt.get("rate", new.rate), "session.audio.input.format.rate")
            transcription = audio_in.get("transcription") or {}
            model_param = "session.audio.input.transcription.model"
            has_turns = "turn_detection" in audio_in
            turns = audio_in.get("turn_detection")
        else:
            fmt_name = session.get("input_audio_format")
            if fmt_name is not None:
                new.rate = _beta_rate(fmt_name)
            transcription = session.get("input_audio_transcription") or {}
            model_param = "session.input_audio_transcription.model"
            has_turns = "turn_detection" in session
            turns = session.get("turn_detection")
        if "language" in transcription:
            language = transcription["language"]
            if language is not None and (not isinstance(language, str) or not language.isalpha()):
                raise ProtocolError(
                    f"language must be a code such as 'en', got {language!r}", "invalid_value", "language"
                )
            new.language = language.lower() if language else None
        if "prompt" in transcription:
            new.prompt = transcription["prompt"] or None
        if transcription.get("model"):
            new.model = str(transcription["model"])
            try:
                self.engine.resolve_model(new.model)
            except UnknownModel as exc:
                raise ProtocolError(str(exc), exc.code, model_param) from None
        if has_turns:
            if turns is None:
                new.vad = False
            elif isinstance(turns, dict) and turns.get("type", "server_vad") == "server_vad":
                new.vad = True
                new.threshold = float(turns.get("threshold", new.threshold))
                new.prefix_padding_ms = int(turns.get("prefix_padding_ms", new.prefix_padding_ms))
                new.silence_duration_ms = int(turns.get("silence_duration_ms", new.silence_duration_ms))
                if not 0.0 < new.threshold < 1.0 or not 0 < new.silence_duration_ms <= 10_000:
                    raise ProtocolError(
                        "turn_detection: threshold in (0, 1), silence_duration_ms in (0, 10000]",
                        "invalid_value",
                        "turn_detection",
                    )
            else:
                raise ProtocolError("turn_detection must be server_vad or null", "invalid_value", "turn_detection")
        if "include" in session and isinstance(session["include"], list):
            new.include = [str(x) for x in session["include"]]
        if new != self.config:
            await self._end_session()  # what was said keeps its settings; the next audio gets the new ones
            self.config = new
        if kind == "session.update":
            await self.send({"type": "session.updated", "session": self.config.ga(self.id)})
        else:
            await self.send({"type": "transcription_session.updated", "session": self.config.beta(self.id)})

    # -- the connection ------------------------------------------------------------------
    async def run(self) -> None:
        await self.send({"type": "transcription_session.created", "session": self.config.beta(self.id)})
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                if raw is None:
                    await self.error(ProtocolError("send events as JSON text frames, not binary", "invalid_event"))
                    continue
                try:
                    await self.handle(raw)
                except ProtocolError as exc:
                    event_id = None
                    with contextlib.suppress(Exception):
                        event_id = json.loads(raw).get("event_id")
                    await self.error(exc, event_id)
        except WebSocketDisconnect:
            pass
        finally:
            await self._close()

    async def _close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.clear()  # the client is gone: nothing is left to say
            await session.close()
        for task in self.pumps:
            task.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)


def _rate(value: Any, param: str) -> int:
    if not isinstance(value, int) or value not in RATES:
        raise ProtocolError(f"rate must be one of {', '.join(map(str, RATES))}, got {value!r}", "invalid_value", param)
    return value


def _beta_rate(name: Any) -> int:
    if name == "pcm16":
        return DEFAULT_RATE
    if isinstance(name, str) and name.startswith("pcm16_") and name[6:].isdigit():
        return _rate(int(name[6:]), "input_audio_format")
    raise ProtocolError(
        f"input_audio_format must be pcm16 (or pcm16_RATE), got {name!r}", "invalid_value", "input_audio_format"
    )


async def realtime_endpoint(websocket: WebSocket, engine: TranscriptionEngine, settings: ServerSettings) -> None:
    intent = websocket.query_params.get("intent", "transcription")
    subprotocol = "realtime" if "realtime" in websocket.scope.get("subprotocols", []) else None
    if not authorized(websocket, settings.api_key):
        await websocket.close(code=POLICY_VIOLATION, reason="missing or wrong API key")
        return
    if intent != "transcription":
        await websocket.close(code=POLICY_VIOLATION, reason="this server serves ?intent=transcription only")
        return
    await websocket.accept(subprotocol=subprotocol)
    await RealtimeConnection(websocket, engine, settings).run()


__all__ = ["RealtimeConnection", "realtime_endpoint"]
