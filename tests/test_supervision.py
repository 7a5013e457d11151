"""Supervision, with real faults injected into real worker processes (fake backend)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import WAIT, pid_alive, samples, wait_for
from test_pool_fake import Recorder, wait_running
from whisperpool import DecodeOptions, WorkerState
from whisperpool.testing import FakeBehavior

EVENTS = ["worker_failed", "worker_restarted", "worker_recycled", "worker_state_changed", "warm_up_failed"]


def test_a_worker_killed_while_idle_is_detected_and_replaced(make_pool):
    pool = make_pool(pool_size=2, ping_interval_s=None)  # the sentinel alone must tell us
    rec = Recorder(pool, EVENTS)
    pool.warm_up_all_workers(timeout=WAIT)
    victim = pool.get_status().workers[0]
    killed_at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    assert wait_for(lambda: len(rec.of("worker_failed")) == 1, timeout=5)
    assert time.monotonic() - killed_at < 2.0  # at once, not at some polling tick
    (failed,) = rec.of("worker_failed")
    assert failed.worker_id == victim.id and "exit code -9" in failed.reason and not failed.during_warm_up
    assert wait_for(lambda: pool.get_status().warm_workers == 2)
    (restarted,) = rec.of("worker_restarted")
    assert restarted.replaces == victim.id and restarted.slot == victim.slot
    status = pool.get_status()
    assert (status.worker_crashes, status.worker_restarts, status.failed_workers) == (1, 1, 0)
    assert victim.pid not in {w.pid for w in status.workers}
    results = [pool.submit(samples(5 + i)) for i in range(2)]
    assert {f.result(timeout=WAIT).worker_id for f in results} <= {w.id for w in status.workers}


def test_a_worker_killed_mid_request_loses_nothing(make_pool):
    pool = make_pool(pool_size=2, fake=FakeBehavior(inference_delay_s=1.0))
    pool.warm_up_all_workers(timeout=WAIT)
    futures = [pool.submit(samples(300 + i)) for i in range(4)]
    wait_running(futures[0])
    busy = next(w for w in pool.workers if w.job is not None)
    os.kill(busy.pid, signal.SIGKILL)
    texts = sorted(f.result(timeout=WAIT).text for f in futures)
    assert texts == [f"{300 + i} samples" for i in range(4)]  # every request got its answer
    status = pool.get_status()
    assert status.requests_retried == 1 and status.requests_failed == 0 and status.worker_crashes == 1
    assert wait_for(lambda: pool.get_status().warm_workers == 2)


def test_an_idle_worker_that_stops_answering_pings_is_replaced(make_pool):
    pool = make_pool(pool_size=2, ping_interval_s=0.2, ping_timeout_s=0.5, stop_timeout_s=1.0)
    rec = Recorder(pool, EVENTS)
    pool.warm_up_all_workers(timeout=WAIT)
    assert wait_for(lambda: all(w.ping_rtt_ms is not None for w in pool.get_status().workers))
    frozen = pool.get_status().workers[1]
    os.kill(frozen.pid, signal.SIGSTOP)  # alive, but answers nothing: a hang
    try:
        assert wait_for(lambda: any("health ping" in e.reason for e in rec.of("worker_failed")))
        # SIGTERM does not move a stopped process; the escalation to SIGKILL must.
        assert wait_for(lambda: not pid_alive(frozen.pid), timeout=10)
        assert wait_for(lambda: pool.get_status().warm_workers == 2)
    finally:
        if pid_alive(frozen.pid):
            os.kill(frozen.pid, signal.SIGKILL)
    status = pool.get_status()
    assert status.worker_restarts == 1 and status.ready
    # The replacement is pinged too, and answers.
    assert wait_for(lambda: all(w.ping_rtt_ms is not None for w in pool.get_status().workers))
    assert all(w.ping_rtt_ms < 500 for w in pool.get_status().workers)


def test_a_crash_loop_backs_off_then_gives_up_and_the_rest_keeps_serving(make_pool):
    pool = make_pool(
        pool_size=2,
        max_restarts=3,
        restart_backoff_s=0.2,
        restart_backoff_max_s=0.5,
        fake=FakeBehavior(crash_warmup_workers={1}),
    )
    rec = Recorder(pool, EVENTS)
    failed_at: list[float] = []
    started_at: list[float] = []
    pool.on("worker_failed", lambda e: failed_at.append(time.monotonic()))
    pool.on("worker_restarted", lambda e: started_at.append(time.monotonic()))
    pool.warm_up_all_workers(timeout=WAIT)
    assert wait_for(lambda: "gave up" in (pool.get_status().workers[1].error or ""))
    slot1 = pool.get_status().workers[1]
    assert slot1.state is WorkerState.FAILED
    assert "gave up after 4 failed warm-ups in a row" in slot1.error and "exit code -9" in slot1.error
    assert len(rec.of("worker_restarted")) == 3 and len(rec.of("warm_up_failed")) == 4
    waits = [start - fail for fail, start in zip(failed_at, started_at, strict=False)]
    # 0.2 s, doubled to 0.4 s, then capped at 0.5 s (the manager wakes for each deadline)
    assert 0.19 <= waits[0] < 0.35 and 0.39 <= waits[1] < 0.6 and 0.49 <= waits[2] < 0.7, waits
    status = pool.get_status()
    assert (status.warm_workers, status.failed_workers, status.ready) == (1, 1, True)
    assert pool.transcribe(samples(8), timeout=WAIT).text == "8 samples"


def test_a_flaky_warm_up_recovers_after_backoff(make_pool):
    pool = make_pool(
        pool_size=2,
        restart_backoff_s=0.3,
        fake=FakeBehavior(flaky_warmup_workers={0}, flaky_until=time.time() + 1.5),
    )
    summary = pool.warm_up_all_workers(timeout=WAIT)
    assert summary.failed == 1 and "flaky" in summary.errors[0]
    assert wait_for(lambda: pool.get_status().warm_workers == 2)
    assert pool.get_status().worker_restarts >= 1 and pool.get_status().failed_workers == 0


def test_planned_recycling_warms_the_replacement_first_and_is_no_crash(make_pool):
    behavior = FakeBehavior(load_delay_s=0.3, inference_delay_s=0.25)
    pool = make_pool(pool_size=1, max_requests_per_worker=3, fake=behavior)
    rec = Recorder(pool, EVENTS)
    pool.warm_up_all_workers(timeout=WAIT)
    texts = []
    for i in range(14):
        texts.append(pool.transcribe(samples(400 + i), timeout=WAIT).text)
        status = pool.get_status()
        assert status.warm_workers + status.busy_workers >= 1  # capacity never dipped
    assert texts == [f"{400 + i} samples" for i in range(14)]
    assert wait_for(lambda: pool.get_status().workers_recycled >= 2)
    recycled = rec.of("worker_recycled")
    assert all("served 3 requests" in e.reason for e in recycled)

    def state_changes():
        return [(e.worker_id, e.new) for e in rec.of("worker_state_changed")]

    assert wait_for(lambda: all((e.worker_id, WorkerState.TERMINATED) in state_changes() for e in recycled))
    changes = state_changes()
    for e in recycled:  # the successor was warm before the old worker left
        assert changes.index((e.successor, WorkerState.WARM)) < changes.index((e.worker_id, WorkerState.TERMINATED))
    status = pool.get_status()
    assert rec.of("worker_failed") == [] and status.worker_crashes == 0 and status.requests_failed == 0


def test_recycling_on_memory(make_pool):
    pool = make_pool(pool_size=1, max_worker_rss_mb=1.0)  # every real process is over 1 MiB
    rec = Recorder(pool, EVENTS)
    pool.warm_up_all_workers(timeout=WAIT)
    pool.transcribe(samples(10), timeout=WAIT)
    assert wait_for(lambda: len(rec.of("worker_recycled")) == 1)
    assert "resident memory" in rec.of("worker_recycled")[0].reason
    assert pool.get_status().workers[0].rss_mb > 1.0


def test_close_with_drain_finishes_in_flight_work(make_pool):
    pool = make_pool(pool_size=2, fake=FakeBehavior(inference_delay_s=0.4))
    pool.warm_up_all_workers(timeout=WAIT)
    futures = [pool.submit(samples(500 + i)) for i in range(6)]
    wait_running(futures[0])
    pool.close(drain=True, timeout=20.0)
    assert [f.result(timeout=0).text for f in futures] == [f"{500 + i} samples" for i in range(6)]


PARENT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from whisperpool import PoolConfig, ProcessPool
    from whisperpool.testing import FakeBehavior

    if __name__ == "__main__":
        pool = ProcessPool(PoolConfig(pool_size=2, backend="fake"))
        pool.warm_up_all_workers(timeout=60)
        if sys.argv[1] == "busy":  # one worker is in the middle of a request that never ends
            audio = np.zeros(100, np.float32)
            audio[0] = FakeBehavior().hang_marker
            future = pool.submit(audio)
            deadline = time.monotonic() + 30
            while not future.running() and time.monotonic() < deadline:  # bounded: until a worker has it
                time.sleep(0.01)
        print(" ".join(str(w.pid) for w in pool.workers), flush=True)
        time.sleep(120)  # stays alive until the test kills it
    """
)


@pytest.mark.parametrize("mode", ["idle", "busy"])
def test_no_worker_outlives_a_killed_parent(tmp_path, mode):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 3 and all(map(pid_alive, pids))  # two and the default express worker
        parent.kill()  # SIGKILL: no cleanup runs in the parent
        parent.wait(timeout=10)
        killed = time.monotonic()
        assert wait_for(lambda: not any(map(pid_alive, pids)), timeout=5.0)
        assert time.monotonic() - killed < 5.0
    finally:
        parent.kill()


def test_events_and_submits_from_many_threads_stay_consistent(make_pool):
    pool = make_pool(pool_size=2, fake=FakeBehavior(inference_delay_s=0.01))
    pool.warm_up_all_workers(timeout=WAIT)
    results: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        for i in range(10):
            text = pool.transcribe(samples(1000 * k + i), timeout=WAIT).text
            with lock:
                results.append(text)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert sorted(results) == sorted(f"{1000 * k + i} samples" for k in range(1, 5) for i in range(10))
    status = pool.get_status()
    assert status.requests_completed == 40 and status.queue_depth == 0


def test_a_worker_that_dies_while_being_recycled_leaves_one_worker_in_its_slot(make_pool):
    pool = make_pool(pool_size=1, max_requests_per_worker=1, fake=FakeBehavior(load_delay_s=1.0))
    rec = Recorder(pool, EVENTS)
    pool.warm_up_all_workers(timeout=WAIT)
    old = pool.get_status().workers[0]
    assert pool.transcribe(samples(3), timeout=WAIT).text == "3 samples"  # reaches its limit
    assert wait_for(lambda: pool.get_status().warming_workers == 1)  # its successor warms up
    os.kill(old.pid, signal.SIGKILL)
    assert wait_for(lambda: pool.get_status().warm_workers == 1 and pool.get_status().total_workers == 1)
    time.sleep(0.5)  # a fixed window on purpose: nothing else may be started for the slot during it
    status = pool.get_status()
    assert status.total_workers == 1 and rec.of("worker_restarted") == []
    assert pool.transcribe(samples(4), timeout=WAIT).text == "4 samples"


def test_a_busy_worker_relieved_by_its_warm_successor_drains_its_request_then_leaves(make_pool):
    behavior = FakeBehavior(inference_delay_s=0.4)
    pool = make_pool(pool_size=1, max_requests_per_worker=1, fake=behavior, decode=DecodeOptions(window="full"))
    rec = Recorder(pool, EVENTS)
    pool.warm_up_all_workers(timeout=WAIT)
    old = pool.get_status().workers[0].id
    futures = [pool.submit(samples(700 + i)) for i in range(8)]  # keeps the old worker busy
    assert [f.result(timeout=WAIT).text for f in futures] == [f"{700 + i} samples" for i in range(8)]

    def changes():
        return [(e.worker_id, e.old, e.new) for e in rec.of("worker_state_changed")]

    assert wait_for(lambda: (old, WorkerState.STOPPING, WorkerState.TERMINATED) in changes())
    seen = changes()
    successor = rec.of("worker_recycled")[0].successor
    warm = seen.index((successor, WorkerState.WARMING, WorkerState.WARM))
    draining = seen.index((old, WorkerState.PROCESSING, WorkerState.DRAINING))
    assert warm < draining < seen.index((old, WorkerState.DRAINING, WorkerState.STOPPING))
    status = pool.get_status()
    assert status.requests_failed == 0 and status.worker_crashes == 0 and status.workers_recycled >= 1


def test_a_stopped_worker_handed_a_large_request_never_blocks_the_pool(make_pool):
    # SIGSTOP an idle worker, then hand it more audio than a socket buffers: the send
    # cannot finish. The manager must not wait on it: status answers at once, the worker
    # is replaced after send_timeout_s, and the request is served by its replacement.
    pool = make_pool(pool_size=1, send_timeout_s=1.0, ping_interval_s=None, split_above_s=None)
    pool.warm_up_all_workers(timeout=WAIT)
    (stopped,) = pool.get_status().workers
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        future = pool.submit(samples(16_000 * 300))  # 5 minutes of float32 audio: 19 MB
        assert wait_for(lambda: pool.get_status().busy_workers == 1)
        started = time.monotonic()
        status = pool.get_status()
        assert time.monotonic() - started < 1.0 and status.busy_workers == 1
        assert future.result(timeout=WAIT).text == f"{16_000 * 300} samples"
    finally:
        if pid_alive(stopped.pid):
            os.kill(stopped.pid, signal.SIGKILL)
    status = pool.get_status()
    assert status.requests_retried == 1 and status.worker_crashes == 1
    assert wait_for(lambda: not pid_alive(stopped.pid))
