"""The adaptive pool: sizing rules alone, then on real worker processes with the fake backend."""

from __future__ import annotations

import json
import time

import pytest

from conftest import WAIT, fake_config, samples, wait_for
from whisperpool import PoolConfig, WorkerState
from whisperpool.config import available_cores
from whisperpool.pool.autoscaler import Autoscaler, Load
from whisperpool.testing import FakeBehavior


def scaler(**changes) -> Autoscaler:
    base = dict(pool_size=1, min_workers=1, max_workers=3, scale_up_wait_s=0.5, scale_down_idle_s=10.0)
    return Autoscaler(PoolConfig(**{**base, **changes}))


def load(now=100.0, workers=1, warming=0, queued=0, oldest=0.0, idle=None, rss=()) -> Load:
    return Load(now, workers, warming, queued, oldest, idle or {}, rss)


# -- the rules ---------------------------------------------------------------------------
def test_scale_up_once_requests_have_waited_and_not_past_max():
    s = scaler()
    assert s.decide(load(queued=3, oldest=0.1)).start == 0  # not waited long enough
    d = s.decide(load(queued=3, oldest=0.6))
    assert d.start == 2 and "waiting" in d.reason  # capped by max_workers=3
    assert s.decide(load(workers=3, warming=2, queued=3, oldest=2.0)).start == 0
    # Workers already warming count: two waiting requests and two warming start nothing.
    assert s.decide(load(workers=3 - 1, warming=2, queued=2, oldest=2.0)).start == 0


def test_a_queue_the_workers_clear_before_a_new_one_is_warm_starts_none():
    s = scaler(max_workers=2)
    for _ in range(5):
        s.served(0.3)
    s.arrived(99.0)
    # Three queued behind one worker of 0.3 s: gone in about 1 s, long before a 4 s warm-up.
    assert s.backlog_after(load(queued=3), 4.0) < 0
    assert s.decide(load(queued=3, oldest=1.0)).start == 0
    # Twenty are not: the new worker will still find requests waiting.
    assert s.backlog_after(load(queued=20), 4.0) > 0
    d = s.decide(load(queued=20, oldest=1.0))
    assert d.start == 1 and "20 request(s) waiting" in d.reason
    # A shorter measured warm-up makes a smaller backlog worth a worker.
    assert s.decide(load(queued=12, oldest=1.0)).start == 0
    assert s.decide(Load(100.0, 1, 0, 12, 1.0, {}, (), warm_up_s=2.0)).start == 1


def test_scale_down_after_idle_never_below_min():
    s = scaler(min_workers=2)
    assert s.decide(load(workers=3, idle={7: 95.0})).retire == ()  # idle 5 s of 10
    d = s.decide(load(workers=3, idle={7: 85.0, 8: 80.0}))
    assert d.retire == (8,) and "idle" in d.reason  # the longest idle goes first
    assert s.decide(load(workers=2, idle={7: 0.0, 8: 0.0})).retire == ()  # at min


def test_memory_budget_caps_the_total():
    s = scaler(max_workers=5, max_total_rss_mb=1000)
    d = s.decide(load(workers=2, queued=4, oldest=1.0, rss=(300.0, 300.0)))
    assert d.start == 1 and "memory budget" in d.reason  # 600 + 300 <= 1000 < 600 + 600
    d = s.decide(load(workers=3, queued=4, oldest=1.0, rss=(300.0, 300.0, 300.0)))
    assert d.start == 0 and "memory budget" in d.refused


def test_the_memory_budget_holds_the_express_workers_too_reported_or_not():
    s = scaler(max_workers=5, max_total_rss_mb=1000)
    base = dict(now=100.0, workers=2, warming=0, queued=4, oldest_wait_s=1.0, idle_since={}, rss_mb=(300.0, 300.0))
    assert s.decide(Load(**base)).start == 1  # 600 + 300 <= 1000
    # one express worker of 300 MiB: no room; the same while it has not reported (estimated as the largest)
    assert s.decide(Load(**base, express=1, express_rss_mb=(300.0,))).start == 0
    assert s.decide(Load(**base, express=1)).start == 0


def test_predictive_warm_up_before_a_queue_forms():
    s = scaler(max_workers=4, target_utilization=0.8)
    for _ in range(5):
        s.served(1.0)
    now = 100.0
    for i in range(40):  # 4 requests per second for 10 s: about 4 busy workers
        s.arrived(now + i * 0.25)
    now += 10.0
    assert 3.0 < s.arrival_rate(now) < 4.5
    d = s.decide(load(now=now, workers=1))
    assert d.start >= 2 and "predicted load" in d.reason
    # The load went away: the rate decays and the pool may shrink again.
    assert s.needed(now + 120) == 0


# -- on the pool -------------------------------------------------------------------------
@pytest.fixture
def events(make_pool):
    def subscribe(pool):
        seen = []
        pool.on("pool_scaled", seen.append)
        return seen

    return subscribe


def adaptive(**changes):
    base = dict(
        pool_size=1,
        min_workers=1,
        max_workers=3,
        scale_up_wait_s=0.2,
        scale_down_idle_s=1.5,
        fake=FakeBehavior(inference_delay_s=0.6, load_delay_s=0.3),
    )
    return fake_config(**{**base, **changes})


def test_the_pool_grows_under_a_queue_to_max_and_shrinks_back_to_min(make_pool, events):
    pool = make_pool(adaptive())
    seen = events(pool)
    pool.warm_up_all_workers(timeout=WAIT)
    futures = [pool.submit(samples(100 + i)) for i in range(12)]
    assert wait_for(lambda: pool.get_status().warm_workers + pool.get_status().busy_workers == 3)
    results = [f.result(timeout=WAIT) for f in futures]
    assert len({r.worker_id for r in results}) == 3  # the new workers took work once warm
    # It grew first (in one step or two), from 1 to 3 workers, before it shrank at all.
    directions = [e.direction for e in seen if e.direction != "refused"]
    ups = directions.index("down") if "down" in directions else len(directions)
    assert ups in (1, 2) and directions[:ups] == ["up"] * ups, directions
    growth = [e for e in seen if e.direction == "up"]
    assert (growth[0].workers_before, growth[-1].workers_after) == (1, 3), growth
    assert sum(len(e.worker_ids) for e in growth) == 2, growth
    status = pool.get_status()
    assert status.scale_ups == 2 and status.max_workers == 3
    # The first worker warmed both windows; the two started for the load, the short one only.
    windows = sorted(w.warm_windows for w in status.workers)
    assert windows == [("short",), ("short",), ("short", "full")], windows
    # Quiet: idle workers are retired one at a time, down to min_workers and no further.
    assert wait_for(lambda: pool.get_status().total_workers == 1, timeout=WAIT)
    time.sleep(2.0)  # a fixed window on purpose, longer than scale_down_idle_s: no further retirement in it
    assert pool.get_status().total_workers == 1 and pool.get_status().scale_downs == 2
    downs = [e for e in seen if e.direction == "down"]
    assert len(downs) == 2 and all("idle" in e.reason for e in downs)
    assert pool.transcribe(samples(10), timeout=WAIT).text == "10 samples"


def test_a_memory_budget_refuses_workers_it_cannot_hold(make_pool, events):
    probe = make_pool(fake_config(pool_size=1))
    probe.warm_up_all_workers(timeout=WAIT)
    rss = probe.get_status().workers[0].rss_mb
    probe.close()
    pool = make_pool(adaptive(max_workers=4, max_total_rss_mb=rss * 2.6))
    seen = events(pool)
    pool.warm_up_all_workers(timeout=WAIT)
    futures = [pool.submit(samples(100 + i)) for i in range(10)]
    for f in futures:
        f.result(timeout=WAIT)
    assert max(e.workers_after for e in seen if e.direction == "up") == 2
    assert any(e.direction == "refused" and "memory budget" in e.reason for e in seen)


def test_a_fixed_pool_never_scales(make_pool, events):
    pool = make_pool(fake_config(pool_size=1, fake=FakeBehavior(inference_delay_s=0.3)))
    seen = events(pool)
    pool.warm_up_all_workers(timeout=WAIT)
    for f in [pool.submit(samples(10 + i)) for i in range(5)]:
        f.result(timeout=WAIT)
    assert seen == [] and pool.get_status().total_workers == 1


def test_re_warm_runs_on_idle_workers_and_never_while_requests_wait(make_pool):
    pool = make_pool(fake_config(pool_size=1, rewarm_after_idle_s=0.4, fake=FakeBehavior(inference_delay_s=0.25)))
    pool.warm_up_all_workers(timeout=WAIT)
    # Back to back requests for about 2.5 s: the worker is never idle 0.4 s, so no re-warm.
    futures = [pool.submit(samples(10 + i)) for i in range(10)]
    for f in futures:
        f.result(timeout=WAIT)
    assert pool.get_status().background_inferences == 0
    assert wait_for(lambda: pool.get_status().background_inferences >= 1)
    worker = pool.get_status().workers[0]
    assert worker.checks >= 1 and worker.check_ms is not None and worker.requests_served == 10
    assert pool.get_status().requests_completed == 10  # the pool's own inference is not a request


def test_health_checks_show_per_worker_in_status_and_metrics(make_pool):
    from fastapi.testclient import TestClient

    from whisperpool.server import ServerSettings, create_app

    config = fake_config(pool_size=2, rewarm_after_idle_s=None, health_check_interval_s=0.5)
    with TestClient(create_app(ServerSettings(pool=config))) as client:
        assert wait_for(lambda: all(w["checks"] >= 2 for w in client.get("/v1/pool").json()["workers"]))
        workers = client.get("/v1/pool").json()["workers"]
        assert all(w["check_ms"] is not None and w["check_age_s"] < 5 for w in workers)
        metrics = client.get("/metrics").text
    assert 'whisperpool_worker_check_seconds{model="base",worker="0"}' in metrics


def test_warm_start_records_timings_and_sizes_the_next_start(make_pool, tmp_path):
    state = tmp_path / "state.json"
    first = fake_config(pool_size=1, threads_per_worker=1, state_file=str(state), fake=FakeBehavior(load_delay_s=0.2))
    pool = make_pool(first)
    pool.warm_up_all_workers(timeout=WAIT)
    pool.close()
    data = json.loads(state.read_text())["configurations"]
    (entry,) = data.values()
    assert 0.2 <= entry["warm_up_s"][0] < 10 and entry["rss_mb"] > 0
    # The next pool expects a warm-up like the last one: a hung start is noticed in 10 s, not 60.
    config = first.replace(pool_size=2, warmup_timeout_s=60.0, fake=FakeBehavior(hang_warmup_workers={1}))
    pool = make_pool(config)
    started = time.monotonic()
    summary = pool.warm_up_all_workers(timeout=WAIT)
    assert summary.failed == 1 and "within 10 s" in next(iter(summary.errors.values()))
    assert time.monotonic() - started < 20
    assert len(json.loads(state.read_text())["configurations"][next(iter(data))]["warm_up_s"]) == 2


def test_an_adaptive_pool_at_rest_does_not_spin(make_pool):
    import resource

    pool = make_pool(adaptive(scale_down_idle_s=0.2, fake=FakeBehavior()))
    pool.warm_up_all_workers(timeout=WAIT)
    pool.transcribe(samples(10), timeout=WAIT)
    assert wait_for(lambda: pool.get_status().warm_workers == 1)  # served, back at rest
    time.sleep(0.5)  # past the idle timeout (0.2 s), at min_workers: nothing is left to decide
    before = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(2.0)  # the window measured: what the manager thread burns at rest
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 0.3, f"the manager thread used {cpu:.2f} s of CPU in 2 s at rest"


def test_a_pool_grown_to_max_runs_no_more_threads_than_cores(make_pool):
    # Threads are sized for max_workers: the workers started for load do not oversubscribe.
    pool = make_pool(adaptive(max_workers=2))
    pool.warm_up_all_workers(timeout=WAIT)
    futures = [pool.submit(samples(200 + i)) for i in range(8)]
    assert wait_for(lambda: pool.get_status().warm_workers + pool.get_status().busy_workers == 2)
    [f.result(timeout=WAIT) for f in futures]
    live = [w for w in pool.get_status().workers if w.state not in (WorkerState.FAILED, WorkerState.TERMINATED)]
    assert len(live) == 2
    assert all(w.threads == max(1, available_cores() // 2) for w in live)
    assert sum(w.threads for w in live) <= max(available_cores(), 2)
