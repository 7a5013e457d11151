"""The model of the adaptive pool that bench --adaptive uses to judge settings over many traces."""

from __future__ import annotations

import numpy as np
import pytest

from whisperpool import PoolConfig
from whisperpool.bench import adaptive_model as model
from whisperpool.bench.traces import Phase, Trace, arrivals

# Quiet, a burst, quiet, a larger burst, quiet: 138 s (the shape bench --adaptive first had).
PHASES = tuple(
    Phase(s, r0, r1, kind)
    for s, r0, r1, kind in (
        (20, 0.2, 0.2, "quiet"),
        (15, 0.2, 2.0, "ramp"),
        (10, 2.0, 2.0, "burst"),
        (4, 2.0, 0.2, "ramp"),
        (30, 0.2, 0.2, "quiet"),
        (20, 0.2, 3.0, "ramp"),
        (15, 3.0, 3.0, "burst"),
        (4, 3.0, 0.2, "ramp"),
        (20, 0.2, 0.2, "quiet"),
    )
)
rate_at = Trace(0, "bursts", 0, PHASES, (), ()).rate_at


def trace(seed: int) -> list[float]:
    return arrivals(list(PHASES), np.random.default_rng(seed))


SERVICE = [0.25, 0.3, 0.35]
FIXED_2 = PoolConfig(pool_size=2)
ADAPTIVE = PoolConfig(pool_size=1, min_workers=1, max_workers=2, target_utilization=0.6, scale_down_idle_s=5.0)


def test_the_trace_follows_its_phases():
    arrivals = trace(3)
    assert arrivals == sorted(arrivals) and arrivals[-1] < sum(p.seconds for p in PHASES)
    assert rate_at(10) == pytest.approx(0.2) and rate_at(40) == pytest.approx(2.0) and rate_at(110) == 3.0
    burst = sum(1 for t in arrivals if 99 <= t < 114)  # 15 s at 3 per second
    quiet = sum(1 for t in arrivals if 49 <= t < 79)  # 30 s at 0.2 per second
    assert 25 <= burst <= 65 and quiet <= 15


def test_a_fixed_pool_serves_every_request_and_spends_its_size_in_worker_seconds():
    arrivals = trace(3)
    run = model.replay(FIXED_2, arrivals, SERVICE, warm_up_s=2.5)
    assert len(run.latencies_s) == len(arrivals) and min(run.latencies_s) >= 0.25
    assert run.worker_seconds == pytest.approx(2 * (arrivals[-1] + 5), rel=0.02)
    assert run.scale_events == ()


def test_the_autoscaler_grows_for_each_burst_and_shrinks_after_it():
    arrivals = trace(3)
    run = model.replay(ADAPTIVE, arrivals, SERVICE, warm_up_s=2.5)
    ups = [t for t, direction, _ in run.scale_events if direction == "up"]
    downs = [t for t, direction, _ in run.scale_events if direction == "down"]
    assert any(20 <= t < 49 for t in ups) and any(79 <= t < 118 for t in ups)
    assert any(t > 45 for t in downs) and len(downs) == len(ups)  # back to one worker at the end
    fixed = model.replay(FIXED_2, arrivals, SERVICE, warm_up_s=2.5)
    assert 0.5 < run.worker_seconds / fixed.worker_seconds < 0.85


def test_the_oracle_follows_the_true_rate():
    arrivals = trace(3)
    always = model.replay(ADAPTIVE, arrivals, SERVICE, warm_up_s=2.5, policy=model.oracle(ADAPTIVE, rate_at, 0.0))
    never = model.replay(ADAPTIVE, arrivals, SERVICE, warm_up_s=2.5, policy=model.oracle(ADAPTIVE, rate_at, 10.0))
    assert [d for _, d, _ in always.scale_events] == ["up"] and never.scale_events == ()
    assert never.p95 > always.p95  # one worker queues in the larger burst
    assert never.worker_seconds < always.worker_seconds
    result = model.compare(FIXED_2, ADAPTIVE, [trace(1), trace(2)], SERVICE, 2.5, rate_at, (1.5,))
    assert set(result) == {"adaptive", "oracle above 1.5 req/s"}
    assert result["oracle above 1.5 req/s"]["worker_seconds_ratio_mean"] < 0.8


def test_service_times_by_clip_length_and_per_request():
    service = model.service_by_length([(3.0, 0.3), (4.0, 0.5), (20.0, 2.0), (30.0, 3.0)])
    assert service(3.5) == pytest.approx(0.4) and service(21.0) == pytest.approx(2.0)
    assert service(11.0) == pytest.approx(0.5)  # none within 2 s: the nearest (4 s)
    arrivals = [0.0, 0.1]
    run = model.replay(FIXED_2, arrivals, [], warm_up_s=1.0, per_request=[1.0, 3.0])
    assert sorted(run.latencies_s) == pytest.approx([1.0, 3.0], abs=0.05)
    with pytest.raises(ValueError):
        model.replay(FIXED_2, arrivals, [], warm_up_s=1.0, per_request=[1.0])
