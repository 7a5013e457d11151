"""The engine's async API, its synchronous facade and its events, on the fake backend."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from conftest import WAIT, clip, fake_config, pid_alive, samples, wait_for
from whisperpool import InvalidAudio, PoolFailed, TranscriptionEngine, WorkerState
from whisperpool.testing import FakeBehavior


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, WAIT * 2))


def test_async_engine_transcribes_paths_bytes_and_arrays_and_closes():
    events: list[tuple[str, object, bool]] = []
    on_loop: list[bool] = []

    async def main():
        engine = TranscriptionEngine(fake_config(pool_size=2))
        loop_thread = threading.current_thread()
        for name in ("initialized", "ready", "warmed_up", "all_workers_warm"):
            engine.on(name, lambda payload, name=name: events.append((name, payload)))
        engine.on("worker_state_changed", lambda e: on_loop.append(threading.current_thread() is loop_thread))
        async with engine:
            assert [n for n, _ in events if n == "ready"] == ["ready"]
            results = await asyncio.gather(
                engine.transcribe(clip("fox")),
                engine.transcribe(clip("fox").read_bytes()),
                engine.transcribe(np.zeros(8000, np.float32)),
                engine.transcribe(np.zeros(16000, np.int16), sample_rate=32000),
            )
            pids = [w.pid for w in engine.status().workers]
        return results, pids, engine

    results, pids, engine = run(main())
    assert [r.text for r in results] == ["55015 samples", "55015 samples", "8000 samples", "8000 samples"]
    assert {r.worker_id for r in results} == {0, 1}  # spread over both workers
    assert [n for n, _ in events].count("ready") == 1
    ready = next(p for n, p in events if n == "ready")
    assert ready.warm_workers == 2
    assert on_loop and all(on_loop)  # engine callbacks run on the event loop
    assert not any(pid_alive(pid) for pid in pids)
    assert {w.state for w in engine.status().workers} == {WorkerState.TERMINATED}


def test_decoding_options_travel_with_the_request():
    async def main():
        async with TranscriptionEngine(fake_config(pool_size=1)) as engine:
            default = await engine.transcribe(np.zeros(1600, np.float32))
            german = await engine.transcribe(np.zeros(1600, np.float32), language="de")
            return default.language, german.language

    assert run(main()) == ("en", "de")


def test_bad_input_fails_alone_with_a_clear_error(tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3 but not really an mp3" * 10)

    async def main():
        async with TranscriptionEngine(fake_config(pool_size=1)) as engine:
            outcomes = await asyncio.gather(
                engine.transcribe(bad), engine.transcribe(clip("fox")), return_exceptions=True
            )
            return outcomes, engine.status()

    (error, good), status = run(main())
    assert isinstance(error, InvalidAudio) and "bad.mp3" in str(error)
    assert good.text == "55015 samples"
    assert status.warm_workers == 1 and status.failed_workers == 0


def test_sync_facade_and_with_block():
    with TranscriptionEngine(fake_config(pool_size=1)) as engine:
        assert engine.warm_up_summary.succeeded == 1
        assert engine.transcribe_sync(clip("fox")).text == "55015 samples"
        pid = engine.status().workers[0].pid
    assert not pid_alive(pid)


def test_start_failure_raises_and_leaves_no_process():
    engine = TranscriptionEngine(fake_config(pool_size=2, fake=FakeBehavior(fail_warmup_workers={0, 1})))
    with pytest.raises(PoolFailed):
        with engine:
            pass
    assert not any(pid_alive(w.pid) for w in engine.status().workers)


def test_background_start_serves_requests_that_arrive_while_warming():
    async def main():
        engine = TranscriptionEngine(fake_config(pool_size=1, fake=FakeBehavior(load_delay_s=1.0)))
        ready = asyncio.Event()
        engine.on("ready", lambda _p: ready.set())
        await engine.start(wait=False)
        assert not engine.status().ready
        result = await engine.transcribe(np.zeros(1623, np.float32))
        await asyncio.wait_for(ready.wait(), WAIT)
        await engine.close()
        return result

    assert run(main()).text == "1623 samples"


def test_submit_refuses_at_once_delivers_segments_in_the_loop_and_cancels_a_queued_request():
    from whisperpool import QueueFull

    async def run():
        config = fake_config(pool_size=1, max_queue=1, fake=FakeBehavior(inference_delay_s=0.5))
        async with TranscriptionEngine(config) as engine:
            assert engine.readiness().state == "ready" and engine.readiness().to_dict()["warm_workers"] == 1
            loop_thread = threading.get_ident()
            seen: list[tuple[str, bool]] = []
            running = engine.submit(
                samples(800), on_segment=lambda s: seen.append((s.text, threading.get_ident() == loop_thread))
            )
            assert wait_for(lambda: engine.status().busy_workers == 1)
            queued = engine.submit(samples(1600))
            with pytest.raises(QueueFull):
                engine.submit(samples(3200))  # raised now, not when awaited
            queued.cancel()  # as the server does when its client disconnects
            result = await running
            await engine.submit(samples(400))  # would wait behind the cancelled one if it were queued
            return result, seen, engine.status()

    result, seen, status = asyncio.run(asyncio.wait_for(run(), WAIT))
    assert result.text == "800 samples" and seen == [("800 samples", True)]
    assert status.requests_completed == 2  # the cancelled request never ran


def test_readiness_says_failed_when_every_worker_failed():
    from whisperpool.engine import Readiness

    engine = TranscriptionEngine(fake_config(pool_size=1, fake=FakeBehavior(fail_warmup_workers=frozenset(range(8)))))
    with pytest.raises(PoolFailed):
        engine.start_sync()
    try:
        readiness = engine.readiness()
        assert readiness.state == "failed" and not readiness.ready
        assert readiness.to_dict()["failed_workers"] == 1
        assert Readiness.of(engine.status()).state == "failed"
    finally:
        engine.close_sync()
