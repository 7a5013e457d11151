"""Shared fixtures. Every wait in these tests is bounded (pytest-timeout backs them up)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from whisperpool import PoolConfig, ProcessPool
from whisperpool.bench import CLIPS  # the example clips, package data
from whisperpool.testing import FakeBehavior

WAIT = 30.0  # the longest any single step of a fake-backend test may take
# Word error rate allowed on the example clips: espeak-ng's robotic voice costs Whisper
# base a word or two per clip (two of the 9 words of "fox" on the short-audio window).
MAX_WER = 0.25


@pytest.fixture(scope="session")
def clip_texts() -> dict[str, str]:
    return json.loads((CLIPS / "texts.json").read_text())


def clip(name: str) -> Path:
    return CLIPS / f"{name}.wav"


def fake_config(**changes) -> PoolConfig:
    """A fake-backend pool; no express worker unless asked (tests/test_express.py has theirs)."""
    behavior = changes.pop("fake", FakeBehavior())
    defaults = dict(
        pool_size=2, backend="fake", fake=behavior, warmup_timeout_s=20.0, stop_timeout_s=2.0, express_workers=0
    )
    defaults.update(changes)
    return PoolConfig(**defaults)


def samples(n: int = 1600, first: float = 0.0) -> np.ndarray:
    audio = np.zeros(n, dtype=np.float32)
    audio[0] = first
    return audio


def wait_for(predicate, timeout: float = WAIT) -> bool:
    """Bounded wait for a condition the system reaches on its own; the last check decides."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """A real uvicorn serving ``app`` in a thread on a free loopback port; yields its URL
    once it listens, and stops it (bounded) after."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(WAIT)
        assert not thread.is_alive()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def make_pool():
    """Build pools that are always closed, even when the test fails."""
    pools: list[ProcessPool] = []

    def make(config: PoolConfig | None = None, **changes) -> ProcessPool:
        pool = ProcessPool(config or fake_config(**changes))
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close(timeout=2.0)


def encode(audio: np.ndarray, path: Path, *, rate: int = 16_000, channels: int = 1, codec: str | None = None) -> Path:
    """Write mono float32 ``audio`` (at ``rate``) to ``path`` with PyAV, in any container/codec.

    With ``channels=2`` the right channel is the left one at half volume.
    """
    import av

    fmt = path.suffix.lstrip(".")
    codec = codec or {"wav": "pcm_s16le", "flac": "flac", "ogg": "libopus", "mp3": "libmp3lame"}[fmt]
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format={"ogg": "ogg"}.get(fmt, fmt)) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        planar = np.stack([audio] * channels) if channels == 2 else audio.reshape(1, -1)
        if channels == 2:
            planar[1] *= 0.5
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar, dtype=np.float32), format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
