"""The pool's mechanics and failures, driven by the fake backend in real worker processes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import pytest

from conftest import WAIT, pid_alive, samples, wait_for
from whisperpool import (
    DecodeOptions,
    PoolClosed,
    PoolFailed,
    QueueFull,
    RequestTimeout,
    TranscriptionError,
    WorkerCrashed,
    WorkerState,
)
from whisperpool.testing import FakeBehavior


def wait_running(*futures) -> None:
    """Bounded wait until a worker has taken each of ``futures``."""
    deadline = time.monotonic() + WAIT
    while not all(f.running() or f.done() for f in futures) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(f.running() or f.done() for f in futures)


class Recorder:
    """Collects events (they arrive on the manager thread)."""

    def __init__(self, pool, names):
        self.events: list[tuple[str, object]] = []
        self.lock = threading.Lock()
        for name in names:
            pool.on(name, self._handler(name))

    def _handler(self, name):
        def handle(payload):
            with self.lock:
                self.events.append((name, payload))

        return handle

    def of(self, name):
        with self.lock:
            return [p for n, p in self.events if n == name]


ALL = ["initialized", "worker_state_changed", "warm_up_failed", "ready", "warmed_up", "all_workers_warm"]


def test_warm_up_runs_in_parallel(make_pool):
    # Each worker sleeps 1.5 s while "loading": in series three would take 4.5 s or more.
    pool = make_pool(pool_size=3, fake=FakeBehavior(load_delay_s=1.5))
    summary = pool.warm_up_all_workers(timeout=WAIT)
    status = pool.get_status()
    assert summary.succeeded == 3 and summary.failed == 0
    assert all(w.load_s >= 1.5 for w in status.workers)
    assert summary.total_s < 1.5 * 3, summary
    starts = [w.warmup_started for w in pool.workers]
    ends = [w.warmup_started + w.warm_up_s for w in pool.workers]
    assert max(starts) - min(starts) < 1.0  # all were started together
    assert max(starts) < min(ends)  # and every warm-up overlapped every other one


def test_ready_with_one_of_three_failed_and_events_fire_once(make_pool):
    pool = make_pool(pool_size=3, fake=FakeBehavior(fail_warmup_workers={1}))
    rec = Recorder(pool, ALL)
    summary = pool.warm_up_all_workers(timeout=WAIT)
    assert (summary.succeeded, summary.failed) == (2, 1)
    assert "fake load failure in worker slot 1" in summary.errors[1]
    assert len(rec.of("initialized")) == 1 and rec.of("initialized")[0].total_workers == 3
    assert len(rec.of("ready")) == 1
    (warmed,) = rec.of("warmed_up")
    assert (warmed.succeeded, warmed.failed) == (2, 1) and warmed.total_s > 0
    assert rec.of("all_workers_warm") == []
    (failed,) = rec.of("warm_up_failed")
    assert failed.worker_id == 1 and "slot 1" in failed.error
    status = pool.get_status()
    assert (status.warm_workers, status.failed_workers, status.ready) == (2, 1, True)
    assert pool.transcribe(samples(320), timeout=WAIT).text == "320 samples"


def test_all_workers_warm_fires_once_with_counts(make_pool):
    pool = make_pool(pool_size=2)
    rec = Recorder(pool, ALL)
    pool.warm_up_all_workers(timeout=WAIT)
    (all_warm,) = rec.of("all_workers_warm")
    assert all_warm.total_workers == 2
    (warmed,) = rec.of("warmed_up")
    assert (warmed.succeeded, warmed.failed) == (2, 0)
    assert len(rec.of("ready")) == 1
    changes = [(e.worker_id, e.old, e.new) for e in rec.of("worker_state_changed")]
    for wid in (0, 1):
        assert [c[1:] for c in changes if c[0] == wid] == [
            (WorkerState.COLD, WorkerState.WARMING),
            (WorkerState.WARMING, WorkerState.WARM),
        ]


def test_all_failed_raises_the_pool_error_naming_each_reason(make_pool):
    pool = make_pool(pool_size=2, fake=FakeBehavior(fail_warmup_workers={0, 1}))
    rec = Recorder(pool, ALL)
    with pytest.raises(PoolFailed, match="worker 0: .*slot 0.*worker 1: .*slot 1"):
        pool.warm_up_all_workers(timeout=WAIT)
    with pytest.raises(PoolFailed):
        pool.submit(samples())
    assert rec.of("ready") == [] and len(rec.of("warmed_up")) == 1
    assert len(rec.of("warm_up_failed")) == 2
    assert pool.get_status().failed_workers == 2


def test_a_crash_or_hang_at_warm_up_fails_that_worker_only(make_pool):
    pool = make_pool(
        pool_size=3,
        warmup_timeout_s=4.0,
        fake=FakeBehavior(crash_warmup_workers={0}, hang_warmup_workers={1}),
    )
    started = time.monotonic()
    summary = pool.warm_up_all_workers(timeout=WAIT)
    assert summary.succeeded == 1
    assert "exited unexpectedly (exit code -9)" in summary.errors[0]
    assert "did not finish within 4 s" in summary.errors[1]
    assert time.monotonic() - started < 4.0 + 5.0
    assert pool.transcribe(samples(100), timeout=WAIT).worker_id == 2


def test_queue_is_fifo_with_one_worker(make_pool):
    pool = make_pool(pool_size=1, fake=FakeBehavior(inference_delay_s=0.05))
    pool.warm_up_all_workers(timeout=WAIT)
    order: list[int] = []
    futures = []
    for n in range(1, 9):
        fut = pool.submit(samples(1000 + n))
        fut.add_done_callback(lambda f: order.append(int(f.result().text.split()[0]) - 1000))
        futures.append(fut)
    results = [f.result(timeout=WAIT) for f in futures]
    assert order == list(range(1, 9))
    waits = [r.timings.queue_wait_s for r in results]
    assert waits == sorted(waits)  # each waited behind the ones before it


def test_lower_priority_value_goes_first(make_pool):
    pool = make_pool(pool_size=1, fake=FakeBehavior(inference_delay_s=0.2))
    pool.warm_up_all_workers(timeout=WAIT)
    order: list[str] = []
    blocker = pool.submit(samples(1))  # occupies the only worker
    wait_running(blocker)
    batch = [pool.submit(samples(10 + i), priority=10) for i in range(3)]
    live = pool.submit(samples(99), priority=0)
    for fut in [blocker, *batch, live]:
        fut.add_done_callback(lambda f: order.append(f.result().text))
    for fut in [blocker, *batch, live]:
        fut.result(timeout=WAIT)
    assert order[:2] == ["1 samples", "99 samples"]


def test_status_numbers_add_up_while_busy(make_pool):
    pool = make_pool(pool_size=2, fake=FakeBehavior(inference_delay_s=1.0))
    pool.warm_up_all_workers(timeout=WAIT)
    futures = [pool.submit(samples(100 + i)) for i in range(5)]
    deadline = time.monotonic() + WAIT
    status = pool.get_status()
    while status.busy_workers < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # bounded; we only wait for the dispatch to be visible
        status = pool.get_status()
    assert status.busy_workers == 2 and status.queue_depth == 3
    assert status.total_workers == (
        status.cold_workers + status.warming_workers + status.warm_workers + status.busy_workers + status.failed_workers
    )
    for f in futures:
        f.result(timeout=WAIT)
    status = pool.get_status()
    assert (status.requests_completed, status.requests_failed, status.queue_depth) == (5, 0, 0)
    assert status.warm_workers == 2 and sum(w.requests_served for w in status.workers) == 5
    assert 0.9 < status.latency_p50_s <= status.latency_p95_s < WAIT


def test_warm_up_progress_goes_from_0_to_100(make_pool):
    pool = make_pool(pool_size=2, fake=FakeBehavior(load_delay_s=1.0))
    assert pool.get_status().warm_up_progress == 0.0
    seen = []
    pool.on("worker_state_changed", lambda e: seen.append(pool.get_status().warm_up_progress))
    pool.warm_up_all_workers(timeout=WAIT)
    assert pool.get_status().warm_up_progress == 100.0
    assert seen == sorted(seen) and 0 < seen[0] < 100


def test_a_request_that_raises_fails_alone_and_the_worker_lives(make_pool):
    pool = make_pool(pool_size=1)
    pool.warm_up_all_workers(timeout=WAIT)
    pid = pool.get_status().workers[0].pid
    with pytest.raises(TranscriptionError, match="told to fail") as info:
        pool.transcribe(samples(first=FakeBehavior().error_marker), timeout=WAIT)
    assert "Traceback" in str(info.value.__cause__)  # the worker's traceback travels
    assert pool.transcribe(samples(50), timeout=WAIT).text == "50 samples"
    status = pool.get_status()
    assert status.workers[0].pid == pid and status.requests_failed == 1 and status.requests_completed == 1


def test_a_poison_request_is_retried_once_then_refused_and_the_pool_heals(make_pool):
    pool = make_pool(pool_size=2, fake=FakeBehavior(inference_delay_s=0.3))
    pool.warm_up_all_workers(timeout=WAIT)
    good = [pool.submit(samples(200 + i)) for i in range(3)]
    bad = pool.submit(samples(first=FakeBehavior().crash_marker))
    with pytest.raises(WorkerCrashed, match="refused as poison: it crashed 2 workers"):
        bad.result(timeout=WAIT)
    assert sorted(f.result(timeout=WAIT).text for f in good) == ["200 samples", "201 samples", "202 samples"]
    assert wait_for(lambda: pool.get_status().warm_workers == 2)  # both replaced and warm again
    status = pool.get_status()
    assert (status.worker_crashes, status.worker_restarts, status.requests_retried) == (2, 2, 1)
    assert status.failed_workers == 0 and {w.id for w in status.workers} == {2, 3}
    assert pool.transcribe(samples(9), timeout=WAIT).text == "9 samples"


def test_a_hung_request_times_out_and_its_worker_is_replaced(make_pool):
    pool = make_pool(pool_size=2)
    pool.warm_up_all_workers(timeout=WAIT)
    pids = {w.pid for w in pool.get_status().workers}
    hung = pool.submit(samples(first=FakeBehavior().hang_marker), timeout=1.0)
    with pytest.raises(RequestTimeout, match="while being transcribed"):
        hung.result(timeout=WAIT)
    assert wait_for(lambda: pool.get_status().warm_workers == 2 and pool.get_status().worker_restarts == 1)
    now = {w.pid for w in pool.get_status().workers}
    (gone,) = pids - now
    assert wait_for(lambda: not pid_alive(gone))
    assert pool.transcribe(samples(60), timeout=WAIT).text == "60 samples"


def test_a_request_can_time_out_in_the_queue(make_pool):
    pool = make_pool(pool_size=1, fake=FakeBehavior(inference_delay_s=1.5))
    pool.warm_up_all_workers(timeout=WAIT)
    first = pool.submit(samples(1))
    queued = pool.submit(samples(2), timeout=0.5)
    with pytest.raises(RequestTimeout, match="in the queue"):
        queued.result(timeout=WAIT)
    assert first.result(timeout=WAIT).text == "1 samples"  # the running request is untouched


def test_queue_full_and_cancel_leaves_the_queue(make_pool):
    pool = make_pool(pool_size=1, max_queue=2, fake=FakeBehavior(inference_delay_s=0.5))
    pool.warm_up_all_workers(timeout=WAIT)
    running = pool.submit(samples(1))
    wait_running(running)  # so the two below are the whole queue
    a, b = pool.submit(samples(2)), pool.submit(samples(3))
    with pytest.raises(QueueFull, match="2 waiting"):
        pool.submit(samples(4))
    assert b.cancel()
    with pytest.raises(CancelledError):
        b.result(timeout=WAIT)
    assert a.result(timeout=WAIT).text == "2 samples" and running.result(timeout=WAIT).text == "1 samples"
    assert pool.get_status().queue_depth == 0


def test_streamed_segments_arrive_before_the_result(make_pool):
    pool = make_pool(pool_size=1)
    pool.warm_up_all_workers(timeout=WAIT)
    seen = []
    fut = pool.submit(samples(640), on_segment=lambda s: seen.append((s.text, fut.done())))
    result = fut.result(timeout=WAIT)
    assert seen == [("640 samples", False)] and result.segments[0].text == "640 samples"


def test_requests_submitted_while_warming_wait_for_readiness(make_pool):
    pool = make_pool(pool_size=1, fake=FakeBehavior(load_delay_s=1.0))
    pool.start()
    fut = pool.submit(samples(77))
    assert pool.get_status().queue_depth == 1 and not pool.get_status().ready
    result = fut.result(timeout=WAIT)
    assert result.text == "77 samples" and result.timings.queue_wait_s > 0.5


def test_close_leaves_no_process_and_fails_what_is_queued(make_pool, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    pool = make_pool(pool_size=2, fake=FakeBehavior(inference_delay_s=0.3))
    pool.warm_up_all_workers(timeout=WAIT)
    pids = [w.pid for w in pool.get_status().workers]
    running = [pool.submit(samples(5)), pool.submit(samples(6))]
    wait_running(*running)
    queued = [pool.submit(samples(7 + i)) for i in range(3)]
    pool.close(timeout=5.0)
    assert [f.result(timeout=0).text for f in running] == ["5 samples", "6 samples"]  # grace let them finish
    for f in queued:
        with pytest.raises(PoolClosed):
            f.result(timeout=0)
    assert not any(pid_alive(pid) for pid in pids)
    assert {w.state for w in pool.get_status().workers} == {WorkerState.TERMINATED}
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(PoolClosed):
        pool.submit(samples())


def test_close_with_drain_serves_the_queue_first(make_pool):
    pool = make_pool(pool_size=1, fake=FakeBehavior(inference_delay_s=0.1))
    pool.warm_up_all_workers(timeout=WAIT)
    futures = [pool.submit(samples(30 + i)) for i in range(4)]
    pool.close(drain=True, timeout=10.0)
    assert [f.result(timeout=0).text for f in futures] == [f"{30 + i} samples" for i in range(4)]


def test_close_during_warm_up_stops_warming_workers(make_pool):
    pool = make_pool(pool_size=2, fake=FakeBehavior(load_delay_s=30.0))
    pool.start()
    assert wait_for(lambda: len([w.pid for w in pool.get_status().workers if w.pid]) == 2)  # both spawned
    pids = [w.pid for w in pool.get_status().workers]
    started = time.monotonic()
    pool.close(timeout=2.0)
    assert time.monotonic() - started < 10.0
    assert not any(pid_alive(pid) for pid in pids)
    with pytest.raises(PoolClosed):
        pool.wait_ready(timeout=0)


def test_an_event_handler_that_raises_does_not_disturb_the_pool(make_pool):
    pool = make_pool(pool_size=1)
    pool.on("worker_state_changed", lambda e: 1 / 0)
    pool.warm_up_all_workers(timeout=WAIT)
    assert pool.transcribe(samples(11), timeout=WAIT).text == "11 samples"


def test_submit_rejects_what_is_not_16k_float32_mono(make_pool):
    pool = make_pool(pool_size=1)
    pool.warm_up_all_workers(timeout=WAIT)
    import numpy as np

    with pytest.raises(TypeError, match="1-D float32"):
        pool.submit(np.zeros(10, dtype=np.int16))


def test_a_request_that_outwaits_warm_up_fails_as_not_ready(make_pool):
    from whisperpool import PoolNotReady

    pool = make_pool(pool_size=1, fake=FakeBehavior(load_delay_s=3.0))
    pool.start()
    fut = pool.submit(samples(5), timeout=0.5)
    with pytest.raises(PoolNotReady, match="no worker became warm within its timeout"):
        fut.result(timeout=WAIT)
    assert pool.transcribe(samples(6), timeout=WAIT).text == "6 samples"  # once warm, it serves


def test_short_windows_and_their_fallbacks_are_counted_by_reason(make_pool):
    pool = make_pool(pool_size=1)
    pool.warm_up_all_workers(timeout=WAIT)
    marker = FakeBehavior().fallback_marker
    assert pool.transcribe(samples(16000), timeout=WAIT).window == "short"
    fell_back = pool.transcribe(samples(16000, first=marker), timeout=WAIT)
    assert (fell_back.window, fell_back.fallback) == ("full", "log_probability")
    assert pool.transcribe(samples(16000), DecodeOptions(window="full"), timeout=WAIT).window == "full"
    assert pool.transcribe(samples(16000 * 25), timeout=WAIT).window == "full"  # too long for a short window
    status = pool.get_status()
    assert status.short_window_requests == 1
    assert status.window_fallbacks == {"log_probability": 1}
    assert status.to_dict()["window_fallbacks"] == {"log_probability": 1}
    assert status.window_retries == {}
    mended = pool.transcribe(samples(16000, first=FakeBehavior().retry_marker), timeout=WAIT)
    assert (mended.window, mended.fallback, mended.retried) == ("short", None, "repetition")
    status = pool.get_status()
    assert status.window_retries == {"repetition": 1} and status.window_fallbacks == {"log_probability": 1}
    assert status.short_window_requests == 2
    # window="short" (a live partial) sends a rejected pass back: it fell back to nothing
    rejected = pool.transcribe(samples(16000, first=marker), DecodeOptions(window="short"), timeout=WAIT)
    assert (rejected.text, rejected.window, rejected.fallback) == ("", "short", "log_probability")
    status = pool.get_status()
    assert status.window_fallbacks == {"log_probability": 1} and status.window_retries == {"repetition": 1}
