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
names); it is resampled to 16 kHz. A bad event (wrong type or value of any field, bad
base64, JSON nested deeper than 16 levels, NaN) gets an ``error`` event naming the
parameter and the session goes on; only a client that will not speak the protocol at all
is disconnected.

Limits (:class:`~whisperpool.server.settings.StreamLimits`, each with an error naming its
setting): a browser's ``Origin`` must be listed (``--allowed-origin``), else the
handshake is refused; over the session caps the socket is accepted, told why in an
``error`` event (``session_limit``) and closed with 1013 (try again later); audio faster
than ``max_audio_rate`` times real time is dropped with an ``error`` (``rate_limited``);
an append that would hold more than ``max_buffered_s`` is dropped with an ``error``
(``input_audio_buffer_too_large``); a client silent for ``idle_timeout_s`` gets an
``error`` (``idle_timeout``) and a close (1000).

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
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from ..engine import TranscriptionEngine
from ..errors import ConfigError, UnknownModel, WhisperPoolError
from ..streaming import StreamingSession
from ..streaming.realtime import RealtimeEvents
from .auth import authorized
from .limits import AudioBudget, LimitExceeded, check_json_depth, session_slots
from .realtime_config import DEFAULT_RATE, ProtocolError, SessionConfig, updated
from .settings import ServerSettings

log = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 15 * DEFAULT_RATE * 2  # 15 s of 24 kHz pcm16 in one append
MAX_MESSAGE_CHARS = 4 * MAX_CHUNK_BYTES // 3 + 4096
NORMAL_CLOSURE = 1000
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
_ids = itertools.count(1)


def _event_id() -> str:
    return f"event_{next(_ids)}"


def _no_constants(name: str) -> float:
    raise ProtocolError(f"not valid JSON: {name} is not a number JSON allows", "invalid_json")


class RealtimeConnection:
    """One client: reads its events, drives its session, writes the session's events."""

    def __init__(self, websocket: WebSocket, engine: TranscriptionEngine, settings: ServerSettings) -> None:
        self.ws = websocket
        self.engine = engine
        self.settings = settings
        self.limits = settings.streams
        self.budget = AudioBudget(self.limits)
        self.config = SessionConfig(language=engine.options().language)
        self.id = f"sess_{int(time.time() * 1000):x}{next(_ids)}"
        self.session: StreamingSession | None = None
        self.pumps: list[asyncio.Task[None]] = []
        self.events = RealtimeEvents()
        self.send_lock = asyncio.Lock()
        self.event_id: str | None = None  # the client event being handled, for its error

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
        self.event_id = None
        if len(raw) > MAX_MESSAGE_CHARS:
            raise ProtocolError(f"event of {len(raw)} characters is over the limit of {MAX_MESSAGE_CHARS}", "too_large")
        try:
            check_json_depth(raw)
            event = json.loads(raw, parse_constant=_no_constants)
        except LimitExceeded as exc:
            raise ProtocolError(f"not accepted: {exc}", exc.code) from None
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an integer of 4300+ digits
            raise ProtocolError(f"not valid JSON: {exc}", "invalid_json") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise ProtocolError("an event is a JSON object with a string 'type'", "invalid_event", "type")
        if isinstance(event.get("event_id"), str):
            self.event_id = event["event_id"][:128]
        kind = event["type"]
        if kind in ("transcription_session.update", "session.update"):
            await self._update(event, kind)
        elif kind == "input_audio_buffer.append":
            self._append(event)
        elif kind == "input_audio_buffer.commit":
            item = None
            if self.session is not None:
                await self.session.flush()  # the appended audio the VAD is still reading counts
                item = self.session.commit()
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
            raise ProtocolError(f"unknown event type {kind[:64]!r}", "unknown_event", "type")

    def _append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise ProtocolError("input_audio_buffer.append needs 'audio': base64 pcm16", "invalid_value", "audio")
        padding = len(audio) - len(audio.rstrip("="))
        if len(audio) % 4 or padding > 2 or "=" in audio[: len(audio) - padding]:
            raise ProtocolError("'audio' is not valid base64", "invalid_base64", "audio")
        size = len(audio) * 3 // 4 - padding  # its bytes, before decoding
        if size > MAX_CHUNK_BYTES:
            raise ProtocolError(f"an append may carry at most {MAX_CHUNK_BYTES} bytes of audio", "too_large", "audio")
        if size % 2:
            raise ProtocolError("pcm16 audio has an even number of bytes", "invalid_audio", "audio")
        if size <= 0:
            return
        session = self._ensure_session()
        seconds = size / 2 / self.config.rate
        try:  # before decoding: a flood's dropped chunks cost the event loop no base64 work
            self.budget.take(seconds, session.buffered_s)
        except LimitExceeded as exc:
            raise ProtocolError(str(exc), exc.code, "audio") from None
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            self.budget.refund(seconds)  # garbage is refused as such, not counted as audio
            raise ProtocolError("'audio' is not valid base64", "invalid_base64", "audio") from None
        try:
            session.feed(np.frombuffer(data, dtype="<i2"), self.config.rate)
        except WhisperPoolError as exc:
            raise ProtocolError(str(exc), exc.code, "audio") from None

    async def _update(self, event: dict[str, Any], kind: str) -> None:
        new = updated(self.config, event, kind, self.engine)
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
                try:
                    message = await asyncio.wait_for(self.ws.receive(), self.limits.idle_timeout_s)
                except TimeoutError:
                    await self._idle_close()
                    break
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                if raw is None:
                    await self.error(ProtocolError("send events as JSON text frames, not binary", "invalid_event"))
                    continue
                try:
                    await self.handle(raw)
                except ProtocolError as exc:
                    await self.error(exc, self.event_id)
                except (WebSocketDisconnect, asyncio.CancelledError):
                    raise
                except Exception as exc:  # a bug of ours must not end the session
                    log.exception("%s: event failed", self.id)
                    await self.error(ProtocolError(f"the server failed on this event: {exc}", "server_error"))
        except WebSocketDisconnect:
            pass
        finally:
            await self._close()

    async def _idle_close(self) -> None:
        seconds = self.limits.idle_timeout_s
        message = f"idle for {seconds:g} s without a client event (--stream-idle-timeout-s): closing"
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # unless the client left meanwhile
            await self.error(ProtocolError(message, "idle_timeout"))
            await self.ws.close(code=NORMAL_CLOSURE, reason=f"idle for {seconds:g} s")

    async def _close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.clear()  # the client is gone: nothing is left to say
            await session.close()
        for task in self.pumps:
            task.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)


def _origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """A handshake without ``Origin`` is not a browser's; a browser's origin must be listed."""
    if origin is None:
        return True
    return "*" in allowed or origin.rstrip("/") in allowed


async def realtime_endpoint(websocket: WebSocket, engine: TranscriptionEngine, settings: ServerSettings) -> None:
    intent = websocket.query_params.get("intent", "transcription")
    subprotocol = "realtime" if "realtime" in websocket.scope.get("subprotocols", []) else None
    origin = websocket.headers.get("origin")
    if not authorized(websocket, settings.api_key):
        await websocket.close(code=POLICY_VIOLATION, reason="missing or wrong API key")
        return
    if intent != "transcription":
        await websocket.close(code=POLICY_VIOLATION, reason="this server serves ?intent=transcription only")
        return
    if not _origin_allowed(origin, settings.streams.allowed_origins):
        log.warning("realtime: refused a browser WebSocket from origin %r", origin)
        await websocket.close(code=POLICY_VIOLATION, reason=f"origin {origin[:60]!r} is not allowed (--allowed-origin)")
        return
    client = websocket.client.host if websocket.client else "unknown"
    slots = session_slots(engine, settings.streams)
    await websocket.accept(subprotocol=subprotocol)
    try:
        slots.acquire(client)
    except LimitExceeded as exc:
        connection = RealtimeConnection(websocket, engine, settings)
        await connection.error(ProtocolError(str(exc), exc.code))
        await websocket.close(code=TRY_AGAIN_LATER, reason=str(exc)[:120])
        return
    try:
        await RealtimeConnection(websocket, engine, settings).run()
    finally:
        slots.release(client)


__all__ = ["RealtimeConnection", "realtime_endpoint"]
