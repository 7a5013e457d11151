"""One trace (:mod:`.traces`) replayed on one pool, through the engine, on the clock.

Each request is submitted at its time in the trace whatever the pool's state, and each
streaming session starts at its time and is fed at real-time pace (as
``bench --streaming`` does), so a slow pool falls behind the way it would in service.
Measured: each request's latency (submit to result, as the pool times it), each
stream's final latencies (from the end of a sentence's audio to its final text), and
the worker-seconds spent (live workers - warming, warm or busy - sampled every
``SAMPLE_S``, until the trace has ended and every request is answered).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from .. import DecodeOptions, PoolConfig, TranscriptionEngine
from ..streaming.client import play_local
from .traces import Trace, speech, stream_speech

SAMPLE_S = 0.1
COMPLETED = "conversation.item.input_audio_transcription.completed"


def audio_of(trace: Trace) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The trace's request clips and stream audio, built before any clock starts."""
    return [speech(r.clip_s, r.clip_seed) for r in trace.requests], [stream_speech(s) for s in trace.streams]


async def replay(config: PoolConfig, trace: Trace, decode: DecodeOptions) -> dict[str, Any]:
    clips, streams = audio_of(trace)
    async with TranscriptionEngine(config) as engine:
        scaled: list[dict[str, Any]] = []
        engine.on(
            "pool_scaled",
            lambda e: scaled.append(
                {"t": time.monotonic(), "direction": e.direction, "reason": e.reason, "workers": e.worker_ids}
            ),
        )
        await engine.transcribe(clips[0], options=decode)  # every pool has served once before the clock starts
        started = time.monotonic()

        async def at(t: float) -> None:
            await asyncio.sleep(max(0.0, started + t - time.monotonic()))

        async def request(i: int) -> Any:
            await at(trace.requests[i].at)
            return await engine.transcribe(clips[i], options=decode)

        async def stream(i: int) -> list[float]:
            await at(trace.streams[i].at)
            events = [x async for x in play_local(engine.stream(options=decode), streams[i])]
            return [t - e["end_s"] for t, e in events if e["type"] == COMPLETED]

        tasks = [asyncio.create_task(request(i)) for i in range(len(clips))]
        tasks += [asyncio.create_task(stream(i)) for i in range(len(streams))]
        samples: list[int] = []
        warm_ups: dict[int, float] = {}
        while True:
            s = engine.status()
            samples.append(s.total_workers - s.failed_workers)
            warm_ups.update((w.id, w.warm_up_s) for w in s.workers if w.warm_up_s is not None)
            if time.monotonic() - started >= trace.seconds and all(t.done() for t in tasks):
                break
            await asyncio.sleep(SAMPLE_S)
        results = [t.result() for t in tasks[: len(clips)]]
        finals = [t.result() for t in tasks[len(clips) :]]
        status = engine.status()
    for e in scaled:
        e["t"] = round(e["t"] - started, 2)
    started_up = sorted({i for e in scaled if e["direction"] == "up" for i in e["workers"]})
    return {
        "latencies_s": [r.timings.total_s for r in results],
        "queue_wait_s": [r.timings.queue_wait_s for r in results],
        "inference_s": [r.timings.inference_s for r in results],
        "clip_s": [c.size / 16_000 for c in clips],
        "stream_final_s": [x for f in finals for x in f],
        "worker_seconds": float(sum(samples) * SAMPLE_S),
        "duration_s": len(samples) * SAMPLE_S,
        "threads": sorted({w.threads for w in status.workers}),
        "scale_up_warm_up_s": [warm_ups[i] for i in started_up if i in warm_ups],
        "scale_events": scaled,
        "scale_ups": status.scale_ups,
        "scale_downs": status.scale_downs,
    }


def run(config: PoolConfig, trace: Trace, decode: DecodeOptions) -> dict[str, Any]:
    return asyncio.run(replay(config, trace, decode))


__all__ = ["SAMPLE_S", "audio_of", "replay", "run"]
