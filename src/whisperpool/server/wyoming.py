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

from .. import __version__
from ..engine import TranscriptionEngine
from ..errors import WhisperPoolError
from ..streaming import Final, Partial, StreamError, StreamingSession, appended

log = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 1 << 20  # 1 MiB: about 30 s of 16 kHz 16-bit mono


def _languages() -> list[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return sorted(_LANGUAGE_CODES)


def describe(model_name: str) -> Info:
    attribution = Attribution(name="whisperpool", url="https://github.com/SYSTRAN/faster-whisper")
    model = AsrModel(
        name=model_name,
        description=f"Whisper {model_name} (faster-whisper) on a warm worker pool",
        attribution=Attribution(name="OpenAI", url="https://github.com/openai/whisper"),
        installed=True,
        languages=_languages(),
        version=None,
    )
    program = AsrProgram(
        name="whisperpool",
        description="Low-latency local speech-to-text on warm Whisper workers",
        attribution=attribution,
        installed=True,
        version=__version__,
        models=[model],
        supports_transcript_streaming=True,
    )
    return Info(asr=[program])


class WyomingHandler(AsyncEventHandler):
    def __init__(self, reader, writer, *, engine: TranscriptionEngine, info: Info) -> None:
        super().__init__(reader, writer)
        self.engine = engine
        self.info = info
        self.language = engine.config.decode.language
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
            self.language = request.language or self.engine.config.decode.language
        elif AudioStart.is_type(event.type):
            await self._drop_session()
            options = self.engine.config.decode.replace(language=self.language)
            self.session = StreamingSession(self.engine.pool, options, vad=False)
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
        sent, final = "", ""
        async for event in session:
            if isinstance(event, Partial | Final):
                text = event.stable if isinstance(event, Partial) else event.text
                delta = appended(sent, text)
                if delta:
                    await self.write_event(TranscriptChunk(text=delta).event())
                    sent = text
                if isinstance(event, Final):
                    final = event.text
            elif isinstance(event, StreamError):
                await self.error(event.error.message, event.error.code)
        return final

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


async def start_wyoming(engine: TranscriptionEngine, host: str, port: int, model_name: str) -> AsyncTcpServer:
    """Start serving Wyoming on ``host:port``; stop it with ``await server.stop()``."""
    server = AsyncTcpServer(host, port)
    await server.start(partial(WyomingHandler, engine=engine, info=describe(model_name)))
    return server


__all__ = ["WyomingHandler", "describe", "start_wyoming"]
