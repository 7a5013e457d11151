"""What the pool shows of itself: its counters, and the snapshots built from them.

:class:`Counters` holds every running count in one place; the manager thread changes
it, under the pool's lock. :func:`snapshot` turns the counters and the workers into a
frozen :class:`PoolStatus`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE
from ..worker import Worker, WorkerState
from .jobs import Job
from .pieces import LongRequest


@dataclass(slots=True)
class Counters:
    """The pool's running counts (only the manager thread and ``submit`` change them)."""

    completed: int = 0
    failed: int = 0
    restarts: int = 0
    crashes: int = 0
    recycled: int = 0
    retried: int = 0
    scale_ups: int = 0
    scale_downs: int = 0
    background: int = 0  # re-warm and health-check inferences
    pieces: int = 0  # pieces of long recordings decoded
    long_requests: int = 0  # recordings decoded in pieces
    batches: int = 0  # batches of requests decoded together
    batched_requests: int = 0  # the requests in them
    short_windows: int = 0  # requests answered by the short-audio window
    window_fallbacks: Counter[str] = field(default_factory=Counter)  # by reason
    window_retries: Counter[str] = field(default_factory=Counter)  # mended on the short window, by reason
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=2048))


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    id: int
    slot: int
    pid: int | None
    state: WorkerState
    load_s: float | None
    warm_up_s: float | None
    requests_served: int
    error: str | None
    rss_mb: float | None = None
    ping_rtt_ms: float | None = None
    recycling: bool = False
    check_ms: float | None = None  # the last background inference (re-warm or health check)
    check_age_s: float | None = None
    checks: int = 0
    warm_windows: tuple[str, ...] = ()  # the encoder windows it has run: ("short", "full") when fully warm
    threads: int = 0  # the threads its model runs on
    express: bool = False  # kept for requests that are not a long recording's pieces
    output: tuple[str, ...] = ()  # a failed worker's last printed lines


@dataclass(frozen=True, slots=True)
class RequestProgress:
    """Where a caller's request stands: its place in the queue (0 is next; None once a
    worker has it) and, for a recording decoded in pieces, how many are done."""

    id: int
    position: int | None
    audio_s: float
    pieces_done: int = 0
    pieces_total: int = 1  # 0 until a long recording is planned


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """A snapshot of the pool. Worker counts partition ``total_workers`` by state
    (``busy`` is processing, completed or draining; ``stopping`` is asked to exit)."""

    total_workers: int
    cold_workers: int
    warming_workers: int
    warm_workers: int
    busy_workers: int
    failed_workers: int
    warm_up_progress: float
    ready: bool
    queue_depth: int
    requests_completed: int
    requests_failed: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    worker_restarts: int = 0
    worker_crashes: int = 0
    workers_recycled: int = 0
    requests_retried: int = 0
    short_window_requests: int = 0
    window_fallbacks: dict[str, int] = field(default_factory=dict)
    window_retries: dict[str, int] = field(default_factory=dict)
    min_workers: int = 0
    max_workers: int = 0
    scale_ups: int = 0
    scale_downs: int = 0
    arrival_rate: float = 0.0  # requests per second, moving average
    background_inferences: int = 0
    stopping_workers: int = 0
    pieces_completed: int = 0
    long_requests: int = 0
    batches: int = 0
    batched_requests: int = 0
    express_workers: int = 0  # serving or warming up: kept for requests that are not a recording's pieces
    workers: tuple[WorkerStatus, ...] = field(default_factory=tuple)
    requests: tuple[RequestProgress, ...] = field(default_factory=tuple)  # queued, and long ones running

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("workers", "requests")}
        data["requests"] = [dataclasses.asdict(r) for r in self.requests]
        data["workers"] = [
            {f.name: (str(v) if f.name == "state" else v) for f in fields(w) for v in (getattr(w, f.name),)}
            for w in self.workers
        ]
        return data


@dataclass(frozen=True, slots=True)
class WarmUpSummary:
    succeeded: int
    failed: int
    total_s: float
    errors: dict[int, str]


_PROGRESS = {WorkerState.COLD: 0.0}  # warming: 0.1, or 0.5 once the model is loaded; else 1


def _progress(w: Worker) -> float:
    if w.state is WorkerState.WARMING:
        return 0.5 if w.load_s is not None else 0.1
    return _PROGRESS.get(w.state, 1.0)


def worker_status(w: Worker, now: float) -> WorkerStatus:
    return WorkerStatus(
        id=w.id,
        slot=w.slot,
        pid=w.pid,
        state=w.state,
        load_s=w.load_s,
        warm_up_s=w.warm_up_s,
        requests_served=w.requests_served,
        error=w.error,
        rss_mb=round(w.rss_bytes / 2**20, 1) if w.rss_bytes else None,
        ping_rtt_ms=round(w.ping_rtt_s * 1000, 2) if w.ping_rtt_s is not None else None,
        recycling=w.recycle_reason is not None,
        check_ms=round(w.check_s * 1000, 1) if w.check_s is not None else None,
        check_age_s=round(now - w.last_check_at, 1) if w.checks else None,
        checks=w.checks,
        warm_windows=w.warm_windows,
        threads=w.spec.cpu_threads,
        express=w.express,
        output=w.output_tail() if w.state is WorkerState.FAILED else (),
    )


def requests_progress(queue: Sequence[Job], long_requests: Sequence[LongRequest]) -> tuple[RequestProgress, ...]:
    """The queued requests in the order they will be served, then the long ones at work."""
    order = sorted(queue, key=Job.sort_key)
    first_at: dict[int, int] = {}  # request id -> position of its first queued job
    for position, job in enumerate(order):
        owner = job.parent.id if job.parent is not None else job.id
        first_at.setdefault(owner, position)
    progress = []
    for job in order:
        if job.counted and job.id in first_at:
            progress.append(RequestProgress(job.id, first_at[job.id], job.audio.size / SAMPLE_RATE))
    for long in long_requests:
        running = any(j.dispatched is not None for j in (*long.plan_jobs, *long.jobs))
        progress.append(
            RequestProgress(
                long.id,
                None if running else first_at.get(long.id),
                long.duration,
                long.done_pieces,
                len(long.pieces),
            )
        )
    return tuple(progress)


def snapshot(
    workers: Sequence[Worker],
    counts: Counters,
    *,
    now: float,
    queue: Sequence[Job],
    long_requests: Sequence[LongRequest],
    min_workers: int,
    max_workers: int,
    express_workers: int,
    arrival_rate: float,
) -> PoolStatus:
    by_state = {state: 0 for state in WorkerState}
    for w in workers:
        by_state[w.state] += 1
    lat = np.array(counts.latencies) if counts.latencies else None
    return PoolStatus(
        total_workers=len(workers) - by_state[WorkerState.TERMINATED],
        cold_workers=by_state[WorkerState.COLD],
        warming_workers=by_state[WorkerState.WARMING],
        warm_workers=by_state[WorkerState.WARM],
        busy_workers=sum(1 for w in workers if w.is_busy()),
        failed_workers=by_state[WorkerState.FAILED],
        stopping_workers=by_state[WorkerState.STOPPING],
        warm_up_progress=round(100.0 * sum(map(_progress, workers)) / len(workers), 1) if workers else 0.0,
        ready=any(w.is_warm() for w in workers),
        queue_depth=len(queue),
        requests_completed=counts.completed,
        requests_failed=counts.failed,
        latency_p50_s=float(np.percentile(lat, 50)) if lat is not None else None,
        latency_p95_s=float(np.percentile(lat, 95)) if lat is not None else None,
        worker_restarts=counts.restarts,
        worker_crashes=counts.crashes,
        workers_recycled=counts.recycled,
        requests_retried=counts.retried,
        short_window_requests=counts.short_windows,
        window_fallbacks=dict(counts.window_fallbacks),
        window_retries=dict(counts.window_retries),
        min_workers=min_workers,
        max_workers=max_workers,
        scale_ups=counts.scale_ups,
        scale_downs=counts.scale_downs,
        arrival_rate=round(arrival_rate, 3),
        background_inferences=counts.background,
        pieces_completed=counts.pieces,
        long_requests=counts.long_requests,
        batches=counts.batches,
        batched_requests=counts.batched_requests,
        express_workers=express_workers,
        workers=tuple(worker_status(w, now) for w in workers),
        requests=requests_progress(queue, long_requests),
    )


__all__ = ["Counters", "PoolStatus", "RequestProgress", "WarmUpSummary", "WorkerStatus", "snapshot", "worker_status"]
