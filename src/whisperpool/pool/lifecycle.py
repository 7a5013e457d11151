"""The pool's own life: readiness after warm-up, and shutdown.

The pool is ready when one worker is warm and fails (:class:`~whisperpool.errors.PoolFailed`)
only when every worker of the first generation fails its warm-up; then nothing is
restarted, since a configuration that no worker can boot with will not get better by
retrying. Closing stops every worker, after serving the queue when draining, and gives
running requests the grace period before their workers are stopped.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .. import events as ev
from ..errors import PoolClosed, PoolFailed, WhisperPoolError
from ..worker import Worker, WorkerState
from .jobs import settle
from .status import WarmUpSummary

if TYPE_CHECKING:
    from .manager import ProcessPool

log = logging.getLogger(__name__)


class Lifecycle:
    """Mixin of :class:`~whisperpool.pool.ProcessPool`: runs on the manager thread."""

    def _on_state_change(self: ProcessPool, w: Worker, old: WorkerState, new: WorkerState) -> None:
        self._emit(ev.WORKER_STATE_CHANGED, ev.WorkerStateChanged(w.id, old, new, w.error))

    def _after_warm_up_change(self: ProcessPool) -> None:
        """Resolve the readiness futures and emit the warm-up events, each once."""
        now = time.monotonic()
        elapsed = now - (self._started_at or now)
        warm = sum(1 for w in self._workers if w.is_warm())
        if warm and not self._ready_sent:
            self._ready_sent = True
            self._ready_future.set_result(None)
            self._emit(ev.READY, ev.Ready(warm, elapsed))
        first = self._initial
        settled = [w for w in first if w.warm_up_s is not None or w.state is WorkerState.FAILED]
        if self._warmed_future.done() or len(settled) < len(first):
            return
        succeeded = sum(1 for w in first if w.warm_up_s is not None)
        errors = {w.id: w.error or "" for w in first if w.warm_up_s is None}
        summary = WarmUpSummary(succeeded, len(first) - succeeded, elapsed, errors)
        if succeeded == 0:
            err = PoolFailed(
                "every worker failed to warm up: " + "; ".join(f"worker {i}: {e}" for i, e in errors.items())
            )
            self._ready_future.set_exception(err)
            self._warmed_future.set_exception(err)
            self._fail_queue(err)
        else:
            self._warmed_future.set_result(summary)
        self._emit(ev.WARMED_UP, ev.WarmedUp(summary.succeeded, summary.failed, elapsed))
        if succeeded == len(first):
            self._emit(ev.ALL_WORKERS_WARM, ev.AllWorkersWarm(len(first), elapsed))

    def _fail_queue(self: ProcessPool, error: Exception) -> None:
        for job in self._queue.clear():
            if settle(job.future, error=error) and job.counted:
                self._counts.failed += 1

    def _shutdown_step(self: ProcessPool) -> bool:
        """One round of closing; True once every worker process is gone."""
        now = time.monotonic()
        draining = self._drain and self._close_deadline is not None and now < self._close_deadline
        if not draining:
            self._fail_queue(PoolClosed("the pool was closed"))
        elif self._queue:
            return False  # draining: the queue is still being served
        past_grace = self._close_deadline is not None and now >= self._close_deadline
        grace = self.config.stop_timeout_s
        for w in self._workers:
            if w.state is WorkerState.COLD:
                w.set_state(WorkerState.TERMINATED)
            elif not w.alive or w.state in (WorkerState.STOPPING, WorkerState.FAILED):
                continue
            elif w.state is WorkerState.WARMING:
                w.stop_now()
            elif w.job is None:
                w.ask_to_stop(now, grace)
            elif past_grace:
                job, w.job = w.job, None
                for request in job.requests():
                    closed = PoolClosed("the pool was closed before the request finished")
                    if settle(request.future, error=closed) and request.counted:
                        self._counts.failed += 1
                w.stop_now()
        self._restart_at.clear()
        for w in self._retired:
            if w.alive and not w.is_final() and w.state is not WorkerState.STOPPING:
                w.ask_to_stop(now, grace)
        if any(w.alive for w in self._workers + self._retired):
            return False
        for w in self._workers:
            if not w.is_final():
                if w.state is not WorkerState.COLD and w.state is not WorkerState.STOPPING:
                    w.set_state(WorkerState.STOPPING)
                w.set_state(WorkerState.TERMINATED)
        closed = PoolClosed("the pool was closed")
        for fut in (self._ready_future, self._warmed_future):
            if not fut.done():
                fut.set_exception(closed)
        return True

    def _abort(self: ProcessPool, error: WhisperPoolError) -> None:
        """Last resort if the manager thread itself breaks: fail everything, kill workers."""
        self._closing = True
        self._fail_queue(error)
        for w in self._workers + self._retired:
            for request in w.job.requests() if w.job is not None else ():
                settle(request.future, error=error)
            if w.alive:
                w.kill()
                w.reap()
        for fut in (self._ready_future, self._warmed_future):
            if not fut.done():
                fut.set_exception(error)


__all__ = ["Lifecycle"]
