"""``whisperpool load``: a bounded load (and chaos) run against a server on loopback.

It starts its own server on a free 127.0.0.1 port (or uses ``--url``, which must be a
loopback address), sends a fixed number of requests at a fixed concurrency with a mix of
short and long clips, and counts every request into exactly one bucket:

* accepted - answered 200 with a transcript;
* rejected - answered with a clear error (503 queue full, 504, 500 with its message);
* lost     - no answer at all (connection dropped, client timeout). Must be 0.

With ``--chaos-every S`` it SIGKILLs a random worker of that server every S seconds
during the run. Every loop is bounded in count and time; the run stops by itself.

From Python: ``run(LoadOptions(requests=30), Console())`` returns the result as a dict
(``result["lost"]`` must be 0); the CLI builds the :class:`LoadOptions` from its flags.
"""

from __future__ import annotations

import asyncio
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

    def __post_init__(self) -> None:
        for name in ("requests", "concurrency", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"LoadOptions.{name} must be an integer >= 1, got {value!r}")
        if self.chaos_every_s is not None and not self.chaos_every_s > 0:
            raise ConfigError(f"LoadOptions.chaos_every_s must be > 0, got {self.chaos_every_s!r}")
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
    workers: int, threads: int | None, language: str | None, max_queue: int = 64
) -> tuple[subprocess.Popen, str]:
    """``whisperpool serve`` in a subprocess on a free loopback port; returns it and its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "whisperpool.cli", "serve", "--port", str(port), "--workers", str(workers)]
    cmd += ["--max-queue", str(max_queue)] + (["--language", language] if language else [])
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    """Run the load, print its table to ``out``, write ``options.output``; return the result."""
    server = None
    url = options.url
    if url is None:
        server, url = start_server(options.workers, options.threads, options.language, options.max_queue)
    try:
        result = asyncio.run(
            run_load(url, options.requests, options.concurrency, options.chaos_every_s, options.limit_s)
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=120)
    report(result, out)
    if options.output is not None:
        output = Path(options.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
    return result
