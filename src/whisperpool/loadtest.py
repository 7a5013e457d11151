"""``whisperpool load``: a bounded load (and chaos) run against a server on loopback.

It starts its own server on a free 127.0.0.1 port (or uses ``--url``, which must be a
loopback address), sends a fixed number of requests at a fixed concurrency with a mix of
short and long clips, and counts every request into exactly one bucket:

* accepted - answered 200 with a transcript;
* rejected - answered with a clear error (503 queue full, 504, 500 with its message);
* lost     - no answer at all (connection dropped, client timeout). Must be 0.

With ``--chaos-every S`` it SIGKILLs a random worker of that server every S seconds
during the run. Every loop is bounded in count and time; the run stops by itself.

With ``--abuse`` it replays the attacks of issue 13 instead (:func:`run_abuse`): it
measures a normal short request at idle, then runs each probe for a bounded time while a
trickle of normal requests goes on, and reports what each probe got, the normal
requests' p95 during it against idle, and the server's memory. ``--fake`` starts the
server on the fake backend (no model; for the test that keeps this working).

From Python: ``run(LoadOptions(requests=30), Console())`` returns the result as a dict
(``result["lost"]`` must be 0); the CLI builds the :class:`LoadOptions` from its flags.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from .audio import load_audio
from .bench.common import CLIPS
from .errors import ConfigError
from .streaming.realtime import COMPLETED, FAILED

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadOptions:
    """A load run. ``url=None`` starts a server (``workers``, ``threads``, ``max_queue``,
    ``language``) on a free loopback port; a given ``url`` must be a loopback address.
    ``chaos_every_s`` kills a random worker that often; the run stops after ``limit_s``.
    ``output``: a JSON file to write the result to.
    """

    url: str | None = None
    requests: int = 300
    concurrency: int = 16
    chaos_every_s: float | None = None
    workers: int = 2
    threads: int | None = None
    max_queue: int = 64
    language: str | None = "en"
    limit_s: float = 1800.0
    output: Path | None = None
    abuse: bool = False
    fake: bool = False
    probe_s: float = 5.0
    probe_count: int = 8
    read_timeout_s: float = 2.0  # of the started server; with --url, the server's own (for the waits)
    max_connections: int = 64
    max_uploads: int = 8
    max_audio_s: float = 600.0
    stream_max_sessions: int = 4  # of the started server; with --url, the server's (the sessions probe opens more)
    stream_max_buffered_s: float = 30.0  # of the started server; with --url, the server's (a final's bound)

    def __post_init__(self) -> None:
        names = ("requests", "concurrency", "workers", "probe_count", "max_connections", "max_uploads")
        for name in (*names, "stream_max_sessions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"LoadOptions.{name} must be an integer >= 1, got {value!r}")
        if self.chaos_every_s is not None and not self.chaos_every_s > 0:
            raise ConfigError(f"LoadOptions.chaos_every_s must be > 0, got {self.chaos_every_s!r}")
        for name in ("probe_s", "read_timeout_s", "max_audio_s", "stream_max_buffered_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"LoadOptions.{name} must be > 0, got {getattr(self, name)!r}")
        if not self.limit_s > 0:
            raise ConfigError(f"LoadOptions.limit_s must be > 0, got {self.limit_s!r}")
        if self.url is not None and urlparse(self.url).hostname not in LOOPBACK:
            raise ConfigError(f"LoadOptions.url must be a loopback address (load only goes there), got {self.url!r}")


def _wav_bytes(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def clips() -> dict[str, bytes]:
    """About 3 s and 30 s of speech, from the example clips (no sentence repeated)."""
    short = load_audio(CLIPS / "fox.wav")
    parts = [load_audio(CLIPS / f"{n}.wav") for n in ("weather", "groceries", "library")]
    gap = np.zeros(4000, np.float32)
    long = np.concatenate([x for p in parts for x in (p, gap)])[: 30 * 16000]
    return {"3s": _wav_bytes(short), "30s": _wav_bytes(long)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    workers: int,
    threads: int | None,
    language: str | None,
    max_queue: int = 64,
    *,
    fake: bool = False,
    extra: list[str] | None = None,
    stderr: Any = subprocess.DEVNULL,
) -> tuple[subprocess.Popen, str]:
    """``whisperpool serve`` in a subprocess on a free loopback port; returns it and its URL.

    ``fake`` serves the fake backend (``WHISPERPOOL_BACKEND=fake``); ``extra``: more flags.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "whisperpool.cli", "serve", "--port", str(port), "--workers", str(workers)]
    cmd += ["--max-queue", str(max_queue)] + (["--language", language] if language else [])
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "WHISPERPOOL_BACKEND": "fake"} if fake else None
    proc = subprocess.Popen(cmd + (extra or []), stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    return proc, f"http://127.0.0.1:{port}"


async def _wait_ready(client: httpx.AsyncClient, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            if (await client.get("/health/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the server did not become ready")


async def _chaos(client: httpx.AsyncClient, every_s: float, stop: asyncio.Event, kills: list[int]) -> None:
    rng = random.Random(7)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return
        except asyncio.TimeoutError:
            pass
        status = (await client.get("/v1/pool")).json()
        pids = [w["pid"] for w in status["workers"] if w["state"] in ("warm", "processing", "completed")]
        if pids:
            pid = rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
                kills.append(pid)
            except ProcessLookupError:
                pass


async def run_load(url: str, requests: int, concurrency: int, chaos_every: float | None, limit_s: float) -> dict:
    data = clips()
    names = ["30s" if i % 3 == 2 else "3s" for i in range(requests)]  # two short clips to one long
    outcome: dict[str, list] = {"accepted": [], "rejected": [], "lost": []}
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sem = asyncio.Semaphore(concurrency)
    stop = asyncio.Event()
    kills: list[int] = []
    timeout = httpx.Timeout(300.0, connect=10.0)
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        await _wait_ready(client)

        async def one(i: int, name: str) -> None:
            async with sem:
                started = time.perf_counter()
                try:
                    r = await client.post(
                        "/v1/audio/transcriptions",
                        files={"file": (f"{name}.wav", data[name], "audio/wav")},
                        data={"model": "whisper-1", "response_format": "json"},
                    )
                except httpx.HTTPError as exc:
                    outcome["lost"].append((i, repr(exc)))
                    return
                elapsed = time.perf_counter() - started
                if r.status_code == 200 and r.json().get("text"):
                    outcome["accepted"].append(i)
                    latencies.append(elapsed)
                else:
                    outcome["rejected"].append(i)
                    code = f"{r.status_code} {r.json().get('error', {}).get('code', '')}"
                    errors[code] = errors.get(code, 0) + 1

        chaos = asyncio.create_task(_chaos(client, chaos_every, stop, kills)) if chaos_every else None
        started = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(one(i, n) for i, n in enumerate(names))), limit_s)
        finally:
            stop.set()
            if chaos:
                await chaos
        wall = time.perf_counter() - started
        status = (await client.get("/v1/pool")).json()
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "requests": requests,
        "concurrency": concurrency,
        "mix": {"3s": names.count("3s"), "30s": names.count("30s")},
        "chaos_every_s": chaos_every,
        "workers_killed": len(kills),
        "accepted": len(outcome["accepted"]),
        "rejected": len(outcome["rejected"]),
        "lost": len(outcome["lost"]),
        "lost_detail": outcome["lost"][:10],
        "rejections": errors,
        "wall_s": wall,
        "throughput_rps": len(latencies) / wall,
        "latency_s": {q: float(np.percentile(lat, int(q[1:]))) for q in ("p50", "p95", "p99")},
        "pool": {
            k: status[k]
            for k in ("worker_restarts", "worker_crashes", "requests_retried", "warm_workers", "total_workers")
        },
    }


def report(result: dict[str, Any], out: Console) -> None:
    title = "load" + (f", a worker killed every {result['chaos_every_s']:g} s" if result["chaos_every_s"] else "")
    table = Table(title=title)
    for col in ("sent", "conc", "ok", "rejected", "lost", "killed", "p50 s", "p95 s", "p99 s", "req/s"):
        table.add_column(col, justify="right")
    lat = result["latency_s"]
    table.add_row(
        str(result["requests"]), str(result["concurrency"]), str(result["accepted"]), str(result["rejected"]),
        str(result["lost"]), str(result["workers_killed"]), f"{lat['p50']:.2f}", f"{lat['p95']:.2f}",
        f"{lat['p99']:.2f}", f"{result['throughput_rps']:.2f}",
    )  # fmt: skip
    out.print(table)
    if result["rejections"]:
        out.print(f"rejections: {result['rejections']}")
    out.print(f"pool after the run: {result['pool']}")


def run(options: LoadOptions, out: Console) -> dict[str, Any]:
    """Run the load (or with ``options.abuse`` the probes), print its table to ``out``,
    write ``options.output``; return the result."""
    server = None
    url = options.url
    wyoming_port = None  # the Wyoming probes run only against a server started here
    if url is None:
        extra = []
        if options.abuse:
            wyoming_port = free_port()
            extra = [
                "--read-timeout", str(options.read_timeout_s), "--max-connections", str(options.max_connections),
                "--max-uploads", str(options.max_uploads), "--max-audio-s", str(options.max_audio_s),
                "--stream-max-sessions", str(options.stream_max_sessions),
                "--stream-max-buffered-s", str(options.stream_max_buffered_s), "--wyoming-port", str(wyoming_port),
            ]  # fmt: skip
        server, url = start_server(
            options.workers, options.threads, options.language, options.max_queue, fake=options.fake, extra=extra
        )
    try:
        if options.abuse:
            pid = server.pid if server is not None else None
            result = asyncio.run(run_abuse(url, options, pid, wyoming_port))
        else:
            result = asyncio.run(
                run_load(url, options.requests, options.concurrency, options.chaos_every_s, options.limit_s)
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=120)
    (report_abuse if options.abuse else report)(result, out)
    if options.output is not None:
        output = Path(options.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
    return result


# --- whisperpool load --abuse ---------------------------------------------------------

TRANSCRIBE = "/v1/audio/transcriptions"
UPLOAD_PATH_MARKERS = ("whisperpool-uploads-", ".upload")  # what a leaked server path looks like


def silent_flac(seconds: int) -> bytes:
    """FLAC of silence (about 200 bytes a second) whose header leaves the length unknown,
    so only decoding finds out how long it is."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=16_000, layout="mono")
        zeros = np.zeros((1, 16_000), np.int16)
        for _ in range(seconds):
            frame = av.AudioFrame.from_ndarray(zeros, format="s16", layout="mono")
            frame.sample_rate = 16_000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = bytearray(buf.getvalue())
    at = 4 + 4 + 10  # "fLaC", the block header, the block and frame sizes: then rate, channels, bits, total
    value = int.from_bytes(data[at : at + 8], "big") & ~((1 << 36) - 1)
    data[at : at + 8] = value.to_bytes(8, "big")
    return bytes(data)


def rss_mb(pid: int | None) -> float | None:
    """The resident memory of ``pid`` in MiB (Linux), or None."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _answer(r: httpx.Response) -> str:
    """``"400 invalid_parameter"``: the status and OpenAI error code of an answer."""
    try:
        code = r.json().get("error", {}).get("code") or ""
    except ValueError:
        code = ""
    return f"{r.status_code} {code}".strip()


def _raw_answer(data: bytes) -> str:
    """The status and error code of a raw HTTP answer; ``"closed"`` if none came."""
    if not data.startswith(b"HTTP/1.1 "):
        return "closed"
    status = data[9:12].decode()
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        code = json.loads(body).get("error", {}).get("code") or ""
    except ValueError:
        code = ""
    return f"{status} {code}".strip()


class _Abuse:
    """The probes, each bounded in count and time; ``normal`` is the clip a normal request sends."""

    def __init__(self, url: str, options: LoadOptions, normal: bytes, wyoming_port: int | None = None) -> None:
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.ws_url = url.replace("http", "ws", 1).rstrip("/") + REALTIME
        self.wyoming_port = wyoming_port
        self.options, self.normal = options, normal
        self.wait_s = options.read_timeout_s + 5  # the longest a slow probe waits for the server's answer
        self.client = httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(60.0, connect=10.0))

    async def close(self) -> None:
        await self.client.aclose()

    async def normal_request(self) -> tuple[str, float]:
        started = time.perf_counter()
        try:
            r = await self.client.post(
                TRANSCRIBE, files={"file": ("normal.wav", self.normal)}, data={"model": "whisper-1"}
            )
        except httpx.HTTPError as exc:
            return f"lost {type(exc).__name__}", time.perf_counter() - started
        ok = r.status_code == 200 and bool(r.json().get("text"))
        return ("200" if ok else _answer(r)), time.perf_counter() - started

    async def _post_many(self, make_request) -> list[str]:
        answers = []
        for _ in range(self.options.probe_count):
            try:
                answers.append(_answer(await make_request()))
            except httpx.HTTPError as exc:
                answers.append(f"lost {type(exc).__name__}")
        return answers

    async def bad_language(self) -> list[str]:
        return await self._post_many(
            lambda: self.client.post(TRANSCRIBE, files={"file": ("a.wav", self.normal)}, data={"language": "xx"})
        )

    async def nan_temperature(self) -> list[str]:
        return await self._post_many(
            lambda: self.client.post(TRANSCRIBE, files={"file": ("a.wav", self.normal)}, data={"temperature": "nan"})
        )

    async def path_leak(self) -> list[str]:
        answers = []
        for _ in range(self.options.probe_count):
            r = await self.client.post(TRANSCRIBE, files={"file": ("probe.wav", b"not audio, only text")})
            leaked = any(marker in r.text for marker in UPLOAD_PATH_MARKERS)
            answers.append(_answer(r) + (" LEAKED A SERVER PATH" if leaked else ""))
        return answers

    async def tiny_flac_hours(self) -> list[str]:
        data = silent_flac(int(self.options.max_audio_s * 1.2) + 1)  # decodes past the server's max_audio_s
        answers = []
        for _ in range(min(self.options.probe_count, 3)):
            r = await self.client.post(TRANSCRIBE, files={"file": ("tiny.flac", data)})
            answers.append(_answer(r))
        return answers

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)

    async def _partial_upload(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await self._open()
        writer.write(
            b"POST " + TRANSCRIBE.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n"
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.wav"\r\n\r\n' + b"\0" * 20_000
        )
        await writer.drain()
        return reader, writer

    async def _read_answer(self, reader: asyncio.StreamReader) -> str:
        try:
            data = await asyncio.wait_for(reader.read(-1), self.wait_s)  # the server closes after its answer
        except asyncio.TimeoutError:
            return "no answer (held)"
        except OSError:
            return "closed"
        return _raw_answer(data)

    async def disconnect_mid_upload(self) -> list[str]:
        answers = []
        for _ in range(self.options.probe_count):
            _, writer = await self._partial_upload()
            await asyncio.sleep(0.05)
            writer.transport.abort()  # gone mid-upload: the server's answer (499) goes nowhere
            answers.append("left mid-upload")
        return answers

    async def slow_uploads(self) -> list[str]:
        count = max(1, min(self.options.probe_count, self.options.max_uploads // 2))  # leave slots for others
        streams = [await self._partial_upload() for _ in range(count)]
        answers = await asyncio.gather(*(self._read_answer(reader) for reader, _ in streams))
        for _, writer in streams:
            writer.close()
        return list(answers)

    async def slow_headers(self) -> list[str]:
        count = max(1, min(self.options.probe_count, self.options.max_connections // 4))

        async def drip() -> str:
            reader, writer = await self._open()
            line = b"POST " + TRANSCRIBE.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
            answer = asyncio.ensure_future(self._read_answer(reader))
            deadline = time.monotonic() + self.wait_s
            i = 0
            while not answer.done() and time.monotonic() < deadline:
                writer.write(line[i : i + 1] if i < len(line) else b"a")  # never ends its headers
                i += 1
                try:
                    await writer.drain()
                except OSError:
                    break
                await asyncio.sleep(0.2)
            result = await answer
            writer.close()
            return result

        return list(await asyncio.gather(*(drip() for _ in range(count))))

    async def idle_connections(self) -> list[str]:
        count = max(1, self.options.max_connections // 2)
        streams = [await self._open() for _ in range(count)]
        answers = await asyncio.gather(*(self._read_answer(reader) for reader, _ in streams))
        for _, writer in streams:
            writer.close()
        return list(answers)

    async def connection_burst(self) -> list[str]:
        count = self.options.max_connections + 16

        async def one() -> str:
            try:
                reader, writer = await self._open()
            except (OSError, asyncio.TimeoutError):
                return "refused"
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = await self._read_answer(reader)
            writer.close()
            return answer.split(" ")[0]

        return list(await asyncio.gather(*(one() for _ in range(count))))

    # --- the live streams: Realtime (WebSocket) and Wyoming (TCP) ----------------------

    async def _realtime(self):
        """A Realtime session, its ``created`` event read; GA ``session.update`` with
        ``turn_detection: null`` and pcm16 at 24 kHz (as ``streaming/client.py`` speaks)."""
        import websockets

        ws = await asyncio.wait_for(websockets.connect(self.ws_url, max_size=2**24), 10)
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), self.wait_s))
        except BaseException:
            await ws.close()
            raise
        return ws, first

    async def _recv(self, ws, wait_s: float | None = None) -> dict[str, Any] | None:
        """The next event, or None if the session closed or nothing came in time."""
        import websockets

        try:
            return json.loads(await asyncio.wait_for(ws.recv(), wait_s or self.wait_s))
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            return None

    async def _alive(self, ws) -> str:
        """``"session alive"`` if the session still answers (``input_audio_buffer.clear``)."""
        try:
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        except Exception:
            return "closed"
        for _ in range(1_000):  # bounded: skip what the session still had to say
            event = await self._recv(ws)
            if event is None:
                return "closed"
            if event.get("type") == "input_audio_buffer.cleared":
                return "session alive"
        return "no answer (held)"

    async def realtime_flood(self) -> list[str]:
        """Minutes of audio (probe_count x 5 appends of 15 s, the most one append holds) as
        fast as the socket takes them with ``turn_detection: null``, then a commit."""
        ws, _ = await self._realtime()
        answers: list[str] = []
        try:
            update = {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24_000}}}}
            update["audio"]["input"]["turn_detection"] = None
            await ws.send(json.dumps({"type": "session.update", "session": update}))
            event = await self._recv(ws)
            if event is None or event.get("type") != "session.updated":
                return [f"update answered {event and event.get('type')}"]
            chunk = base64.b64encode(np.zeros(15 * 24_000, "<i2").tobytes()).decode()
            append = json.dumps({"type": "input_audio_buffer.append", "audio": chunk})

            async def read() -> None:
                for _ in range(10_000):  # bounded
                    event = await self._recv(ws, self.wait_s + 120)
                    if event is None:
                        answers.append("closed")
                        return
                    kind = event.get("type")
                    if kind == "error":
                        answers.append(f"error {event['error'].get('code')}")
                    elif kind == COMPLETED:
                        audio_s = event["end_s"] - event["start_s"]
                        bounded = audio_s <= self.options.stream_max_buffered_s + 0.5
                        answers.append("completed" + ("" if bounded else f" UNBOUNDED ({audio_s:.0f} s)"))
                        return
                    elif kind == FAILED:
                        answers.append(f"failed {event['error'].get('code')}")
                        return

            reader = asyncio.ensure_future(read())
            for _ in range(5 * self.options.probe_count):
                await ws.send(append)
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await reader
            answers.append(await self._alive(ws))
        finally:
            await ws.close()
        return answers

    async def realtime_bad_events(self) -> list[str]:
        """The malformed events of issue 13, each answered with an ``error``; then alive."""
        ws, _ = await self._realtime()
        answers = []
        try:
            for raw in BAD_EVENTS:
                await ws.send(raw)
                event = await self._recv(ws)
                if event is None:
                    answers.append("closed")
                    break
                kind = event.get("type")
                answers.append(f"error {event['error'].get('code')}" if kind == "error" else f"answered {kind}")
            answers.append(await self._alive(ws))
        finally:
            await ws.close()
        return answers

    async def realtime_sessions(self) -> list[str]:
        """Sessions up to the cap and probe_count more, held at once: those over it are
        refused (``session_limit``)."""
        sockets, answers = [], []
        try:
            for _ in range(self.options.stream_max_sessions + self.options.probe_count):
                try:
                    ws, first = await self._realtime()
                except Exception as exc:
                    answers.append(f"refused {type(exc).__name__}")
                    continue
                sockets.append(ws)
                kind = first.get("type")
                answers.append(f"error {first['error'].get('code')}" if kind == "error" else kind.split(".")[-1])
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        await asyncio.sleep(0.2)  # let the server count them closed before the next probe
        return answers

    async def _wyoming(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.wyoming_port), 10)

    async def wyoming_flood(self) -> list[str]:
        """One utterance of probe_count x 5 audio-chunks of 16 s (0.5 MiB) at once, then
        audio-stop: the chunks over the rate or the buffer are refused, the transcript bounded."""
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.event import async_read_event, async_write_event

        reader, writer = await self._wyoming()
        answers: list[str] = []
        try:
            await async_write_event(AudioStart(rate=16_000, width=2, channels=1).event(), writer)

            async def read() -> None:
                for _ in range(10_000):  # bounded
                    try:
                        event = await asyncio.wait_for(async_read_event(reader), self.wait_s + 120)
                    except (asyncio.TimeoutError, OSError):
                        event = None
                    if event is None:
                        answers.append("closed")
                        return
                    if event.type == "error":
                        answers.append(f"error {event.data.get('code')}")
                    elif event.type == "transcript":
                        answers.append("transcript")
                    elif event.type == "transcript-stop":
                        return

            task = asyncio.ensure_future(read())
            pcm = np.zeros(16 * 16_000, "<i2").tobytes()
            for _ in range(5 * self.options.probe_count):
                await async_write_event(AudioChunk(rate=16_000, width=2, channels=1, audio=pcm).event(), writer)
            await async_write_event(AudioStop().event(), writer)
            await task
        finally:
            writer.close()
        return answers

    async def wyoming_huge_payload(self) -> list[str]:
        """A header declaring 300 MiB of payload, then up to 8 MiB of it: refused
        (``too_large``) without being read, and the connection closed."""
        from wyoming.event import async_read_event

        answers = []
        for _ in range(min(self.options.probe_count, 3)):
            reader, writer = await self._wyoming()
            header = {"type": "audio-chunk", "data": {"rate": 16_000, "width": 2, "channels": 1}}
            writer.write(json.dumps({**header, "payload_length": 300 << 20}).encode() + b"\n")
            try:
                event = await asyncio.wait_for(async_read_event(reader), self.wait_s)
            except (asyncio.TimeoutError, OSError):
                event = None
            answers.append(f"error {event.data.get('code')}" if event and event.type == "error" else "no error")
            closed = False
            try:
                for _ in range(8):  # the rest, 1 MiB at a time, until the server hangs up
                    writer.write(b"\0" * (1 << 20))
                    await asyncio.wait_for(writer.drain(), self.wait_s)
                closed = await asyncio.wait_for(reader.read(1), self.wait_s) == b""
            except (OSError, asyncio.TimeoutError):
                closed = True
            answers.append("closed" if closed else "held open")
            writer.close()
        return answers


P95_TARGET = 2.0  # a normal request's p95 during a probe, as a multiple of idle: reported, not an exit code

# probe -> the answers it may get (by prefix); anything else is unexpected
EXPECTED: dict[str, tuple[str, ...]] = {
    "bad_language": ("400 invalid_parameter",),
    "nan_temperature": ("400 invalid_parameter",),
    "path_leak": ("400 invalid_audio",),
    "tiny_flac_hours": ("400 audio_too_long",),
    "disconnect_mid_upload": ("left mid-upload",),
    "slow_uploads": ("408 upload_timeout",),
    "slow_headers": ("408",),
    "idle_connections": ("408",),
    "connection_burst": ("200", "503"),
    "realtime_bad_events": ("error invalid_type", "error invalid_value", "error too_deep", "session alive"),
    "realtime_flood": ("error rate_limited", "error input_audio_buffer_too_large", "completed", "session alive"),
    "wyoming_flood": ("error rate_limited", "error input_audio_buffer_too_large", "transcript"),
    "wyoming_huge_payload": ("error too_large", "closed"),
    "realtime_sessions": ("created", "error session_limit"),
}
# probe -> the answers it must get at least once (each: one of these)
REFUSED = ("error rate_limited", "error input_audio_buffer_too_large")
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "realtime_bad_events": (("session alive",),),
    "realtime_flood": (REFUSED, ("completed",), ("session alive",)),
    "wyoming_flood": (REFUSED, ("transcript",)),
    "wyoming_huge_payload": (("error too_large",), ("closed",)),
    "realtime_sessions": (("created",), ("error session_limit",)),
}
WYOMING_PROBES = ("wyoming_flood", "wyoming_huge_payload")  # only against a server started here

REALTIME = "/v1/realtime?intent=transcription"
# the malformed Realtime events of issue 13: each must get an error event
BAD_EVENTS = (
    json.dumps({"type": "transcription_session.update", "session": {"turn_detection": {"threshold": "abc"}}}),
    json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": "x"}}),
    json.dumps({"type": "transcription_session.update", "session": {"input_audio_transcription": "x"}}),
    '{"type": "transcription_session.update", "session": {"turn_detection": {"silence_duration_ms": 1e309}}}',
    "[" * 100_000 + "]" * 100_000,
)


async def run_abuse(
    url: str, options: LoadOptions, server_pid: int | None, wyoming_port: int | None = None
) -> dict[str, Any]:
    """Each probe against a trickle of normal requests; see the module docstring.
    The Wyoming probes run only with ``wyoming_port`` (a server started by :func:`run`)."""
    normal = clips()["3s"]
    abuse = _Abuse(url, options, normal, wyoming_port)
    deadline = time.monotonic() + options.limit_s
    try:
        await _wait_ready(abuse.client)
        for _ in range(3):  # warm the path
            await abuse.normal_request()
        idle = [await abuse.normal_request() for _ in range(max(10, options.probe_count))]
        idle_p95 = _p95([t for a, t in idle if a == "200"])
        rss_before = rss_mb(server_pid)
        statuses_before = await _status_counts(abuse.client)
        probes = []
        for name in EXPECTED:
            if time.monotonic() > deadline:
                break
            if name in WYOMING_PROBES and wyoming_port is None:
                continue
            probes.append(await _probe(abuse, name, idle_p95, server_pid))
        after = [await abuse.normal_request() for _ in range(3)]
        serving = all(a == "200" for a, _ in after)
        statuses_after = await _status_counts(abuse.client)
    finally:
        await abuse.close()
    unexpected = [p["probe"] for p in probes if p["unexpected"]]
    answered = (
        {  # what the server's own metrics counted during the probes (None: /metrics not readable)
            status: statuses_after[status] - statuses_before.get(status, 0)
            for status in statuses_after
            if statuses_after[status] != statuses_before.get(status, 0)
        }
        if statuses_after is not None and statuses_before is not None
        else None
    )
    if answered and any(status.startswith("5") and status != "503" for status in answered):
        unexpected.append("server errors (5xx) in the metrics")
    return {
        "url": url,
        "idle": {"requests": len(idle), "p50_s": _percentile([t for _, t in idle], 50), "p95_s": idle_p95},
        "probes": probes,
        "server_counted": answered,
        "rss_mb": {"before": rss_before, "after": rss_mb(server_pid)},
        "kept_serving": serving and all(p["normal_ok"] > 0 for p in probes),
        "unexpected": unexpected,
        "ok": serving and not unexpected and all(p["normal_ok"] > 0 for p in probes),
    }


async def _status_counts(client: httpx.AsyncClient) -> dict[str, float] | None:
    """Requests the server counted, by status (``whisperpool_http_requests_total``); None if unreadable."""
    try:
        r = await client.get("/metrics")
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    counts: dict[str, float] = {}
    for line in r.text.splitlines():
        if line.startswith("whisperpool_http_requests_total{") and 'status="' in line:
            status = line.split('status="', 1)[1].split('"', 1)[0]
            counts[status] = counts.get(status, 0) + float(line.rsplit(" ", 1)[1])
    return counts


async def _probe(abuse: _Abuse, name: str, idle_p95: float, server_pid: int | None = None) -> dict[str, Any]:
    """Run one probe while normal requests go on (at least one, and for at least probe_s)."""
    rss_before = rss_mb(server_pid)
    done = asyncio.Event()
    normals: list[tuple[str, float]] = []

    async def trickle() -> None:
        started = time.monotonic()
        while not (done.is_set() and (normals and time.monotonic() - started >= abuse.options.probe_s)):
            normals.append(await abuse.normal_request())
            if len(normals) >= 10_000 or time.monotonic() - started > abuse.options.probe_s + abuse.wait_s + 60:
                return
            await asyncio.sleep(0.05)

    background = asyncio.ensure_future(trickle())
    started = time.perf_counter()
    try:
        answers = await asyncio.wait_for(getattr(abuse, name)(), abuse.wait_s + 120)
    except asyncio.TimeoutError:
        answers = ["probe timed out"]
    took = time.perf_counter() - started
    done.set()
    await background
    counted: dict[str, int] = {}
    for answer in answers:
        counted[answer] = counted.get(answer, 0) + 1
    ok_times = [t for a, t in normals if a == "200"]
    p95 = _p95(ok_times)
    expected = EXPECTED[name]
    missing = [" or ".join(group) for group in REQUIRED.get(name, ()) if not any(a in counted for a in group)]
    return {
        "probe": name,
        "sent": len(answers),
        "answers": counted,
        "missing": missing,
        "unexpected": any(not a.startswith(expected) or "LEAKED" in a for a in answers) or bool(missing),
        "probe_s": round(took, 2),
        "normal_requests": len(normals),
        "normal_ok": len(ok_times),
        "normal_other": {a: sum(1 for b, _ in normals if b == a) for a in {a for a, _ in normals if a != "200"}},
        "normal_p95_s": p95,
        "p95_ratio": p95 / idle_p95 if idle_p95 > 0 else float("nan"),
        "within_target": bool(p95 <= P95_TARGET * idle_p95),
        "rss_mb": {"before": rss_before, "after": rss_mb(server_pid)},
    }


def _percentile(values: list[float], q: int) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _p95(values: list[float]) -> float:
    return _percentile(values, 95)


def report_abuse(result: dict[str, Any], out: Console) -> None:
    idle = result["idle"]
    table = Table(title=f"abuse probes (idle p50 {idle['p50_s'] * 1000:.0f} ms, p95 {idle['p95_s'] * 1000:.0f} ms)")
    others = any(p["normal_other"] for p in result["probes"])
    columns = ("probe", "answers", "normal ok") + (("normal other",) if others else ())
    columns += ("p95 ms", "/ idle", "RSS MiB", "")
    for col in columns:
        left = col in ("probe", "answers", "normal other")
        table.add_column(col, justify="left" if left else "right", no_wrap=col in ("probe", "/ idle", "RSS MiB"))
    for p in result["probes"]:
        answers = ", ".join(f"{n}x {a}" for a, n in sorted(p["answers"].items()))
        other = (", ".join(f"{n}x {a}" for a, n in sorted(p["normal_other"].items())) or "-",) if others else ()
        before, after = p["rss_mb"]["before"], p["rss_mb"]["after"]
        rss = f"{before:.0f} -> {after:.0f}" if before is not None and after is not None else "-"
        verdict = "UNEXPECTED" if p["unexpected"] else "ok"
        table.add_row(
            p["probe"], answers, str(p["normal_ok"]), *other, f"{p['normal_p95_s'] * 1000:.0f}",
            f"{p['p95_ratio']:.2f}" + ("" if p["within_target"] else " (>2x)"), rss,
            verdict + (f" (missing: {', '.join(p['missing'])})" if p["missing"] else ""),
        )  # fmt: skip
    out.print(table)
    rss = result["rss_mb"]
    if rss["before"] is not None:
        out.print(f"server RSS: {rss['before']:.0f} MiB before the probes, {rss['after'] or 0:.0f} MiB after")
    if result["server_counted"] is not None:
        counted = ", ".join(f"{n:g}x {status}" for status, n in sorted(result["server_counted"].items()))
        out.print(f"the server counted: {counted}")
    verdict = "kept serving" if result["kept_serving"] else "STOPPED SERVING"
    out.print(f"{verdict}; unexpected answers: {', '.join(result['unexpected']) or 'none'}")
