"""How many workers the pool should have: the sizing policy, as plain logic.

The pool's manager thread asks :meth:`Autoscaler.decide` at each turn of its loop, with a
:class:`Load` snapshot, and carries out the :class:`Decision` it gets (start workers, or
retire idle ones). Nothing here touches a process, so every rule can be tested alone.

Rules, between ``min_workers`` and ``max_workers``:

* **Scale up when requests wait**: the oldest queued request has waited
  ``scale_up_wait_s`` (and at least two service times: a request behind a busy worker
  waits up to one anyway), or the queue has held requests that long, and the backlog
  will outlast a warm-up: on a fluid model (those queued, plus arrivals at the current
  rate, less what the serving workers finish) requests are still waiting when a worker
  started now is warm. A cluster of arrivals the workers clear sooner starts nothing: the
  new worker would come too late to serve it. Workers already warming count: one slow
  warm-up does not start five.
* **Predictive warm-up**: arrivals are tracked by two exponentially weighted rates, a
  fast and a slow one; on a ramp the fast one lags the true rate less, and their
  difference gives the ramp's slope (an EWMA lags a linear ramp by slope x its mean
  age). The rate is projected one warm-up time ahead (the workers' measured warm-up,
  or the warm-start record), times the service time (a moving average) is the offered
  load (Little's law); over ``target_utilization`` it is how many workers the load will
  need when a worker started now is warm. When that is more than there are, more start
  before a queue forms.
* **Scale down** a worker idle (no real request) for ``scale_down_idle_s``, one at a
  time, never below ``min_workers`` nor below what the predicted load needs.
* **Memory budget**: no worker starts if the workers' resident memory plus one more
  (the largest seen, or the warm-start record) would pass ``max_total_rss_mb``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import PoolConfig

DEFAULT_WORKER_MB = 400.0  # a first guess at a worker's memory, before any has reported
DEFAULT_WARM_UP_S = 4.0  # a first guess at a worker's warm-up, before any has warmed
FAST_HALF_LIFE_S = 2.0
SLOW_HALF_LIFE_S = 10.0


@dataclass(frozen=True, slots=True)
class Load:
    """What the pool looks like now (seconds are ``time.monotonic()``)."""

    now: float
    workers: int  # alive and not being retired: warm, busy or warming
    warming: int
    queued: int
    oldest_wait_s: float  # how long the oldest queued request has waited (0 if none)
    idle_since: dict[int, float]  # idle warm worker id -> last real request ended (or warm)
    rss_mb: tuple[float, ...] = ()  # resident memory of each worker that reported it
    express: int = 0  # express workers live or restarting: in the memory budget, outside the sizing
    express_rss_mb: tuple[float, ...] = ()  # the resident memory of those that reported it
    warm_up_s: float | None = None  # how long this pool's workers took to warm up (median)


@dataclass(frozen=True, slots=True)
class Decision:
    start: int = 0
    retire: tuple[int, ...] = ()  # worker ids
    reason: str = ""
    refused: str = ""  # a scale-up the memory budget refused


@dataclass
class Ewma:
    """An exponentially weighted moving average with a half-life in seconds."""

    half_life_s: float
    value: float = 0.0
    at: float | None = None

    def decay(self, now: float) -> float:
        if self.at is None:
            return self.value
        return self.value * 0.5 ** ((now - self.at) / self.half_life_s)


@dataclass
class Autoscaler:
    config: PoolConfig
    worker_mb_hint: float | None = None  # from the warm-start record
    warm_up_hint_s: float | None = None  # from the warm-start record
    _fast: Ewma = field(default_factory=lambda: Ewma(FAST_HALF_LIFE_S))  # requests per second
    _slow: Ewma = field(default_factory=lambda: Ewma(SLOW_HALF_LIFE_S))
    _service_s: float | None = None
    _queued_since: float | None = None

    @property
    def enabled(self) -> bool:
        return self.config.max_size > self.config.min_size

    # -- observations ------------------------------------------------------------------
    def arrived(self, now: float) -> None:
        """A request arrived: each rate estimate takes a step of ln 2 / its half-life."""
        for rate in (self._fast, self._slow):
            rate.value = rate.decay(now) + math.log(2) / rate.half_life_s
            rate.at = now

    def served(self, inference_s: float) -> None:
        self._service_s = inference_s if self._service_s is None else 0.8 * self._service_s + 0.2 * inference_s

    def patience(self) -> float:
        """How long a request waits before it counts as a sign of too few workers."""
        # A request behind a busy worker waits up to one service time anyway.
        return max(self.config.scale_up_wait_s, 2 * (self._service_s or 0.0))

    def arrival_rate(self, now: float) -> float:
        return self._fast.decay(now)

    def projected_rate(self, now: float, ahead_s: float) -> float:
        """The arrival rate ``ahead_s`` from now, on the current trend (never below the fast rate)."""
        fast, slow = self._fast.decay(now), self._slow.decay(now)
        age_fast, age_slow = FAST_HALF_LIFE_S / math.log(2), SLOW_HALF_LIFE_S / math.log(2)
        slope = max(0.0, (fast - slow) / (age_slow - age_fast))
        return fast + slope * (age_fast + ahead_s)

    def backlog_after(self, load: Load, seconds: float) -> float:
        """Requests still queued ``seconds`` from now, on a fluid model (inf with no service time yet)."""
        if not self._service_s:
            return math.inf
        serving = load.workers - load.warming
        return load.queued + (self.arrival_rate(load.now) - serving / self._service_s) * seconds

    def horizon(self, warm_up_s: float | None = None) -> float:
        """How long a worker started now takes to be warm: measured, recorded, or a guess."""
        return warm_up_s or self.warm_up_hint_s or DEFAULT_WARM_UP_S

    def needed(self, now: float, warm_up_s: float | None = None) -> int:
        """Workers the load will need one warm-up from now (0 with no estimate yet)."""
        if self._service_s is None:
            return 0
        load = self.projected_rate(now, self.horizon(warm_up_s)) * self._service_s
        return math.ceil(load / self.config.target_utilization - 1e-9)

    # -- the decision ------------------------------------------------------------------
    def decide(self, load: Load) -> Decision:
        cfg = self.config
        if not self.enabled:
            return Decision()
        now = load.now
        self._queued_since = (self._queued_since or now) if load.queued else None
        waited = now - self._queued_since if self._queued_since is not None else 0.0
        warm_up_s = self.horizon(load.warm_up_s)
        needed = min(cfg.max_size, self.needed(now, warm_up_s))
        room = cfg.max_size - load.workers
        if room > 0:
            start, reason = 0, ""
            patience = self.patience()
            waiting = load.queued and (load.oldest_wait_s >= patience or waited >= patience)
            if waiting and self.backlog_after(load, warm_up_s) > 0:
                start = min(room, max(0, load.queued - load.warming))
                reason = (
                    f"{load.queued} request(s) waiting, requests queued for {max(load.oldest_wait_s, waited):.1f} s"
                )
            if needed > load.workers and needed - load.workers > start:
                start = min(room, needed - load.workers)
                reason = (
                    f"predicted load: {self.projected_rate(now, warm_up_s):.2f} req/s "
                    f"x {self._service_s:.2f} s needs {needed} worker(s)"
                )
            if start:
                allowed = self._memory_allows(load, start)
                if allowed < start:
                    refused = f"memory budget of {cfg.max_total_rss_mb:g} MiB allows {allowed} more worker(s)"
                    if not allowed:
                        return Decision(refused=refused)
                    start, reason = allowed, f"{reason}; {refused}"
                return Decision(start=start, reason=reason)
        floor = max(cfg.min_size, needed)
        idle = sorted(load.idle_since.items(), key=lambda item: item[1])
        if load.workers > floor and idle and not load.queued:
            worker_id, since = idle[0]
            if now - since >= cfg.scale_down_idle_s:
                return Decision(retire=(worker_id,), reason=f"idle for {now - since:.0f} s")
        return Decision()

    def _memory_allows(self, load: Load, wanted: int) -> int:
        budget = self.config.max_total_rss_mb
        if budget is None:
            return wanted
        per_worker = max(load.rss_mb, default=self.worker_mb_hint or DEFAULT_WORKER_MB)
        reported = (*load.rss_mb, *load.express_rss_mb)
        used = sum(reported) + per_worker * (load.workers + load.express - len(reported))
        return max(0, min(wanted, int((budget - used) // per_worker)))


__all__ = ["Autoscaler", "Decision", "Ewma", "Load"]
