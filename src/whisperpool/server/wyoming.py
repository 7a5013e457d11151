"""The Wyoming protocol (Home Assistant's local voice pipeline) on a TCP port.

``whisperpool serve --wyoming-port 10300`` runs it beside the HTTP API on the same
warm pool; ``whisperpool wyoming`` runs it alone. Framing is the ``wyoming`` package's.

::

    describe                                   -> info (asr program, model, languages,
                                                  supports_transcript_streaming)
    transcribe, audio-start, audio-chunk*, audio-stop
                                               -> transcript-start, transcript-chunk*,
                                                  transcript, transcript-stop

Each audio-start .. audio-stop is one utterance (Home Assistant runs its own VAD): a
:class:`~whisperpool.streaming.StreamingSession` without VAD transcribes it as it
arrives, committed words go out as transcript chunks, and audio-stop commits the rest.
A bad event (audio before audio-start, a chunk without ``rate``/``width``/``channels``, a
sample width other than 16-bit, an unknown type) gets an ``error`` event and the
connection goes on. Events are read by :func:`read_event`, which checks the header's
``data_length`` and ``payload_length`` against limits *before* reading them (the
``wyoming`` package's reader takes whatever length a client declares): a header that
is not JSON, too deep, or declares too much gets an ``error`` event and the connection is
closed, since the stream cannot be resynchronised. Each connection is a stream under
:class:`~whisperpool.server.settings.StreamLimits`: the session caps (one count with
Realtime), the audio rate, the buffered audio and the idle timeout.

Security: the Wyoming protocol has no authentication. It binds ``wyoming_host``
(127.0.0.1 unless told otherwise); with an API key set, a non-loopback address is refused
unless ``--wyoming-insecure`` says so. Reach it from elsewhere through an SSH tunnel, a
firewall that admits only the Home Assistant host, or a TLS proxy that checks client
certificates.

``describe`` lists every model the engine serves; ``transcribe``'s ``name`` picks one for
the utterances that follow, routed by the engine as on every face: a name it does not
serve gets an ``error`` event with code ``model_not_found`` and changes nothing. This
module is the one place that turns session events into Wyoming events
(:class:`WyomingEvents`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from functools import partial
from typing import Any

import numpy as np
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler, AsyncTcpServer

from .._version import __version__
from ..engine import TranscriptionEngine
from ..errors import WhisperPoolError
from ..languages import WHISPER_LANGUAGES
from ..streaming import Final, Partial, StreamError, StreamEvent, StreamingSession, appended
from .limits import AudioBudget, LimitExceeded, check_json_depth, session_slots
from .settings import StreamLimits

log = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 1 << 20  # 1 MiB: about 30 s of 16 kHz 16-bit mono
MAX_DATA_BYTES = 1 << 16  # an event's JSON data
MAX_HEADER_BYTES = 1 << 16  # the header line (asyncio's stream reader limit)
LINGER_S, LINGER_BYTES = 1.0, 8 << 20  # after a fatal error: what is read and dropped before closing


class BadEvent(Exception):
    """An event the connection answers with an ``error`` event (from :func:`read_event`:
    a frame that cannot be read, after which the connection is closed)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadEvent(f"{key} must be a whole number of bytes, got {value!r}", "invalid_event")
    if value > limit:
        raise BadEvent(f"{key} of {value} bytes is over the limit of {limit}", "too_large")
    return value


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        check_json_depth(raw)
        value = json.loads(raw)
    except LimitExceeded as exc:
        raise BadEvent(f"{what}: {exc}", exc.code) from None
    except (ValueError, RecursionError) as exc:
        raise BadEvent(f"{what} is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(value, dict):
        raise BadEvent(f"{what} must be a JSON object", "invalid_event")
    return value


async def read_event(reader: asyncio.StreamReader, max_payload: int = MAX_CHUNK_BYTES) -> Event | None:
    """The next event, framed as the ``wyoming`` package frames it (a JSON header line,
    then ``data_length`` bytes of JSON data, then ``payload_length`` bytes of payload),
    with every length checked before it is read. None at the end of the stream; raises
    :class:`BadEvent` for a frame that cannot be read."""
    try:
        line = await reader.readline()
    except ValueError:  # asyncio's LimitOverrunError: no newline within the reader's limit
        raise BadEvent(f"an event header is one JSON line of at most {MAX_HEADER_BYTES} bytes", "too_large") from None
    if not line:
        return None
    header = _json_object(line, "the event header")
    kind = header.get("type")
    if not isinstance(kind, str):
        raise BadEvent("an event header needs a string 'type'", "invalid_event")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise BadEvent("an event's 'data' must be an object", "invalid_event")
    data_length = _length(header, "data_length", MAX_DATA_BYTES)
    payload_length = _length(header, "payload_length", max_payload)
    try:
        if data_length:
            data = {**data, **_json_object(await reader.readexactly(data_length), "the event data")}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None  # the client left mid-event
    return Event(type=kind, data=data, payload=payload)


def describe(engine: TranscriptionEngine) -> Info:
    """What this server offers: one ASR program with every served model, the default first."""
    attribution = Attribution(name="whisperpool", url="https://github.com/SYSTRAN/faster-whisper")
    models = [
        AsrModel(
            name=name,
            description=f"Whisper {name} (faster-whisper) on a warm worker pool",
            attribution=Attribution(name="OpenAI", url="https://github.com/openai/whisper"),
            installed=True,
            languages=sorted(WHISPER_LANGUAGES),
            version=None,
        )
        for name in engine.served_models
    ]
    program = AsrProgram(
        name="whisperpool",
        description="Low-latency local speech-to-text on warm Whisper workers",
        attribution=attribution,
        installed=True,
        version=__version__,
        models=models,
        supports_transcript_streaming=True,
    )
    return Info(asr=[program])


class WyomingEvents:
    """One utterance's session events as Wyoming events: committed words as transcript chunks."""

    def __init__(self) -> None:
        self.sent = ""
        self.final = ""

    def translate(self, event: StreamEvent) -> list[Event]:
        if isinstance(event, StreamError):
            return [Error(text=event.error.message, code=event.error.code).event()]
        if not isinstance(event, Partial | Final):
            return []  # speech started / stopped: Home Assistant runs its own VAD
        text = event.stable if isinstance(event, Partial) else event.text
        if isinstance(event, Final):
            self.final = event.text
        delta = appended(self.sent, text)
        if not delta:
            return []
        self.sent = text
        return [TranscriptChunk(text=delta).event()]


class WyomingHandler(AsyncEventHandler):
    def __init__(
        self, reader, writer, *, engine: TranscriptionEngine, info: Info, limits: StreamLimits | None = None
    ) -> None:
        super().__init__(reader, writer)
        self.engine = engine
        self.info = info
        self.limits = limits or StreamLimits()
        self.budget = AudioBudget(self.limits)
        peer = writer.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        self.model = engine.resolve_model(None)
        self.language = engine.options(self.model).language
        self.session: StreamingSession | None = None
        self.pump: asyncio.Task[str] | None = None

    async def error(self, text: str, code: str) -> None:
        try:
            await self.write_event(Error(text=text, code=code).event())
        except (ConnectionError, OSError):  # the client left: nobody to tell
            log.debug("wyoming: %s left before its error %r", self.client, code)

    async def run(self) -> None:
        """Read events (bounded, see :func:`read_event`) until the client leaves, goes
        idle for ``idle_timeout_s``, or sends a frame that cannot be read."""
        self._is_running = True
        slots = session_slots(self.engine, self.limits)
        acquired = False
        try:
            slots.acquire(self.client)
            acquired = True
            while self._is_running:
                try:
                    event = await asyncio.wait_for(read_event(self.reader), self.limits.idle_timeout_s)
                except TimeoutError:
                    seconds = self.limits.idle_timeout_s
                    await self.error(
                        f"idle for {seconds:g} s without an event (--stream-idle-timeout-s): closing", "idle_timeout"
                    )
                    break
                if event is None or not await self.handle_event(event):
                    break
        except LimitExceeded as exc:  # over the session caps
            await self.error(str(exc), exc.code)
        except BadEvent as exc:  # a frame that cannot be read: say why, then close
            await self.error(str(exc), exc.code)
            await self._linger()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if acquired:
                slots.release(self.client)
            await self.disconnect()
            self.writer.close()

    async def _linger(self) -> None:
        """After a fatal error, let the client read it: end our side, then discard what it
        still sends (at most ``LINGER_BYTES``, for ``LINGER_S``) before closing, so the
        close does not reset the connection under the error (a lingering close)."""
        loop = asyncio.get_running_loop()
        deadline, discarded = loop.time() + LINGER_S, 0
        with contextlib.suppress(Exception):
            if self.writer.can_write_eof():
                self.writer.write_eof()
            while discarded < LINGER_BYTES and (left := deadline - loop.time()) > 0:
                data = await asyncio.wait_for(self.reader.read(1 << 16), left)
                if not data:
                    break
                discarded += len(data)

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._handle(event)
        except (WhisperPoolError, BadEvent) as exc:
            await self.error(str(exc), exc.code)
        except LimitExceeded as exc:
            await self.error(str(exc), exc.code)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug of ours must not end the connection
            log.exception("wyoming: event %r failed", event.type)
            await self.error(f"the server failed on this event: {exc}", "server_error")
        return True

    async def _handle(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.write_event(self.info.event())
        elif Ping.is_type(event.type):
            text = event.data.get("text")
            await self.write_event(Pong(text=text if isinstance(text, str) else None).event())
        elif Transcribe.is_type(event.type):
            name, language = _text(event.data, "name"), _text(event.data, "language")
            model = self.engine.resolve_model(name)  # UnknownModel: an error event, nothing changes
            self.model, self.language = model, language or self.engine.options(model).language
        elif AudioStart.is_type(event.type):
            await self._drop_session()
            self.session = self.engine.stream(self.language, model=self.model, vad=False)
            await self.write_event(TranscriptStart(language=self.language).event())
            self.pump = asyncio.create_task(self._pump(self.session))
        elif AudioChunk.is_type(event.type):
            self._audio(event)
        elif AudioStop.is_type(event.type):
            if self.session is None or self.pump is None:
                await self.error("audio-stop without audio-start", "no_audio_start")
                return
            self.session.commit()
            await self.session.close()
            text = await self.pump
            self.session = self.pump = None
            await self.write_event(Transcript(text=text, language=self.language).event())
            await self.write_event(TranscriptStop().event())
        else:
            await self.error(f"unknown event type {event.type[:64]!r}", "unknown_event")

    def _audio(self, event: Event) -> None:
        if self.session is None:
            raise BadEvent("audio-chunk before audio-start", "no_audio_start")
        rate, width, channels = (_whole(event.data, key) for key in ("rate", "width", "channels"))
        audio = event.payload or b""
        if width != 2:
            raise BadEvent(f"audio-chunk: only 16-bit PCM (width 2) is supported, got width {width}", "invalid_value")
        if channels not in (1, 2):
            raise BadEvent(f"audio-chunk: 1 or 2 channels, got {channels}", "invalid_value")
        if len(audio) % (2 * channels):
            raise BadEvent("audio-chunk: the bytes do not make whole 16-bit frames", "invalid_audio")
        if not 8_000 <= rate <= 192_000:
            raise BadEvent(f"audio-chunk: rate must be 8000-192000 Hz, got {rate}", "invalid_value")
        if not audio:
            return
        samples = np.frombuffer(audio, dtype="<i2").reshape(-1, channels)
        self.budget.take(samples.shape[0] / rate, self.session.buffered_s)
        self.session.feed(samples, rate)

    async def _pump(self, session: StreamingSession) -> str:
        """Send committed words as transcript chunks; return the final text."""
        events = WyomingEvents()
        async for event in session:
            for message in events.translate(event):
                await self.write_event(message)
        return events.final

    async def _drop_session(self) -> None:
        session, pump = self.session, self.pump
        self.session = self.pump = None
        if session is not None:
            session.clear()
            await session.close()
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    async def disconnect(self) -> None:
        await self._drop_session()


def _whole(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadEvent(f"audio-chunk needs {key!r}, a whole number, got {value!r}", "invalid_value")
    return value


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise BadEvent(f"transcribe: {key!r} must be a string, got {value!r}", "invalid_value")
    return value or None


async def start_wyoming(
    engine: TranscriptionEngine, host: str, port: int, *, limits: StreamLimits | None = None
) -> AsyncTcpServer:
    """Start serving Wyoming on ``host:port``; stop it with ``await server.stop()``.

    ``limits`` bound each connection (:class:`StreamLimits`'s defaults if None).
    """
    server = AsyncTcpServer(host, port)
    await server.start(partial(WyomingHandler, engine=engine, info=describe(engine), limits=limits))
    return server


__all__ = ["BadEvent", "WyomingEvents", "WyomingHandler", "describe", "read_event", "start_wyoming"]
