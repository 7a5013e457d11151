"""bench --adaptive: the trace family is reproducible and split in disjoint halves, and the
report's ratios are those of the latencies and worker-seconds measured (fake backend)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import fake_config
from whisperpool import DecodeOptions
from whisperpool.bench import adaptive, replay, traces
from whisperpool.bench.traces import Phase, Request, Stream, Trace
from whisperpool.errors import ConfigError
from whisperpool.testing import FakeBehavior


def test_the_family_is_the_same_on_every_call_and_differs_by_seed():
    first, again = traces.family(), traces.family()
    assert first == again
    assert len({t.requests for t in first}) == traces.TRACES  # no two draws alike
    for t in first:
        assert 30 <= t.seconds <= 60 and len(t.requests) >= 8
        assert [r.at for r in t.requests] == sorted(r.at for r in t.requests) and t.requests[-1].at < t.seconds
        assert all(2.0 <= r.clip_s <= 30.0 for r in t.requests)
    clips = [r.clip_s for t in first for r in t.requests]
    assert min(clips) < 3 and max(clips) > 25  # 2 to 30 s, commands and dictations
    assert sum(len(t.streams) for t in first) >= 6
    r = first[6].requests[3]
    a, b = traces.speech(r.clip_s, r.clip_seed), traces.speech(r.clip_s, r.clip_seed)
    assert np.array_equal(a, b) and r.clip_s <= a.size / 16_000 <= r.clip_s + 1.0
    assert not np.array_equal(traces.speech(10, 1), traces.speech(10, 2))


def test_the_halves_are_disjoint_fixed_and_hold_every_shape():
    assert set(traces.TUNE).isdisjoint(traces.HELD_OUT)
    assert set(traces.TUNE) | set(traces.HELD_OUT) == set(range(traces.TRACES))
    for half in (traces.TUNE, traces.HELD_OUT):
        assert {traces.make(i).shape for i in half} == set(traces.SHAPES)
    assert all(traces.make(i).half == "held-out" for i in traces.HELD_OUT)
    assert adaptive.selected("held-out", False) == traces.HELD_OUT
    assert adaptive.selected("tune", False) == traces.TUNE
    assert adaptive.selected("6,7", False) == (6, 7)
    assert set(adaptive.selected("x", True)) <= set(traces.TUNE)  # --quick: smoke runs never show held-out
    for bad in ("12", "a,b", ""):
        with pytest.raises(ConfigError):
            adaptive.selected(bad, False)


def test_a_burst_after_quiet_is_found_by_its_first_request():
    t = traces.make(0)  # quiet-burst-quiet
    [first] = t.burst_starts()
    start = t.phases[0].seconds
    assert t.requests[first].at >= start and all(r.at < start for r in t.requests[:first])
    assert traces.make(2).burst_starts() == []  # a ramp up has no step out of quiet


def _run(latencies, ws, stream=()):
    return {"latencies_s": latencies, "worker_seconds": ws, "stream_final_s": list(stream)}


def _result(rows):
    return {
        "traces": {
            str(k): {
                "trace": {"half": half, "burst_starts": starts},
                "pools": {adaptive.FIXED: f, adaptive.ADAPTIVE_NAME: a},
            }
            for k, (half, starts, f, a) in enumerate(rows)
        }
    }


def test_the_summary_takes_ratios_of_the_held_out_half_only():
    ones = [1.0] * 20
    rows = [
        ("held-out", [0], _run(ones, 100.0), _run([2.0] + [1.0] * 19, 60.0)),  # p95 ratio 1.0x, 0.6
        ("held-out", [], _run(ones, 100.0), _run([1.4] * 20, 70.0)),  # 1.4x, 0.7
        (
            "held-out",
            [3],
            _run(ones, 100.0),
            _run([2.0] * 20, 50.0, [0.5]),
        ),  # 2.0x, 0.5
        ("tune", [0], _run(ones, 100.0), _run([9.0] * 20, 99.0)),  # not counted
    ]
    s = adaptive.summary(_result(rows))
    assert s["over"] == "held-out" and s["traces"] == ["0", "1", "2"]
    assert s["p95_ratio_median"] == pytest.approx(1.4) and s["p95_ratio_worst"] == pytest.approx(2.0)
    assert s["ws_ratio_median"] == pytest.approx(0.6) and s["ws_ratio_worst"] == pytest.approx(0.7)
    assert s["burst_first_requests"] == 2 and s["burst_first_ratio"] == pytest.approx((2.0 + 2.0) / 2.0)
    met = [t.met for t in adaptive.targets(_result(rows))]
    assert met == [False, True, False, False]  # median 1.4 > 1.3; 0.6 <= 0.7; worst 2.0 > 1.5; 2.0 > 1.1


def test_a_replay_on_the_fake_backend_measures_every_request_and_the_ratios_follow():
    # A short trace of the family's kind: quiet, a burst of eight 0.4 s requests, quiet.
    reqs = (0.2, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7)
    trace = Trace(
        99,
        "quiet-burst-quiet",
        0,
        (Phase(3.0, 0.3, 0.3, "quiet"), Phase(1.0, 8, 8, "burst"), Phase(3.0, 0.3, 0.3, "quiet")),
        tuple(Request(t, 2.0, i) for i, t in enumerate(reqs)),
        (Stream(0.5, 3.0, 5),),
    )
    fake = FakeBehavior(inference_delay_s=0.4, load_delay_s=0.2)
    base = dict(fake=fake, rewarm_after_idle_s=None, health_check_interval_s=None)
    fixed = replay.run(fake_config(pool_size=2, **base), trace, DecodeOptions(language="en"))
    grown = replay.run(
        fake_config(pool_size=1, min_workers=1, max_workers=2, scale_up_wait_s=0.2, scale_down_idle_s=1.0, **base),
        trace,
        DecodeOptions(language="en"),
    )
    for run in (fixed, grown):
        assert len(run["latencies_s"]) == len(reqs) and min(run["latencies_s"]) >= 0.4
        assert run["duration_s"] >= trace.seconds
    assert fixed["worker_seconds"] == pytest.approx(2 * fixed["duration_s"], rel=0.05)
    assert grown["scale_ups"] >= 1 and grown["worker_seconds"] < fixed["worker_seconds"]
    result = {
        "traces": {
            "99": {
                "trace": trace.to_dict() | {"half": "held-out"},
                "pools": {adaptive.FIXED: fixed, adaptive.ADAPTIVE_NAME: grown},
            }
        }
    }
    row = adaptive.per_trace(result["traces"]["99"])
    assert row["p95_ratio"] == pytest.approx(
        np.percentile(grown["latencies_s"], 95) / np.percentile(fixed["latencies_s"], 95)
    )
    assert row["ws_ratio"] == pytest.approx(grown["worker_seconds"] / fixed["worker_seconds"])
    assert row["burst_first_fixed_s"] == [fixed["latencies_s"][1]]
    assert adaptive.summary(result)["burst_first_ratio"] == pytest.approx(
        grown["latencies_s"][1] / fixed["latencies_s"][1]
    )
