"""Wyoming on the fake backend: every served model is described and reachable by
``transcribe``'s name; an unknown name is an error event and the connection goes on.
Bad events are answered and the connection goes on; frames are bounded before they are
read; connections are capped, rate-limited and closed when idle (issue 13)."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import numpy as np
from wyoming.asr import Transcribe, Transcript, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.info import Describe, Info

from conftest import WAIT, fake_config
from whisperpool import TranscriptionEngine
from whisperpool.server.settings import StreamLimits
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


# -- issue 13: bad events, bounded frames, limits ---------------------------------------------
async def _raw(port: int, header: dict, tail: bytes = b"") -> list[Event]:
    """Send one hand-framed event; return what the server says until it closes (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(json.dumps(header).encode() + b"\n" + tail)
        await writer.drain()
        events = []
        for _ in range(10):
            event = await asyncio.wait_for(async_read_event(reader), WAIT)
            if event is None:
                break
            events.append(event)
        return events
    finally:
        writer.close()


def _rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_wyoming_bad_events_get_errors_and_the_connection_still_transcribes():
    chunk = np.zeros(RATE // 2, "<i2").tobytes()
    bad = [  # (event, expected code): every one answered, none ends the connection
        (Event("audio-chunk", {"width": 2, "channels": 1}, chunk), "invalid_value"),  # the probe: no rate
        (Event("audio-chunk", {"rate": "16000", "width": 2, "channels": 1}, chunk), "invalid_value"),
        (Event("audio-chunk", {"rate": RATE, "width": 4, "channels": 1}, chunk), "invalid_value"),
        (Event("audio-chunk", {"rate": RATE, "width": 2, "channels": 0}, chunk), "invalid_value"),
        (Event("audio-chunk", {"rate": RATE, "width": 2, "channels": 1}, b"\x00\x01\x02"), "invalid_audio"),
        (Event("audio-chunk", {"rate": 10**9, "width": 2, "channels": 1}, chunk), "invalid_value"),
        (Event("audio-chunk", {"rate": True, "width": 2, "channels": 1}, chunk), "invalid_value"),
        (Event("transcribe", {"name": 5}), "invalid_value"),
        (Event("transcribe", {"language": ["en"]}), "invalid_value"),
        (Event("audio-stop"), "no_audio_start"),
        (Event("no-such-event"), "unknown_event"),
    ]

    async def run():
        async with TranscriptionEngine(fake_config(pool_size=1)) as engine:
            port = free_port()
            server = await start_wyoming(engine, "127.0.0.1", port)
            try:
                async with AsyncTcpClient("127.0.0.1", port) as client:
                    await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
                    assert TranscriptStart.is_type((await read(client)).type)
                    codes = []
                    for event, _ in bad:
                        if event.type == "audio-stop":
                            continue  # would end the utterance: sent below, outside one
                        await client.write_event(event)
                        codes.append(Error.from_event(await read(client)).code)
                    pcm = np.zeros(RATE, "<i2").tobytes()
                    await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=pcm).event())
                    await client.write_event(AudioStop().event())
                    events = [await read(client)]
                    while not TranscriptStop.is_type(events[-1].type) and len(events) < 50:
                        events.append(await read(client))
                    await client.write_event(AudioStop().event())  # no utterance open now
                    codes.append(Error.from_event(await read(client)).code)
                    await client.write_event(Describe().event())
                    assert Info.is_type((await read(client)).type)  # still talking
            finally:
                await server.stop()
            return codes, events, engine.status()

    codes, events, status = asyncio.run(asyncio.wait_for(run(), 2 * WAIT))
    expected = [code for event, code in bad if event.type != "audio-stop"] + ["no_audio_start"]
    assert codes == expected
    assert Transcript.is_type(events[-2].type) and status.worker_crashes == 0


def test_wyoming_frames_are_bounded_before_they_are_read():
    """The probe: a 300 MiB payload_length is refused without reading (or allocating) it."""

    async def run():
        async with TranscriptionEngine(fake_config(pool_size=1)) as engine:
            port = free_port()
            server = await start_wyoming(engine, "127.0.0.1", port)
            try:
                before = _rss_mib(os.getpid())
                header = {"type": "audio-chunk", "data": {"rate": RATE, "width": 2, "channels": 1}}
                huge = await _raw(port, {**header, "payload_length": 300 << 20}, b"\x00" * 4096)
                grown = _rss_mib(os.getpid()) - before
                data = await _raw(port, {"type": "describe", "data_length": 10 << 20})
                negative = await _raw(port, {"type": "describe", "payload_length": -1})
                deep = await _raw(port, {"type": "describe", "data": json.loads("[" * 200 + "]" * 200)})
                line = await _raw(port, {"type": "describe", "data": {"x": "y" * 100_000}})
            finally:
                await server.stop()
            return huge, grown, data, negative, deep, line

    huge, grown, data, negative, deep, line = asyncio.run(asyncio.wait_for(run(), 2 * WAIT))
    for events, code in ((huge, "too_large"), (data, "too_large"), (negative, "invalid_event"), (line, "too_large")):
        assert len(events) == 1 and Error.from_event(events[0]).code == code  # then closed
    assert "payload_length of 314572800 bytes is over the limit" in Error.from_event(huge[0]).text
    assert Error.from_event(deep[0]).code in ("too_deep", "invalid_event")
    assert grown < 50  # MiB; the package's reader took 600


def test_wyoming_connections_are_capped_and_idle_ones_closed():
    async def run():
        async with TranscriptionEngine(fake_config(pool_size=1)) as engine:
            port = free_port()
            limits = StreamLimits(max_sessions=1, idle_timeout_s=0.5)
            server = await start_wyoming(engine, "127.0.0.1", port, limits=limits)
            try:
                async with AsyncTcpClient("127.0.0.1", port) as first:
                    await first.write_event(Describe().event())
                    await read(first)
                    async with AsyncTcpClient("127.0.0.1", port) as second:
                        refused = Error.from_event(await read(second))
                        assert await asyncio.wait_for(second.read_event(), WAIT) is None  # closed
                    idle = Error.from_event(await read(first))  # nothing sent for 0.5 s
                    assert await asyncio.wait_for(first.read_event(), WAIT) is None
            finally:
                await server.stop()
            return refused, idle

    refused, idle = asyncio.run(asyncio.wait_for(run(), 2 * WAIT))
    assert refused.code == "session_limit" and "--stream-max-sessions" in refused.text
    assert idle.code == "idle_timeout"


def test_wyoming_audio_faster_than_the_rate_is_dropped_with_errors():
    """The probe (shortened): minutes of chunks in a moment; memory and the buffer stay bounded."""

    async def run():
        async with TranscriptionEngine(fake_config(pool_size=1)) as engine:
            port = free_port()
            limits = StreamLimits(audio_burst_s=4.0, max_buffered_s=6.0)
            server = await start_wyoming(engine, "127.0.0.1", port, limits=limits)
            errors: list[str] = []
            try:
                async with AsyncTcpClient("127.0.0.1", port) as client:
                    await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
                    await read(client)
                    pcm = np.zeros(RATE * 2, "<i2").tobytes()
                    for _ in range(90):  # 3 minutes of audio
                        await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=pcm).event())
                    await client.write_event(AudioStop().event())
                    for _ in range(200):  # bounded: errors, then the transcript
                        event = await read(client)
                        if Error.is_type(event.type):
                            errors.append(Error.from_event(event).code)
                        if TranscriptStop.is_type(event.type):
                            break
            finally:
                await server.stop()
            return errors

    errors = asyncio.run(asyncio.wait_for(run(), 2 * WAIT))
    assert len(errors) >= 86 and set(errors) <= {"rate_limited", "input_audio_buffer_too_large"}
