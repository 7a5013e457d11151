"""Play audio into live transcription at real-time pace: locally, or to a Realtime server.

Used by ``whisperpool stream``, ``whisperpool bench --streaming`` and the tests. Both
players yield the same kind of record: ``(seconds since the first sample was sent, event)``
where ``event`` is the Realtime protocol's server event as a dict: the local player
builds them from :class:`~whisperpool.streaming.StreamingSession` events with the
server's own mapping (:mod:`whisperpool.streaming.realtime`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE, resample
from ..errors import MissingDependency
from ..urls import ws_url
from .realtime import COMPLETED, FAILED, RealtimeEvents
from .session import StreamingSession

CHUNK_S = 0.1  # audio per message, as a microphone would send it
TAIL_SILENCE_S = 1.0  # after the file, so the VAD hears the last utterance end


def _chunks(audio: np.ndarray, rate: int) -> list[np.ndarray]:
    step = int(CHUNK_S * rate)
    return [audio[i : i + step] for i in range(0, audio.size, step)]


async def _paced(chunks: list[np.ndarray], rate: int, pace: float, started: float) -> AsyncIterator[np.ndarray]:
    sent_s = 0.0
    for chunk in chunks:
        yield chunk
        sent_s += chunk.size / rate
        delay = started + sent_s / pace - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


def _with_tail(audio: np.ndarray) -> np.ndarray:
    return np.concatenate([audio, np.zeros(int(TAIL_SILENCE_S * SAMPLE_RATE), np.float32)])


async def play_local(
    session: StreamingSession, audio: np.ndarray, *, pace: float = 1.0, tentative: bool = True
) -> AsyncIterator[tuple[float, dict[str, Any]]]:
    """Feed 16 kHz ``audio`` into ``session`` at ``pace`` x real time; yield its events as
    Realtime server events (``tentative``: with whisperpool's ``partial`` events too)."""
    audio = _with_tail(audio)
    events = RealtimeEvents(tentative=tentative)
    started = time.perf_counter()

    async def feed() -> None:
        async for chunk in _paced(_chunks(audio, SAMPLE_RATE), SAMPLE_RATE, pace, started):
            session.feed(chunk, SAMPLE_RATE)
        await session.close()

    feeder = asyncio.create_task(feed())
    try:
        async for event in session:
            t = time.perf_counter() - started
            for message in events.translate(event):
                yield t, message
        await feeder
    finally:
        feeder.cancel()


QUIET_S = 1.0  # after the last chunk: how long to wait for the server's last events when nothing is open


async def play_realtime(
    url: str,
    audio: np.ndarray,
    *,
    pace: float = 1.0,
    rate: int = 24_000,
    language: str | None = None,
    model: str | None = None,
    vad: bool = True,
    api_key: str | None = None,
    timeout_s: float = 60.0,
) -> AsyncIterator[tuple[float, dict[str, Any]]]:
    """Play 16 kHz ``audio`` to ``url``'s ``/v1/realtime`` as pcm16 at ``rate``; yield server events.

    ``model`` names one of the server's models (None: its default, as ``whisper-1``).

    Ends once the last sample was sent and every utterance is completed, with no event
    for ``QUIET_S`` (or ``timeout_s`` after the last sample, or when the server closes).
    """
    try:
        import websockets
    except ImportError:
        raise MissingDependency(
            "speaking the Realtime protocol needs the 'server' extra: pip install 'whisperpool[server]'"
        ) from None

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    pcm = np.clip(resample(_with_tail(audio), SAMPLE_RATE, target=rate), -1, 1)
    pcm16 = (pcm * 32767).astype("<i2")
    update = {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": rate},
                    "transcription": {"model": model or "whisper-1", **({"language": language} if language else {})},
                    "turn_detection": {"type": "server_vad"} if vad else None,
                }
            },
        },
    }
    async with websockets.connect(ws_url(url), additional_headers=headers, max_size=2**24) as ws:
        await ws.send(json.dumps(update))
        started = time.perf_counter()
        done_sending = asyncio.Event()

        async def send() -> None:
            async for chunk in _paced(_chunks(pcm16, rate), rate, pace, started):
                await ws.send(
                    json.dumps(
                        {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk.tobytes()).decode()}
                    )
                )
            if not vad:
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            done_sending.set()

        sender = asyncio.create_task(send())
        open_items: set[str] = set()
        deadline: float | None = None
        quiet_at = 0.0  # when sending ended: nothing open and quiet for QUIET_S after it ends the play
        try:
            while True:
                now = time.perf_counter()
                if done_sending.is_set() and deadline is None:
                    deadline, quiet_at = now + timeout_s, now + QUIET_S
                wait = 0.25 if deadline is None else max(0.0, min(0.25, deadline - now))
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=wait)
                except asyncio.TimeoutError:
                    now = time.perf_counter()
                    if deadline is not None and (now >= deadline or (not open_items and now >= quiet_at)):
                        break
                    continue
                except websockets.ConnectionClosed:  # the server ended the session (idle, shutdown)
                    break
                event = json.loads(raw)
                kind = event.get("type")
                if kind in ("input_audio_buffer.committed", "input_audio_buffer.speech_started"):
                    open_items.add(event["item_id"])
                elif kind in (COMPLETED, FAILED):
                    open_items.discard(event["item_id"])
                yield time.perf_counter() - started, event
                if done_sending.is_set() and not open_items and kind.endswith((".completed", ".failed")):
                    break
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


__all__ = ["play_local", "play_realtime"]
