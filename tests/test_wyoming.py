"""The Wyoming server (Home Assistant's protocol), driven by the wyoming package's own client."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info

from conftest import clip
from test_server import Server, free_port
from whisperpool.audio import load_audio
from whisperpool.wer import normalize

pytestmark = pytest.mark.real_model
RATE = 16_000


@pytest.fixture(scope="module")
def wyoming(tmp_path_factory):
    port = free_port()
    srv = Server(tmp_path_factory.mktemp("wy"), "--workers", "2", "--threads", "1", "--wyoming-port", str(port))
    try:
        srv.wait_ready()
        yield port
    finally:
        srv.stop()


async def _read(client: AsyncTcpClient, timeout: float = 60) -> Event:
    event = await asyncio.wait_for(client.read_event(), timeout)
    assert event is not None, "the server closed the connection"
    return event


async def _utterance(client: AsyncTcpClient, audio: np.ndarray, rate: int = RATE) -> list[Event]:
    """Send one utterance in 100 ms chunks (three times real time); return what comes back."""
    pcm = (audio * 32767).astype("<i2").tobytes()
    await client.write_event(Transcribe(language="en").event())
    await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
    step = rate // 10 * 2
    for i in range(0, len(pcm), step):
        await client.write_event(AudioChunk(rate=rate, width=2, channels=1, audio=pcm[i : i + step]).event())
        await asyncio.sleep(0.1 / 3)
    await client.write_event(AudioStop().event())
    events = []
    for _ in range(200):
        event = await _read(client)
        events.append(event)
        if TranscriptStop.is_type(event.type):
            return events
    raise AssertionError("no transcript-stop")


def test_describe_says_what_the_server_offers(wyoming):
    async def run():
        async with AsyncTcpClient("127.0.0.1", wyoming) as client:
            await client.write_event(Describe().event())
            return Info.from_event(await _read(client))

    info = asyncio.run(run())
    program = info.asr[0]
    assert program.name == "whisperpool" and program.supports_transcript_streaming
    assert program.models[0].name == "base" and "en" in program.models[0].languages


def test_a_streamed_utterance_comes_back_as_chunks_then_the_transcript(wyoming):
    audio = load_audio(clip("groceries"))

    async def run():
        async with AsyncTcpClient("127.0.0.1", wyoming) as client:
            return await _utterance(client, audio)

    events = asyncio.run(asyncio.wait_for(run(), 120))
    types = [e.type for e in events]
    assert types[0] == TranscriptStart(language="en").event().type
    assert types[-2:] == [Transcript(text="").event().type, TranscriptStop().event().type]
    chunks = [TranscriptChunk.from_event(e).text for e in events if TranscriptChunk.is_type(e.type)]
    transcript = Transcript.from_event(events[-2]).text
    assert {"remind", "milk", "bananas", "home"} <= set(normalize(transcript)), transcript
    assert len(chunks) >= 2 and "".join(chunks).strip() == transcript  # streamed before the end


def test_bad_events_get_errors_and_the_connection_goes_on(wyoming):
    async def run():
        async with AsyncTcpClient("127.0.0.1", wyoming) as client:
            codes = []
            bad = [
                AudioChunk(rate=RATE, width=2, channels=1, audio=b"\x00\x00" * 160).event(),  # before audio-start
                AudioStop().event(),
                Event(type="no-such-event"),
            ]
            for event in bad:
                await client.write_event(event)
                codes.append(Error.from_event(await _read(client, 10)).code)
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            assert TranscriptStart.is_type((await _read(client, 10)).type)
            await client.write_event(AudioChunk(rate=RATE, width=1, channels=1, audio=b"\x00" * 160).event())
            codes.append(Error.from_event(await _read(client, 10)).code)
            events = await _utterance(client, load_audio(clip("fox")), rate=RATE)
            return codes, Transcript.from_event(events[-2]).text

    codes, transcript = asyncio.run(asyncio.wait_for(run(), 120))
    assert codes == ["no_audio_start", "no_audio_start", "unknown_event", "invalid_value"]
    assert {"quick", "brown", "fox"} <= set(normalize(transcript))


@pytest.mark.parametrize(
    "name,audio",
    [
        ("digital zero", np.zeros(3 * RATE, np.float32)),
        ("hiss", (np.random.default_rng(3).standard_normal(3 * RATE) * 0.01).astype(np.float32)),
        ("under 0.1 s", np.full(800, 0.1, np.float32)),
    ],
)
def test_an_utterance_without_speech_gives_no_words(wyoming, name, audio):
    async def run():
        async with AsyncTcpClient("127.0.0.1", wyoming) as client:
            return await _utterance(client, audio)

    events = asyncio.run(asyncio.wait_for(run(), 120))
    assert Transcript.from_event(events[-2]).text == "", name
    assert not any(TranscriptChunk.is_type(e.type) for e in events), name
