"""Events the pool and the engine emit, and the payload each one carries.

Subscribe with ``pool.on(name, callback)`` or ``engine.on(name, callback)``; every
callback receives one payload dataclass. Pool callbacks run in the pool's manager thread
and must not block; engine callbacks run on the engine's event loop (or, for an engine
used synchronously, in the manager thread). A callback that raises is logged and does
not disturb the pool.

===================== ===================================================================
name                  when
===================== ===================================================================
initialized           the workers are created (cold), before warm-up starts
worker_state_changed  any worker changes state
warm_up_failed        one worker failed to warm up (error says why)
ready                 the pool: first worker is warm. The engine: its warm-up has ended
                      with at least one warm worker
warmed_up             every worker finished warming up, in success or failure
all_workers_warm      every worker warmed up successfully
worker_failed         a worker died, hung, timed out or failed warm-up (reason says which)
worker_restarted      a new worker was started to replace a failed one
worker_recycled       a worker retired as planned, its warm replacement already serving
===================== ===================================================================
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pyee import EventEmitter

from .worker import WorkerState

log = logging.getLogger(__name__)

INITIALIZED = "initialized"
WORKER_STATE_CHANGED = "worker_state_changed"
WARM_UP_FAILED = "warm_up_failed"
READY = "ready"
WARMED_UP = "warmed_up"
ALL_WORKERS_WARM = "all_workers_warm"
WORKER_FAILED = "worker_failed"
WORKER_RESTARTED = "worker_restarted"
WORKER_RECYCLED = "worker_recycled"
POOL_SCALED = "pool_scaled"

POOL_EVENTS = (
    INITIALIZED,
    WORKER_STATE_CHANGED,
    WARM_UP_FAILED,
    READY,
    WARMED_UP,
    ALL_WORKERS_WARM,
    WORKER_FAILED,
    WORKER_RESTARTED,
    WORKER_RECYCLED,
    POOL_SCALED,
)


@dataclass(frozen=True, slots=True)
class Initialized:
    total_workers: int
    model: str


@dataclass(frozen=True, slots=True)
class WorkerStateChanged:
    worker_id: int
    old: WorkerState
    new: WorkerState
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WarmUpFailedEvent:
    worker_id: int
    error: str


@dataclass(frozen=True, slots=True)
class Ready:
    warm_workers: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class WarmedUp:
    succeeded: int
    failed: int
    total_s: float


@dataclass(frozen=True, slots=True)
class AllWorkersWarm:
    total_workers: int
    total_s: float


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    worker_id: int
    slot: int
    reason: str
    during_warm_up: bool


@dataclass(frozen=True, slots=True)
class WorkerRestarted:
    worker_id: int
    slot: int
    replaces: int
    reason: str


@dataclass(frozen=True, slots=True)
class WorkerRecycled:
    worker_id: int
    slot: int
    successor: int
    reason: str


@dataclass(frozen=True, slots=True)
class PoolScaled:
    """The pool grew (``direction="up"``), shrank (``"down"``), or a scale-up was refused."""

    direction: str
    workers_before: int
    workers_after: int
    reason: str
    worker_ids: tuple[int, ...] = ()


def safe_emit(emitter: EventEmitter, event: str, payload: Any) -> None:
    """Emit, logging (not raising) whatever a subscriber raises."""
    try:
        emitter.emit(event, payload)
    except Exception:
        log.exception("a %r event handler raised", event)


__all__ = [
    "ALL_WORKERS_WARM",
    "INITIALIZED",
    "POOL_EVENTS",
    "POOL_SCALED",
    "PoolScaled",
    "READY",
    "WARMED_UP",
    "WARM_UP_FAILED",
    "WORKER_STATE_CHANGED",
    "AllWorkersWarm",
    "Initialized",
    "Ready",
    "WarmUpFailedEvent",
    "WORKER_FAILED",
    "WORKER_RECYCLED",
    "WORKER_RESTARTED",
    "WarmedUp",
    "WorkerFailed",
    "WorkerRecycled",
    "WorkerRestarted",
    "WorkerStateChanged",
    "safe_emit",
]
