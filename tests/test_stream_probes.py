"""The issue 13 probes against a real server: uvicorn in a subprocess on a loopback port,
HTTP, Realtime and Wyoming on one fake-backend worker, as ``whisperpool serve`` runs them.

A 30-minute Realtime flood with ``turn_detection: null`` is limited in bounded time while
REST requests stay fast; a noise flood does not slow ``/health/live``; Wyoming refuses a
300 MiB ``payload_length`` without reading it and drops 66 minutes of chunks sent at once,
with the server's memory bounded. Latencies are compared loosely with an idle baseline
taken in the same test: the machine is shared and noisy.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import wave

import httpx
import numpy as np
import pytest
from wyoming.asr import TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import async_read_event

from conftest import WAIT, wait_for

SERVER = r"""
import sys
import uvicorn
from whisperpool import PoolConfig
from whisperpool.server import ServerSettings, create_app
port, wyoming_port = int(sys.argv[1]), int(sys.argv[2])
pool = PoolConfig(backend="fake", pool_size=1, express_workers=0, warmup_timeout_s=20.0, stop_timeout_s=2.0)
settings = ServerSettings(port=port, wyoming_port=wyoming_port, pool=pool, grace_s=2.0)
uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
"""
COMPLETED = "conversation.item.input_audio_transcription.completed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def wav(seconds: float = 1.0) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(np.zeros(round(seconds * 16_000), "<i2").tobytes())
    return buf.getvalue()


class Server:
    def __init__(self) -> None:
        self.port, self.wyoming_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.port), str(self.wyoming_port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=WAIT)
        return out


@pytest.fixture(scope="module")
def server():
    srv = Server()
    try:
        assert wait_for(srv.ready, 2 * WAIT), "the server did not become ready"
        yield srv
    finally:
        output = srv.stop()
    assert "Traceback" not in output, output[-3000:]


async def _latencies(
    url: str,
    path: str,
    stop: asyncio.Event | threading.Event,
    count: int = 40,
    every: float = 0.1,
    sending: threading.Event | None = None,
) -> list[float]:
    """Send up to ``count`` requests, one every ``every`` seconds until ``stop`` is set,
    without waiting for the one before (a slow answer does not thin the sample), and
    return how long each took. ``sending`` is set once the first request is on its way."""

    async def one(client: httpx.AsyncClient) -> float:
        started = time.perf_counter()
        if path.startswith("/v1/audio"):
            r = await client.post(url + path, files={"file": ("a.wav", wav(), "audio/wav")})
        else:
            r = await client.get(url + path)
        assert r.status_code == 200, r.text
        return time.perf_counter() - started

    async with httpx.AsyncClient(timeout=WAIT) as client:
        sent = []
        for _ in range(count):
            if stop.is_set():
                break
            sent.append(asyncio.create_task(one(client)))
            if sending is not None:
                sending.set()
            await asyncio.sleep(every)
        return list(await asyncio.gather(*sent))


async def _baseline(url: str, path: str) -> float:
    stop = asyncio.Event()
    task = asyncio.create_task(_latencies(url, path, stop, count=5))
    return statistics.median(await asyncio.wait_for(task, WAIT))


def test_a_30_minute_realtime_flood_is_limited_and_rest_stays_fast(server):
    import websockets

    async def run():
        baseline = await _baseline(server.url, "/v1/audio/transcriptions")
        url = server.url.replace("http", "ws") + "/v1/realtime?intent=transcription"
        chunk = base64.b64encode(np.zeros(15 * 24_000, "<i2").tobytes()).decode()  # 15 s, the most per append
        append = json.dumps({"type": "input_audio_buffer.append", "audio": chunk})
        before = rss_mib(server.proc.pid)
        async with websockets.connect(url, max_size=None) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "transcription_session.update", "session": {"turn_detection": None}}))
            await ws.recv()
            events: list[dict] = []

            async def read() -> None:
                for _ in range(1_000):  # bounded
                    events.append(json.loads(await ws.recv()))
                    if events[-1]["type"] == COMPLETED:
                        return

            reader = asyncio.create_task(read())
            # the REST requests go from a thread and event loop of their own: this loop, busy
            # sending the flood, would otherwise delay them until the flood is over
            stop, sending = threading.Event(), threading.Event()
            sampler = _latencies(server.url, "/v1/audio/transcriptions", stop, every=0.05, sending=sending)
            rest = asyncio.create_task(asyncio.to_thread(asyncio.run, sampler))
            # the flood starts once the sampler has sent: a flood handled before the
            # sampler's thread ran would leave nothing measured during it
            assert await asyncio.to_thread(sending.wait, WAIT), "the REST sampler did not start"
            started = time.perf_counter()
            for _ in range(120):  # 30 minutes of audio, as fast as the socket takes it
                await ws.send(append)
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await asyncio.wait_for(reader, 2 * WAIT)
            elapsed = time.perf_counter() - started
            stop.set()
            during = await asyncio.wait_for(rest, WAIT)
        return baseline, during, events, elapsed, rss_mib(server.proc.pid) - before

    baseline, during, events, elapsed, grown = asyncio.run(asyncio.wait_for(run(), 4 * WAIT))
    assert during, "no REST request was served during the flood"
    print(
        f"REST idle {baseline:.3f} s, during the flood median {statistics.median(during):.3f} s max "
        f"{max(during):.3f} s ({len(during)} requests); flood handled in {elapsed:.1f} s; RSS +{grown:.0f} MiB"
    )
    codes = {e["error"]["code"] for e in events if e["type"] == "error"}
    completed = events[-1]
    assert codes <= {"rate_limited", "input_audio_buffer_too_large"} and "rate_limited" in codes
    assert completed["end_s"] - completed["start_s"] <= 30.5  # the buffer cap, not 30 minutes
    assert elapsed < 2 * WAIT  # the update did not run to a 40 s timeout
    assert statistics.median(during) < max(5 * baseline, 0.5), (baseline, during)
    assert max(during) < 5.0, during  # it took 38 s before
    assert grown < 200, grown
    pool = httpx.get(f"{server.url}/v1/pool").json()
    assert pool["worker_crashes"] == 0 and pool["warm_workers"] == 1


def test_a_noise_flood_does_not_slow_the_health_check(server):
    import websockets

    async def run():
        baseline = await _baseline(server.url, "/health/live")
        url = server.url.replace("http", "ws") + "/v1/realtime?intent=transcription"
        noise = np.random.default_rng(2).integers(-8000, 8000, 24_000, dtype=np.int16)  # 1 s at 24 kHz
        append = json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(noise).decode()})
        async with websockets.connect(url, max_size=None) as ws:
            await ws.recv()
            stop = asyncio.Event()

            async def drain() -> None:
                for _ in range(10_000):  # bounded: errors and speech events
                    await ws.recv()

            reader = asyncio.create_task(drain())
            health = asyncio.create_task(_latencies(server.url, "/health/live", stop, count=20))
            for _ in range(120):  # two minutes of noise at once; the VAD runs on every frame taken
                await ws.send(append)
            during = await asyncio.wait_for(health, 2 * WAIT)
            reader.cancel()
        return baseline, during

    baseline, during = asyncio.run(asyncio.wait_for(run(), 4 * WAIT))
    print(f"/health/live idle {baseline:.3f} s, during the noise flood median {statistics.median(during):.3f} s")
    assert statistics.median(during) < max(5 * baseline, 0.25), (baseline, during)


def test_wyoming_refuses_a_300_mib_payload_and_bounds_a_66_minute_flood(server):
    async def huge() -> list:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.wyoming_port)
        header = {
            "type": "audio-chunk",
            "data": {"rate": 16_000, "width": 2, "channels": 1},
            "payload_length": 300 << 20,
        }
        writer.write(json.dumps(header).encode() + b"\n" + b"\x00" * (1 << 20))
        events = []
        for _ in range(5):
            event = await asyncio.wait_for(async_read_event(reader), WAIT)
            if event is None:
                break
            events.append(event)
        try:
            for _ in range(63):  # then the rest of 64 MiB, until the server hangs up
                writer.write(b"\x00" * (1 << 20))
                await asyncio.wait_for(writer.drain(), WAIT)
        except (ConnectionError, OSError):
            pass
        writer.close()
        return events

    async def flood() -> tuple[list[str], bool]:
        errors: list[str] = []
        async with AsyncTcpClient("127.0.0.1", server.wyoming_port) as client:
            await client.write_event(AudioStart(rate=16_000, width=2, channels=1).event())
            done = asyncio.Event()

            async def read() -> None:
                for _ in range(2_000):  # bounded
                    event = await client.read_event()
                    if event is None or TranscriptStop.is_type(event.type):
                        done.set()
                        return
                    if Error.is_type(event.type):
                        errors.append(Error.from_event(event).code)

            reader = asyncio.create_task(read())
            pcm = np.zeros(1 << 18, "<i2").tobytes()  # 0.5 MiB, 16 s
            for _ in range(248):  # 66 minutes
                await client.write_event(AudioChunk(rate=16_000, width=2, channels=1, audio=pcm).event())
            await client.write_event(AudioStop().event())
            await asyncio.wait_for(reader, 2 * WAIT)
            return errors, done.is_set()

    before = rss_mib(server.proc.pid)
    events = asyncio.run(asyncio.wait_for(huge(), 2 * WAIT))
    grown_huge = rss_mib(server.proc.pid) - before
    errors, finished = asyncio.run(asyncio.wait_for(flood(), 4 * WAIT))
    grown_flood = rss_mib(server.proc.pid) - before
    print(f"Wyoming RSS: +{grown_huge:.0f} MiB after 300 MiB declared, +{grown_flood:.0f} MiB after 66 minutes")
    assert events and Error.from_event(events[0]).code == "too_large"
    assert grown_huge < 50, grown_huge  # MiB; the package's reader took 600
    assert finished and len(errors) >= 240 and set(errors) <= {"rate_limited", "input_audio_buffer_too_large"}
    assert grown_flood < 100, grown_flood  # it reached 955 MiB before
