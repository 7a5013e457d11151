"""The load (and chaos) run: a fixed number of requests at a fixed concurrency, every one counted."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from .server import _wait_ready, clips


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
