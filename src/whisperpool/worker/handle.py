"""The parent's handle on one worker: its process, its connection, its state, its request.

A worker's lifecycle is one :class:`~.states.WorkerState` field, changed only in
:meth:`Worker.set_state`, which checks the move against :data:`~.states.TRANSITIONS`
and reports it. Only the pool's manager thread calls the methods that change a worker.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import DecodeOptions
from ..errors import InvalidStateTransition
from . import protocol as p
from .outbox import Outbox
from .process import WorkerProcess
from .states import (
    BUSY_STATES,
    FINAL_STATES,
    HOT_STATES,
    LEAVING_STATES,
    STARTING_STATES,
    TRANSITIONS,
    WorkerState,
)

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from ..pool.jobs import Job

log = logging.getLogger(__name__)

StateCallback = Callable[["Worker", WorkerState, WorkerState], None]


class Worker:
    """One worker process, its connection, its state and the request it is serving.

    ``quick``: a scale-up, wanted now, that warms the short window only. ``express``: kept
    for requests that are not a long recording's plan or pieces (its slot's, so a
    replacement keeps it). ``replaces``:
    the worker this one warms up to relieve (a planned recycle); ``recycle_reason``:
    why this worker is being recycled. Neither is a state: the state says what the
    worker does, these say whom it relieves and why.
    """

    def __init__(
        self,
        worker_id: int,
        spec: p.BackendSpec,
        *,
        warmup_options: DecodeOptions,
        warmup_timeout_s: float,
        on_state_change: StateCallback,
        quick: bool = False,
        express: bool = False,
    ) -> None:
        self.id = worker_id
        self.slot = spec.slot
        self.spec = spec
        self.quick = quick
        self.express = express
        self.state = WorkerState.COLD
        self.error: str | None = None
        self.process: WorkerProcess | None = None
        self.conn: Connection | None = None  # read by the manager thread; written through the outbox
        self.outbox: Outbox | None = None
        self.pid: int | None = None
        self.job: Job | None = None
        self.requests_served = 0
        self.warmup_started: float | None = None
        self.warmup_deadline: float | None = None
        self.load_s: float | None = None
        self.warm_up_s: float | None = None
        self.warm_windows: tuple[str, ...] = ()  # encoder windows it has run (warm-up or request)
        self.idle_since = 0.0
        self.kill_at: float | None = None
        self.exit_code: int | None = None
        # supervision
        self.max_requests: int | None = None  # recycle after this many (jitter included)
        self.replaces: Worker | None = None
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
        self._reaped = False
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
        """True while the model is loaded and warmed (idle, busy, just finished or draining)."""
        return self.state in HOT_STATES

    def is_idle(self) -> bool:
        """Warm and free: may take the next request."""
        return self.state is WorkerState.WARM

    def is_busy(self) -> bool:
        return self.state in BUSY_STATES

    def is_starting(self) -> bool:
        return self.state in STARTING_STATES

    def is_leaving(self) -> bool:
        """Draining its last request or asked to exit: takes no new request."""
        return self.state in LEAVING_STATES

    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def alive(self) -> bool:
        """The process was started and has not been reaped yet."""
        return self.process is not None and not self._reaped

    def output_tail(self) -> tuple[str, ...]:
        """The last lines the worker process printed."""
        return self.process.output_tail() if self.process is not None else ()

    # -- actions -------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Start the process; it loads the model, runs one dummy inference, says READY."""
        process = WorkerProcess(f"whisperpool-worker-{self.id}")
        self.warmup_started = time.monotonic()
        self.warmup_deadline = self.warmup_started + self._warmup_timeout_s
        self.set_state(WorkerState.WARMING)
        conn = process.start()
        self.process, self.conn, self.pid = process, conn, process.pid
        self.outbox = Outbox(conn, f"whisperpool-worker-{self.id}-sender")
        self._send(p.Boot(self.id, self.spec, self._warmup_options, logging.getLogger().level, os.getpid()))

    def _send(self, message: object, now: float | None = None) -> None:
        assert self.outbox is not None
        self.outbox.put(message, time.monotonic() if now is None else now)

    def stalled_since(self) -> float | None:
        """Since when a message has waited for the worker to take it (None: it took them all)."""
        return self.outbox.waiting_since if self.outbox is not None and self.alive else None

    def assign(self, job: Job) -> None:
        """Hand ``job`` to this idle worker (queued in its outbox: this never blocks)."""
        assert self.is_idle()
        self.job = job
        self.set_state(WorkerState.PROCESSING)
        if job.kind == "plan":
            assert job.parent is not None
            self._send(p.Plan(job.id, job.audio, job.options, job.parent.piece_s, detect_language=job.round == 0))
        else:
            message = p.Transcribe(job.id, job.audio, job.options, job.on_segment is not None, job.pieces)
            self._send(message)

    def ping(self, now: float) -> None:
        """Send a health ping; the answer must come before ``ping_sent_at`` + timeout."""
        self._ping_seq += 1
        self.ping_sent_at = now
        self._send(p.Ping(self._ping_seq), now)

    def pong(self, now: float, interval_s: float | None) -> None:
        if self.ping_sent_at is not None:
            self.ping_rtt_s = now - self.ping_sent_at
        self.ping_sent_at = None
        self.next_ping_at = now + interval_s if interval_s else None

    def finish_job(self) -> Job:
        """The request it held is answered. A draining worker stays draining: the pool
        stops it next; any other goes to ``completed``."""
        job, self.job = self.job, None
        assert job is not None
        if not job.background:
            self.requests_served += 1
        if self.state is not WorkerState.DRAINING:
            self.set_state(WorkerState.COMPLETED)
        return job

    def ask_to_stop(self, now: float, grace_s: float) -> None:
        """Ask the process to exit (state ``stopping``); it is killed if still there after ``grace_s``."""
        self.set_state(WorkerState.STOPPING)
        self.kill_at = now + grace_s
        if self.outbox is not None:
            self._send(p.Stop(), now)
        else:
            self.kill()

    def stop_now(self) -> None:
        """Kill it without asking (state ``stopping``): it is warming, or its request is abandoned."""
        self.set_state(WorkerState.STOPPING)
        self.kill()

    def kill(self) -> None:
        """SIGKILL: a worker ignores SIGTERM and SIGINT (its parent owns shutdown), and one
        that is hung or stopped would not act on them anyway."""
        if self.alive:
            assert self.process is not None
            if self.kill_at is not None and self.state is WorkerState.STOPPING:
                log.warning("worker %d (pid %s) did not exit in time; killing it", self.id, self.pid)
            self.process.kill()
            self.kill_at = None

    def reap(self) -> int | None:
        """Collect the exited process; returns its exit code."""
        assert self.process is not None
        self.exit_code = self.process.reap()
        self._reaped = True
        self.kill_at = None
        if self.outbox is not None:
            self.outbox.close()
        if self.conn is not None:
            self.conn.close()
        return self.exit_code


__all__ = ["StateCallback", "Worker"]
