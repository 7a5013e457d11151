"""A server to load: ``whisperpool serve`` on a free loopback port, and the clips sent to it."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import time
import wave
from typing import Any

import httpx
import numpy as np

from ..audio import load_audio
from ..bench.common import CLIPS


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
