"""Express workers: kept for requests that are not a long recording's plan or pieces.

On the fake backend (a recording planned as back-to-back pieces of ``piece_s``, every
piece answered after ``inference_delay_s``): a short request sent while the pieces hold
every general worker starts at once on the express one; no piece ever runs there; an
express worker that dies comes back as one; adaptive sizing neither counts nor retires
it; and the status, the metrics and the defaults say what it is.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from conftest import WAIT, clip, fake_config, samples, wait_for
from whisperpool import DecodeOptions, PoolConfig, ProcessPool
from whisperpool.audio import SAMPLE_RATE, load_audio
from whisperpool.testing import FakeBehavior
from whisperpool.wer import normalize, word_error_rate


def long_config(**changes) -> PoolConfig:
    """Pieces of 2 s, one a job; one express worker unless a test says otherwise."""
    return fake_config(**{"split_above_s": 3.0, "piece_s": 2.0, "piece_batch": 1, "express_workers": 1, **changes})


def express_ids(pool: ProcessPool) -> set[int]:
    return {w.id for w in pool.get_status().workers if w.express}


def test_a_short_request_starts_at_once_while_pieces_hold_every_general_worker(make_pool):
    pool = make_pool(long_config(pool_size=2, fake=FakeBehavior(inference_delay_s=0.6)))
    pool.warm_up_all_workers(timeout=WAIT)
    status = pool.get_status()
    assert (status.total_workers, status.express_workers) == (3, 1)
    (express,) = express_ids(pool)
    long = pool.submit(samples(20 * SAMPLE_RATE))  # ten pieces of 0.6 s on two workers: about 3 s
    assert wait_for(lambda: any(r.pieces_total == 10 for r in pool.get_status().requests))
    assert wait_for(lambda: pool.get_status().busy_workers == 2)
    short = pool.submit(samples(SAMPLE_RATE)).result(WAIT)
    assert short.worker_id == express
    assert short.timings.queue_wait_s < 0.3  # not behind a piece (0.6 s)
    assert not long.done()
    result = long.result(WAIT)
    assert result.pieces == 10 and [s.text for s in result.segments] == ["32000 samples"] * 10
    served = {w.id: w.requests_served for w in pool.get_status().workers}
    assert served[express] == 1  # the short request only: no plan, no piece


def test_pieces_never_go_to_the_express_worker_even_when_it_alone_is_idle(make_pool):
    pool = make_pool(long_config(pool_size=1, fake=FakeBehavior(inference_delay_s=0.2)))
    pool.warm_up_all_workers(timeout=WAIT)
    (express,) = express_ids(pool)
    result = pool.submit(samples(12 * SAMPLE_RATE)).result(WAIT)  # six pieces, one general worker
    assert result.pieces == 6
    status = pool.get_status()
    served = {w.id: w.requests_served for w in status.workers}
    assert served[express] == 0 and status.pieces_completed == 6


def test_a_recording_is_planned_by_the_general_workers_only(make_pool, monkeypatch):
    # 12 s in parts of at least 4 s: one part per general worker (2), not per worker (3)
    from whisperpool.worker.handle import Worker

    plans: list[tuple[int, int]] = []  # (part, worker)
    assign = Worker.assign

    def spy(self, job):
        if job.kind == "plan":
            plans.append((job.round, self.id))
        assign(self, job)

    monkeypatch.setattr(Worker, "assign", spy)
    pool = make_pool(long_config(pool_size=2, plan_span_s=4.0, fake=FakeBehavior(inference_delay_s=0.2)))
    pool.warm_up_all_workers(timeout=WAIT)
    result = pool.transcribe(samples(12 * SAMPLE_RATE), timeout=WAIT)
    assert sorted(part for part, _ in plans) == [0, 1]
    assert not {w for _, w in plans} & express_ids(pool)
    assert sum(int(s.text.split()[0]) for s in result.segments) == 12 * SAMPLE_RATE


def test_a_short_request_takes_the_express_worker_first(make_pool):
    # both idle: the short request leaves the general worker to the recording behind it
    pool = make_pool(long_config(pool_size=1, fake=FakeBehavior(inference_delay_s=1.0)))
    pool.warm_up_all_workers(timeout=WAIT)
    (express,) = express_ids(pool)
    short = pool.submit(samples(1600))
    long = pool.submit(samples(6 * SAMPLE_RATE))
    assert short.result(WAIT).worker_id == express
    first_piece_wait = long.result(WAIT).timings.queue_wait_s
    assert first_piece_wait < 0.5  # its plan did not wait for the short request (1 s)


def test_short_requests_use_every_worker_when_no_recording_is_running(make_pool):
    pool = make_pool(long_config(pool_size=2, fake=FakeBehavior(inference_delay_s=0.5)))
    pool.warm_up_all_workers(timeout=WAIT)
    futures = [pool.submit(samples(1600 + i)) for i in range(3)]
    results = [f.result(WAIT) for f in futures]
    assert len({r.worker_id for r in results}) == 3  # three at once, one on each worker
    assert max(r.timings.queue_wait_s for r in results) < 0.3


def test_a_dead_express_worker_is_replaced_by_an_express_worker(make_pool):
    pool = make_pool(long_config(pool_size=1))
    pool.warm_up_all_workers(timeout=WAIT)
    (old,) = [w for w in pool.get_status().workers if w.express]
    os.kill(old.pid, signal.SIGKILL)
    assert wait_for(
        lambda: any(w.express and w.id != old.id and w.state.value == "warm" for w in pool.get_status().workers)
    )
    status = pool.get_status()
    (new,) = [w for w in status.workers if w.express and w.state.value != "terminated"]
    assert new.slot == old.slot and status.express_workers == 1
    assert pool.submit(samples(1600)).result(WAIT).text


def test_a_recycled_express_worker_hands_over_to_an_express_worker(make_pool):
    pool = make_pool(long_config(pool_size=1, max_requests_per_worker=2))
    pool.warm_up_all_workers(timeout=WAIT)
    (first,) = express_ids(pool)
    for i in range(3):  # short requests go to the express worker first: it is recycled after two
        pool.submit(samples(1600 + i)).result(WAIT)
    assert wait_for(lambda: pool.get_status().workers_recycled >= 1)
    assert wait_for(lambda: len(express_ids(pool) - {first}) == 1 and pool.get_status().express_workers == 1)
    status = pool.get_status()
    (successor,) = [w for w in status.workers if w.express and w.id != first]
    assert successor.slot == 1 and all(w.slot == 0 for w in status.workers if not w.express)


def test_the_express_worker_takes_pieces_when_no_general_worker_is_left(make_pool):
    # the general slot fails its warm-up for good: the recording is still served
    behavior = FakeBehavior(fail_warmup_workers=frozenset({0}))
    pool = make_pool(long_config(pool_size=1, max_restarts=0, fake=behavior))
    pool.warm_up_all_workers(timeout=WAIT)
    assert pool.get_status().failed_workers == 1
    result = pool.submit(samples(5 * SAMPLE_RATE)).result(WAIT)
    assert result.pieces == 3


def test_adaptive_sizing_neither_counts_nor_retires_the_express_worker(make_pool):
    config = long_config(pool_size=1, min_workers=1, max_workers=3, scale_up_wait_s=0.2, scale_down_idle_s=0.5)
    pool = make_pool(config.replace(fake=FakeBehavior(inference_delay_s=0.3)))
    pool.warm_up_all_workers(timeout=WAIT)
    status = pool.get_status()
    assert (status.min_workers, status.max_workers, status.total_workers) == (1, 3, 2)
    (express,) = [w for w in status.workers if w.express]
    assert express.slot == 3  # after every slot adaptive sizing may use
    futures = [pool.submit(samples(1600 + i)) for i in range(16)]  # 4.8 s of work: the pool grows
    for f in futures:
        f.result(WAIT)
    grown = pool.get_status()
    assert grown.scale_ups >= 1
    assert all(w.slot < 3 for w in grown.workers if not w.express)  # no scale-up took the express slot
    assert wait_for(lambda: pool.get_status().total_workers == 2)  # back to min_workers, the express one kept
    status = pool.get_status()
    assert status.scale_downs >= 1 and express_ids(pool) == {express.id}


def test_the_default_is_one_express_worker_when_long_audio_is_split_on_any_device():
    assert PoolConfig().express_size == 1
    assert PoolConfig(split_above_s=None).express_size == 0
    assert PoolConfig(device="cuda").express_size == 1
    assert PoolConfig(device="cuda", split_above_s=None).express_size == 0
    assert PoolConfig(device="cuda", express_workers=2).express_size == 2
    assert PoolConfig(express_workers=0).express_size == 0


@pytest.mark.real_model
def test_with_the_real_model_a_short_request_overtakes_a_recording_on_the_express_worker(clip_texts):
    names = ["library", "weather", "groceries", "library", "weather", "groceries"]  # about 60 s, with pauses
    gap = np.zeros(SAMPLE_RATE, np.float32)
    recording = np.concatenate([part for name in names for part in (load_audio(clip(name)), gap)])
    config = PoolConfig(pool_size=1, threads_per_worker=1, express_workers=1, decode=DecodeOptions(language="en"))
    with ProcessPool(config) as pool:
        (express,) = express_ids(pool)
        long = pool.submit(recording)
        assert wait_for(lambda: any(r.pieces_total >= 3 for r in pool.get_status().requests))  # planned
        short = pool.submit(load_audio(clip("fox"))).result(WAIT)
        assert not long.done()  # it came back while the recording's pieces were still running
        assert short.worker_id == express
        assert {"quick", "brown", "fox", "lazy", "dog"} <= set(normalize(short.text)), short.text
        result = long.result(WAIT)
        served = {w.id: w.requests_served for w in pool.get_status().workers}
    assert result.pieces >= 3 and served[express] == 1  # the short request; no plan, no piece
    reference = " ".join(clip_texts[name] for name in names)
    assert word_error_rate(reference, result.text) <= 0.1, result.text


def test_a_request_cancelled_while_it_waits_is_never_run(make_pool, monkeypatch):
    from whisperpool.worker.handle import Worker

    sizes: list[int] = []  # the audio of every job a worker was given
    assign = Worker.assign

    def spy(self, job):
        sizes.extend(j.audio.size for j in job.requests())
        assign(self, job)

    monkeypatch.setattr(Worker, "assign", spy)
    pool = make_pool(long_config(pool_size=1, fake=FakeBehavior(inference_delay_s=0.6)))
    pool.warm_up_all_workers(timeout=WAIT)
    long = pool.submit(samples(12 * SAMPLE_RATE))  # six pieces on the general worker
    assert wait_for(lambda: any(r.pieces_total == 6 for r in pool.get_status().requests))
    first = pool.submit(samples(1600))  # on the express worker for 0.6 s
    assert wait_for(first.running)
    cancelled, last = pool.submit(samples(1601)), pool.submit(samples(1602))
    assert cancelled.cancel()
    assert last.result(WAIT).text == "1602 samples"  # by whichever worker freed first
    assert first.result(WAIT).text == "1600 samples" and long.result(WAIT).pieces == 6
    assert 1601 not in sizes and 1602 in sizes
    status = pool.get_status()
    assert status.requests_failed == 0 and status.queue_depth == 0


def test_short_requests_queued_behind_pieces_go_as_one_batch_without_pieces(make_pool):
    config = long_config(pool_size=1, max_batch=4, fake=FakeBehavior(inference_delay_s=0.6))
    pool = make_pool(config)
    pool.warm_up_all_workers(timeout=WAIT)
    long = pool.submit(samples(12 * SAMPLE_RATE))
    assert wait_for(lambda: any(r.pieces_total == 6 for r in pool.get_status().requests))
    first = pool.submit(samples(1600))
    assert wait_for(first.running)
    waiting = [pool.submit(samples(1601 + i)) for i in range(3)]  # queued with the pieces
    results = [f.result(WAIT) for f in waiting]
    assert len({r.worker_id for r in results}) == 1  # one batch, on whichever worker freed first
    assert [r.text for r in results] == [f"{1601 + i} samples" for i in range(3)]
    assert long.result(WAIT).pieces == 6
    status = pool.get_status()
    assert (status.batches, status.batched_requests, status.pieces_completed) == (1, 3, 6)
