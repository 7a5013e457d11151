"""A model of the adaptive pool: autoscaling settings judged in seconds, over many traces.

The real replay (:mod:`whisperpool.bench.replay`) takes a minute per trace and pool, on
a shared machine. This model replays arrival traces through the real
:class:`~whisperpool.scaling.Autoscaler` on a discrete-time picture of the pool: service
times drawn from those the real replay measured (or each request's own, by its clip's
length: :func:`ratios`), a fixed warm-up, most-recently-busy dispatch, worker-seconds
counted as the replay counts them. It leaves out live streams' decodes, which the real
pool counts as arrivals, so it is optimistic where streams run.
``scripts/tune_adaptive.py`` sweeps settings with it over the tune half of the traces.

The same traces also run under an *oracle* that knows the true arrival rate and keeps
``max`` workers exactly while it is above a threshold. No policy that has to estimate
the rate from a few arrivals can beat it: its curve of latency against worker-seconds
shows how much of the target the noise of arrivals leaves to win.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import PoolConfig
from ..pool.autoscaler import Autoscaler, Decision, Load

TICK_S = 0.02  # the model's clock step: the manager thread decides about this often under load


@dataclass
class _Worker:
    ready_at: float  # warm from then on
    last_request_at: float
    busy_until: float | None = None
    job: tuple[float, float] | None = None  # (arrived, service seconds)


@dataclass(frozen=True, slots=True)
class ModelRun:
    latencies_s: tuple[float, ...]
    worker_seconds: float
    scale_events: tuple[tuple[float, str, str], ...] = field(default=())

    @property
    def p95(self) -> float:
        return float(np.percentile(self.latencies_s, 95))


Policy = Callable[[Load], Decision]


def replay(
    config: PoolConfig,
    arrivals: Sequence[float],
    service_s: Sequence[float],
    *,
    warm_up_s: float,
    seed: int = 0,
    policy: Policy | None = None,
    per_request: Sequence[float] | None = None,
) -> ModelRun:
    """Replay ``arrivals`` on a modelled pool; ``policy`` replaces the autoscaler's decision.

    Each request's service time is drawn from ``service_s``, or is ``per_request[i]``
    for the i-th arrival where given (clips of different lengths)."""
    if per_request is not None and len(per_request) != len(arrivals):
        raise ValueError(f"{len(per_request)} service times for {len(arrivals)} arrivals")
    rng = random.Random(seed)
    scaler = Autoscaler(config)
    scaler.served(
        float(np.median(per_request if per_request is not None else service_s))
    )  # served once before the clock
    decide = policy or scaler.decide
    adaptive = config.max_size > config.min_size
    workers = {i: _Worker(0.0, 0.0) for i in range(config.initial_size)}
    ids = len(workers)
    queue: list[tuple[float, int]] = []  # (arrived, index)
    latencies: list[float] = []
    events: list[tuple[float, str, str]] = []
    worker_seconds, t, i = 0.0, 0.0, 0
    end = arrivals[-1] + 5.0
    while t < end or queue or any(w.job for w in workers.values()):
        for w in workers.values():
            if w.job is not None and w.busy_until is not None and w.busy_until <= t:
                latencies.append(w.busy_until - w.job[0])
                scaler.served(w.job[1])
                w.job, w.busy_until, w.last_request_at = None, None, t
        while i < len(arrivals) and arrivals[i] <= t:
            queue.append((arrivals[i], i))
            scaler.arrived(arrivals[i])
            i += 1
        idle = [w for w in workers.values() if w.ready_at <= t and w.job is None]
        for w in sorted(idle, key=lambda w: w.last_request_at, reverse=True):  # most recently busy first
            if not queue:
                break
            arrived, k = queue.pop(0)
            service = per_request[k] if per_request is not None else rng.choice(service_s)
            w.job, w.busy_until = (arrived, service), t + service
        if adaptive:
            load = Load(
                now=t,
                workers=len(workers),
                warming=sum(1 for w in workers.values() if w.ready_at > t),
                queued=len(queue),
                oldest_wait_s=t - queue[0][0] if queue else 0.0,
                idle_since={k: w.last_request_at for k, w in workers.items() if w.ready_at <= t and w.job is None},
                warm_up_s=warm_up_s,
            )
            decision = decide(load)
            for _ in range(decision.start):
                workers[ids] = _Worker(t + warm_up_s, t + warm_up_s)
                ids += 1
                events.append((round(t, 2), "up", decision.reason))
            for k in decision.retire:
                del workers[k]
                events.append((round(t, 2), "down", decision.reason))
        worker_seconds += len(workers) * TICK_S
        t += TICK_S
    return ModelRun(tuple(latencies), worker_seconds, tuple(events))


def oracle(config: PoolConfig, rate_at: Callable[[float], float], threshold: float) -> Policy:
    """Keep ``max`` workers while the true arrival rate is above ``threshold``, else ``min``."""

    def decide(load: Load) -> Decision:
        want = config.max_size if rate_at(load.now) > threshold else config.min_size
        if want > load.workers:
            return Decision(start=want - load.workers, reason="oracle")
        if want < load.workers and load.idle_since and not load.queued:
            return Decision(retire=(min(load.idle_since, key=load.idle_since.__getitem__),), reason="oracle")
        return Decision()

    return decide


def compare(
    fixed_max: PoolConfig,
    adaptive: PoolConfig,
    traces: Sequence[Sequence[float]],
    service_s: Sequence[float],
    warm_up_s: float,
    rate_at: Callable[[float], float],
    thresholds: Sequence[float],
) -> dict[str, Any]:
    """Adaptive and oracle pools against fixed ``max`` on each trace: mean and worst ratios."""
    rows: dict[str, list[tuple[float, float]]] = {"adaptive": []}
    rows.update({f"oracle above {r:g} req/s": [] for r in thresholds})
    for seed, arrivals in enumerate(traces):
        base = replay(fixed_max, arrivals, service_s, warm_up_s=warm_up_s, seed=seed)
        runs = {"adaptive": replay(adaptive, arrivals, service_s, warm_up_s=warm_up_s, seed=seed)}
        for r in thresholds:
            policy = oracle(adaptive, rate_at, r)
            runs[f"oracle above {r:g} req/s"] = replay(
                adaptive, arrivals, service_s, warm_up_s=warm_up_s, seed=seed, policy=policy
            )
        for name, run in runs.items():
            rows[name].append((run.p95 / base.p95, run.worker_seconds / base.worker_seconds))
    return {
        name: {
            "p95_ratio_mean": float(np.mean([p for p, _ in v])),
            "p95_ratio_max": float(max(p for p, _ in v)),
            "worker_seconds_ratio_mean": float(np.mean([w for _, w in v])),
            "worker_seconds_ratio_max": float(max(w for _, w in v)),
        }
        for name, v in rows.items()
    }


def service_by_length(measured: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    """A clip's service time from (clip seconds, inference seconds) pairs measured: the
    median of those within 2 s of its length (the nearest ones if none is)."""
    pairs = sorted(measured)

    def service(clip_s: float) -> float:
        near = [s for c, s in pairs if abs(c - clip_s) <= 2.0]
        if not near:
            closest = min(abs(c - clip_s) for c, _ in pairs)
            near = [s for c, s in pairs if abs(c - clip_s) == closest]
        return float(np.median(near))

    return service


def ratios(
    fixed: PoolConfig,
    adaptive: PoolConfig,
    trace: Any,
    measured: Sequence[tuple[float, float]],
    warm_up_s: float,
) -> dict[str, float]:
    """A :class:`~whisperpool.bench.traces.Trace`'s requests (not its streams) on the
    modelled fixed and adaptive pools: the adaptive pool's p95 and worker-seconds ratios."""
    service = service_by_length(measured)
    arrivals = [r.at for r in trace.requests]
    per_request = [service(r.clip_s + 0.5) for r in trace.requests]  # clips run 0-1 s over
    base = replay(fixed, arrivals, [], warm_up_s=warm_up_s, per_request=per_request)
    run = replay(adaptive, arrivals, [], warm_up_s=warm_up_s, per_request=per_request)
    return {"p95_ratio": run.p95 / base.p95, "ws_ratio": run.worker_seconds / base.worker_seconds}


__all__ = ["ModelRun", "compare", "oracle", "ratios", "replay", "service_by_length"]
