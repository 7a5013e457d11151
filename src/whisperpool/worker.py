"""The parent's handle on one worker process, and the worker lifecycle.

::

    cold -> warming -> warm -> processing -> completed -> warm ...
               |         |         |             |
               +---------+---------+-------------+--> failed | terminated

A worker's state is one :class:`WorkerState` field, changed only in
:meth:`Worker.set_state`, which checks the move against :data:`TRANSITIONS` and reports
it. ``failed`` and ``terminated`` are final: a replacement is a new worker.

Only the pool's manager thread calls the methods that change a worker.
"""

from __future__ import annotations

import enum
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import protocol as p
from .backends import BackendSpec
from .config import DecodeOptions
from .errors import InvalidStateTransition
from .worker_main import worker_main

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from .pool import Job

log = logging.getLogger(__name__)


class WorkerState(str, enum.Enum):
    COLD = "cold"
    WARMING = "warming"
    WARM = "warm"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    TERMINATED = "terminated"

    def __str__(self) -> str:
        return self.value


S = WorkerState
_ENDS = {S.FAILED, S.TERMINATED}
TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    S.COLD: frozenset({S.WARMING} | _ENDS),
    S.WARMING: frozenset({S.WARM} | _ENDS),
    S.WARM: frozenset({S.PROCESSING} | _ENDS),
    S.PROCESSING: frozenset({S.COMPLETED} | _ENDS),
    S.COMPLETED: frozenset({S.WARM} | _ENDS),
    S.FAILED: frozenset(),
    S.TERMINATED: frozenset(),
}
HOT_STATES = frozenset({S.WARM, S.PROCESSING, S.COMPLETED})

StateCallback = Callable[["Worker", WorkerState, WorkerState], None]


class Worker:
    """One worker process, its pipe, its state and the request it is serving."""

    def __init__(
        self,
        worker_id: int,
        spec: BackendSpec,
        *,
        context: multiprocessing.context.BaseContext,
        warmup_options: DecodeOptions,
        warmup_timeout_s: float,
        on_state_change: StateCallback,
    ) -> None:
        self.id = worker_id
        self.slot = spec.slot
        self.spec = spec
        self.state = WorkerState.COLD
        self.error: str | None = None
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.pid: int | None = None
        self.job: Job | None = None
        self.requests_served = 0
        self.warmup_started: float | None = None
        self.warmup_deadline: float | None = None
        self.load_s: float | None = None
        self.warm_up_s: float | None = None
        self.warm_windows: tuple[str, ...] = ()  # encoder windows it has run (warm-up or request)
        self.quick_start = False  # a scale-up (set by the pool): warms the short window only
        self.idle_since = 0.0
        self.stopping = False
        self.kill_at: float | None = None
        self.reaped = False
        # supervision
        self.max_requests: int | None = None  # recycle after this many (jitter included)
        self.replaces: Worker | None = None  # the worker this one is warming up to relieve
        self.retire_when_idle = False  # relieved: stop as soon as it holds no request
        self.recycle_reason: str | None = None
        self.rss_bytes = 0
        self.next_ping_at: float | None = None
        self.ping_sent_at: float | None = None
        self.ping_rtt_s: float | None = None
        # background inference: re-warming after a quiet spell, and health checks
        self.last_request_at = 0.0  # when it last finished a real request (or became warm)
        self.last_check_at = 0.0  # when it last finished a background inference
        self.check_s: float | None = None  # how long the last one took
        self.checks = 0
        self._ping_seq = 0
        self._context = context
        self._warmup_options = warmup_options
        self._warmup_timeout_s = warmup_timeout_s
        self._on_state_change = on_state_change

    def __repr__(self) -> str:
        return f"<Worker {self.id} pid={self.pid} {self.state}>"

    # -- the one place a state changes -------------------------------------------------
    def set_state(self, new: WorkerState) -> None:
        old = self.state
        if new not in TRANSITIONS[old]:
            raise InvalidStateTransition(f"worker {self.id}: illegal transition {old} -> {new}")
        self.state = new
        log.debug("worker %d: %s -> %s", self.id, old, new)
        self._on_state_change(self, old, new)

    # -- queries -------------------------------------------------------------------------
    def is_warm(self) -> bool:
        """True while the model is loaded and warmed (idle, busy or just finished)."""
        return self.state in HOT_STATES

    def is_idle(self) -> bool:
        """Warm, free, and not on its way out: may take the next request."""
        return self.state is WorkerState.WARM and self.job is None and not self.stopping and not self.retire_when_idle

    @property
    def alive(self) -> bool:
        """The process was started and has not been reaped yet."""
        return self.process is not None and not self.reaped

    # -- actions -------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Start the process; it loads the model, runs one dummy inference, says READY."""
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main,
            args=(child_end, self.id, self.spec, self._warmup_options, logging.getLogger().level, os.getpid()),
            name=f"whisperpool-worker-{self.id}",
            daemon=True,
        )
        self.warmup_started = time.monotonic()
        self.warmup_deadline = self.warmup_started + self._warmup_timeout_s
        self.set_state(WorkerState.WARMING)
        process.start()
        child_end.close()
        self.process, self.conn, self.pid = process, parent_end, process.pid

    def assign(self, job: Job) -> None:
        """Send ``job`` to this idle worker (raises ``OSError`` if the pipe is broken)."""
        assert self.conn is not None and self.is_idle()
        self.job = job
        self.set_state(WorkerState.PROCESSING)
        self.conn.send(p.Transcribe(job.id, job.audio, job.options, stream=job.on_segment is not None))

    def ping(self, now: float) -> None:
        """Send a health ping; the answer must come before ``ping_sent_at`` + timeout."""
        assert self.conn is not None
        self._ping_seq += 1
        self.ping_sent_at = now
        self.conn.send(p.Ping(self._ping_seq))

    def pong(self, now: float, interval_s: float | None) -> None:
        if self.ping_sent_at is not None:
            self.ping_rtt_s = now - self.ping_sent_at
        self.ping_sent_at = None
        self.next_ping_at = now + interval_s if interval_s else None

    def finish_job(self) -> Job:
        job, self.job = self.job, None
        assert job is not None
        if not job.background:
            self.requests_served += 1
        self.set_state(WorkerState.COMPLETED)
        return job

    def ask_to_stop(self, now: float, grace_s: float) -> None:
        """Ask the process to exit; it is killed if still there after ``grace_s``."""
        self.stopping = True
        self.kill_at = now + grace_s
        try:
            assert self.conn is not None
            self.conn.send(p.Stop())
        except (OSError, AssertionError):
            self.terminate(now, grace_s)

    def terminate(self, now: float, grace_s: float) -> None:
        """SIGTERM now, SIGKILL at ``now + grace_s`` if it is still there."""
        if self.process is not None and not self.reaped:
            self.process.terminate()
            self.kill_at = now + grace_s

    def kill(self) -> None:
        if self.process is not None and not self.reaped:
            log.warning("worker %d (pid %s) did not exit in time; killing it", self.id, self.pid)
            self.process.kill()
            self.kill_at = None

    def reap(self) -> int | None:
        """Collect the exited process; returns its exit code."""
        assert self.process is not None
        self.process.join(timeout=5)
        self.reaped = True
        self.kill_at = None
        if self.conn is not None:
            self.conn.close()
        return self.process.exitcode
