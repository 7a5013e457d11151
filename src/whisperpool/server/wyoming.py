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
A bad event (audio before audio-start, a sample width other than 16-bit, an oversized
chunk, an unknown type) gets an ``error`` event and the connection goes on.

``describe`` lists every model the engine serves; ``transcribe``'s ``name`` picks one for
the utterances that follow, routed by the engine as on every face: a name it does not
serve gets an ``error`` event with code ``model_not_found`` and changes nothing. This
module is the one place that turns session events into Wyoming events
(:class:`WyomingEvents`).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

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

log = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 1 << 20  # 1 MiB: about 30 s of 16 kHz 16-bit mono


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
    def __init__(self, reader, writer, *, engine: TranscriptionEngine, info: Info) -> None:
        super().__init__(reader, writer)
        self.engine = engine
        self.info = info
        self.model = engine.resolve_model(None)
        self.language = engine.options(self.model).language
        self.session: StreamingSession | None = None
        self.pump: asyncio.Task[str] | None = None

    async def error(self, text: str, code: str) -> None:
        await self.write_event(Error(text=text, code=code).event())

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._handle(event)
        except WhisperPoolError as exc:
            await self.error(str(exc), exc.code)
        return True

    async def _handle(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.write_event(self.info.event())
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        elif Transcribe.is_type(event.type):
            request = Transcribe.from_event(event)
            model = self.engine.resolve_model(request.name)  # UnknownModel: an error event, nothing changes
            self.model, self.language = model, request.language or self.engine.options(model).language
        elif AudioStart.is_type(event.type):
            await self._drop_session()
            self.session = self.engine.stream(self.language, model=self.model, vad=False)
            await self.write_event(TranscriptStart(language=self.language).event())
            self.pump = asyncio.create_task(self._pump(self.session))
        elif AudioChunk.is_type(event.type):
            self._audio(AudioChunk.from_event(event))
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
            await self.error(f"unknown event type {event.type!r}", "unknown_event")

    def _audio(self, chunk: AudioChunk) -> None:
        if self.session is None:
            raise WhisperPoolError("audio-chunk before audio-start")
        if chunk.width != 2:
            raise WhisperPoolError(f"audio-chunk: only 16-bit PCM (width 2) is supported, got width {chunk.width}")
        if chunk.channels not in (1, 2):
            raise WhisperPoolError(f"audio-chunk: 1 or 2 channels, got {chunk.channels}")
        if len(chunk.audio) > MAX_CHUNK_BYTES:
            raise WhisperPoolError(f"audio-chunk of {len(chunk.audio)} bytes is over {MAX_CHUNK_BYTES}")
        if len(chunk.audio) % (2 * chunk.channels):
            raise WhisperPoolError("audio-chunk: the bytes do not make whole 16-bit frames")
        samples = np.frombuffer(chunk.audio, dtype="<i2").reshape(-1, chunk.channels)
        self.session.feed(samples, chunk.rate)

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


async def start_wyoming(engine: TranscriptionEngine, host: str, port: int) -> AsyncTcpServer:
    """Start serving Wyoming on ``host:port``; stop it with ``await server.stop()``."""
    server = AsyncTcpServer(host, port)
    await server.start(partial(WyomingHandler, engine=engine, info=describe(engine)))
    return server


__all__ = ["WyomingEvents", "WyomingHandler", "describe", "start_wyoming"]
