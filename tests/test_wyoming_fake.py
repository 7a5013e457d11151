"""Wyoming routing on the fake backend: every served model is described and reachable by
``transcribe``'s name; an unknown name is an error event and the connection goes on."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
from wyoming.asr import Transcribe, Transcript, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.info import Describe, Info

from conftest import WAIT, fake_config
from whisperpool import TranscriptionEngine
from whisperpool.server.wyoming import start_wyoming

RATE = 16_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def read(client: AsyncTcpClient):
    event = await asyncio.wait_for(client.read_event(), WAIT)
    assert event is not None, "the server closed the connection"
    return event


def test_wyoming_describes_every_model_routes_by_name_and_refuses_an_unknown_one():
    async def run():
        models = {"second": fake_config(pool_size=1)}
        async with TranscriptionEngine(fake_config(pool_size=1), models=models, name="main") as engine:
            port = free_port()
            server = await start_wyoming(engine, "127.0.0.1", port)
            try:
                async with AsyncTcpClient("127.0.0.1", port) as client:
                    await client.write_event(Describe().event())
                    info = Info.from_event(await read(client))
                    await client.write_event(Transcribe(name="third", language="en").event())
                    error = Error.from_event(await read(client))
                    await client.write_event(Transcribe(name="second", language="en").event())
                    await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
                    started = await read(client)
                    pcm = np.zeros(RATE, "<i2").tobytes()
                    await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=pcm).event())
                    await client.write_event(AudioStop().event())
                    events = [await read(client)]
                    while not TranscriptStop.is_type(events[-1].type) and len(events) < 50:
                        events.append(await read(client))
            finally:
                await server.stop()
            return info, error, started, events, engine.statuses()

    info, error, started, events, statuses = asyncio.run(asyncio.wait_for(run(), 2 * WAIT))
    assert [m.name for m in info.asr[0].models] == ["main", "second"]
    assert "en" in info.asr[0].models[1].languages and "yue" in info.asr[0].models[1].languages
    assert error.code == "model_not_found" and "'third' is not served here" in error.text
    assert TranscriptStart.is_type(started.type) and TranscriptStart.from_event(started).language == "en"
    assert Transcript.is_type(events[-2].type) and TranscriptStop.is_type(events[-1].type)
    assert statuses["second"].requests_completed >= 1  # the utterance went to the model it named
    assert statuses["main"].requests_completed == 0
