"""Supervision: deadlines, deaths, retries, replacements and planned recycling.

* a worker that dies (pipe EOF or exit) is replaced at once; the request it was
  serving is retried on another worker, and refused as poison once it has crashed
  ``max_crashes_per_request`` workers;
* a request past its timeout fails with ``RequestTimeout`` and its worker is killed and
  replaced; so is an idle worker that does not answer a health ping in time, and one
  that does not take a message (a request of megabytes fills its socket) within
  ``send_timeout_s``: stopped or hung, it would otherwise hold a sender forever;
* a worker that fails warm-up is restarted with exponential backoff, and its slot is
  given up (state ``failed``, with the reason) after ``max_restarts`` failures in a row;
  one that exits before it is warm reports the last lines it printed;
* planned recycling (``max_requests_per_worker``, ``max_worker_rss_mb``) warms the
  replacement first; the old worker leaves once the new one is warm, at once if idle,
  else after its request (state ``draining``), so capacity never dips.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .. import events as ev
from ..errors import PoolNotReady, RequestTimeout, WhisperPoolError, WorkerCrashed
from ..worker import Worker, WorkerState
from .jobs import Job, settle, timeout_message

if TYPE_CHECKING:
    from .manager import ProcessPool

log = logging.getLogger(__name__)
TAIL_IN_ERROR = 5  # lines of a worker's last output quoted in its error


class Supervision:
    """Mixin of :class:`~whisperpool.pool.ProcessPool`: runs on the manager thread."""

    def _check_deadlines(self: ProcessPool, now: float) -> None:
        cfg = self.config
        for w in list(self._workers):
            if w.state is WorkerState.WARMING and w.warmup_deadline is not None and now >= w.warmup_deadline:
                limit = w.warmup_deadline - (w.warmup_started or w.warmup_deadline)
                self._worker_failed(w, f"warm-up did not finish within {limit:.3g} s")
            elif (since := w.stalled_since()) is not None and now >= since + cfg.send_timeout_s:
                self._worker_failed(w, f"did not take a message within {cfg.send_timeout_s:g} s (stopped or hung)")
            elif w.job is not None and w.job.deadline is not None and now >= w.job.deadline:
                job = w.job
                for request in job.requests():
                    if settle(request.future, error=RequestTimeout(timeout_message(request, now))) and request.counted:
                        self._counts.failed += 1
                w.job = None
                what = job.background or f"request {job.id}"
                self._worker_failed(w, f"{what} timed out; the worker was stopped")
            elif w.ping_sent_at is not None and now >= w.ping_sent_at + cfg.ping_timeout_s:
                self._worker_failed(w, f"did not answer a health ping within {cfg.ping_timeout_s:g} s")
            elif w.is_idle() and w.ping_sent_at is None and w.next_ping_at is not None and now >= w.next_ping_at:
                if not self._closing:
                    w.ping(now)
        for w in self._workers + self._retired:
            if w.kill_at is not None and now >= w.kill_at:
                w.kill()
        self._restart_due(now)
        self._autoscale(now)
        self._start_background(now)
        self._expire_queued(now)

    def _expire_queued(self: ProcessPool, now: float) -> None:
        expired = self._queue.remove(lambda j: j.deadline is not None and now >= j.deadline)
        warm = any(w.is_warm() for w in self._workers)
        for job in expired:
            error: WhisperPoolError
            if warm:
                error = RequestTimeout(timeout_message(job, now))
            else:  # nothing could have served it: the pool is not ready, not slow
                error = PoolNotReady(f"request {job.id}: no worker became warm within its timeout")
            if settle(job.future, error=error) and job.counted:
                self._counts.failed += 1
        hope = any(w.is_warm() or w.is_starting() for w in self._workers) or self._restart_at
        if self._queue and not hope:
            self._fail_queue(PoolNotReady("no worker is warm, warming or about to restart"))

    def _on_exit(self: ProcessPool, w: Worker) -> None:
        code = w.reap()
        if w in self._retired:
            self._retired.remove(w)
        if w.is_final():
            return
        if w.state is WorkerState.STOPPING and w.job is None:
            w.set_state(WorkerState.TERMINATED)
            return
        reason = f"worker process exited unexpectedly (exit code {code})"
        tail = [line for line in w.output_tail() if line.strip()][-TAIL_IN_ERROR:]
        if w.is_starting() and tail:
            reason += "; its last output:\n" + "\n".join(tail)
        log.error("worker %d (pid %s): %s", w.id, w.pid, reason)
        self._worker_failed(w, reason)

    def _worker_failed(self: ProcessPool, w: Worker, reason: str) -> None:
        """Mark ``w`` failed, stop its process, retry or fail its request, plan its replacement."""
        if w.is_final():
            return
        was_warming = w.is_starting()
        was_draining = w.state is WorkerState.DRAINING
        w.error = reason
        job, w.job = w.job, None
        w.set_state(WorkerState.FAILED)
        now = time.monotonic()
        w.kill()
        self._emit(ev.WORKER_FAILED, ev.WorkerFailed(w.id, w.slot, reason, was_warming))
        if job is not None:
            self._requeue_or_fail(job, w, reason)
        if was_warming:
            self._slot_failures[w.slot] = self._slot_failures.get(w.slot, 0) + 1
            self._emit(ev.WARM_UP_FAILED, ev.WarmUpFailedEvent(w.id, reason))
        elif w.recycle_reason is None:
            self._counts.crashes += 1
        self._after_warm_up_change()
        if was_draining:  # its successor already serves: nothing to replace
            self._workers.remove(w)
            if w.alive:
                self._retired.append(w)
            return
        self._plan_replacement(w, now)

    def _requeue_or_fail(self: ProcessPool, job: Job, w: Worker, reason: str) -> None:
        """The worker serving ``job`` died: try it elsewhere, unless it is poison."""
        if job.members:  # each request of the batch on its own: which one crashed it is unknown
            for member in job.members:
                member.alone = True
                self._requeue_or_fail(member, w, reason)
            return
        job.crashes += 1
        if job.future.done() or job.background is not None:
            return
        if job.parent is not None and job.parent.future.done():
            return  # a piece of a recording that is over (cancelled, failed): nobody waits for it
        if job.crashes >= self.config.max_crashes_per_request:
            error = WorkerCrashed(
                f"request {job.id} was refused as poison: it crashed {job.crashes} workers (last: {reason})"
            )
        elif self._closing:
            error = WorkerCrashed(f"worker {w.id} failed while serving the request: {reason}")
        else:
            log.warning("worker %d died serving request %d; retrying it on another worker", w.id, job.id)
            self._counts.retried += 1
            job.dispatched = None
            self._queue.push(job)
            return
        if settle(job.future, error=error) and job.counted:
            self._counts.failed += 1

    def _plan_replacement(self: ProcessPool, w: Worker, now: float) -> None:
        """Schedule a new worker for ``w``'s slot: at once after a crash, with backoff after a failed warm-up."""
        if self._closing or w in self._retired:
            return
        if self._ready_future.done() and self._ready_future.exception() is not None:
            return  # every worker failed its first warm-up: nothing is restarted
        successor = next((x for x in self._workers if x.replaces is w), None)
        if successor is not None:  # it was being recycled: its successor is already warming
            successor.replaces = None
            self._workers.remove(w)
            if w.alive:
                self._retired.append(w)
            return
        failures = self._slot_failures.get(w.slot, 0)
        if failures > self.config.max_restarts:
            w.error = f"gave up after {failures} failed warm-ups in a row; the last: {w.error}"
            log.error("worker slot %d: %s", w.slot, w.error)
            return
        delay = 0.0
        if failures:
            delay = min(self.config.restart_backoff_max_s, self.config.restart_backoff_s * 2 ** (failures - 1))
        self._restart_at[w.slot] = (now + delay, w)

    def _restart_due(self: ProcessPool, now: float) -> None:
        for slot, (at, old) in list(self._restart_at.items()):
            if now < at:
                continue
            del self._restart_at[slot]
            if self._ready_future.done() and self._ready_future.exception() is not None:
                continue
            new = self._new_worker(slot)
            new.replaces, old.replaces = old.replaces, None  # a recycle in progress carries over
            self._workers[self._workers.index(old)] = new  # it takes the old one's place in the status
            if old.alive:
                self._retired.append(old)
            self._counts.restarts += 1
            log.info("worker slot %d: starting worker %d to replace worker %d", slot, new.id, old.id)
            self._emit(ev.WORKER_RESTARTED, ev.WorkerRestarted(new.id, slot, old.id, old.error or ""))
            self._start_worker(new)

    def _maybe_recycle(self: ProcessPool, w: Worker) -> None:
        """After a request: start warming a replacement if ``w`` reached a planned limit."""
        if w.recycle_reason is not None or self._closing:
            return
        limit_mb = self.config.max_worker_rss_mb
        if w.max_requests is not None and w.requests_served >= w.max_requests:
            reason = f"served {w.requests_served} requests (limit {w.max_requests})"
        elif limit_mb is not None and w.rss_bytes > limit_mb * 2**20:
            reason = f"resident memory {w.rss_bytes / 2**20:.0f} MiB is over the limit of {limit_mb:g} MiB"
        else:
            return
        w.recycle_reason = reason
        new = self._new_worker(w.slot)
        new.replaces = w
        self._workers.append(new)
        log.info("worker %d: %s; warming worker %d to take over", w.id, reason, new.id)
        self._start_worker(new)

    def _relieve(self: ProcessPool, old: Worker, now: float) -> None:
        """``old``'s replacement is warm: it leaves now if idle, else after its request."""
        if old.is_final() or old.is_leaving():
            return
        if old.job is None:
            self._retire(old, now)
        else:
            old.set_state(WorkerState.DRAINING)

    def _retire(self: ProcessPool, w: Worker, now: float) -> None:
        """A relieved worker, now idle, is asked to exit; its slot is its successor's."""
        w.ask_to_stop(now, self.config.stop_timeout_s)
        self._workers.remove(w)
        self._retired.append(w)
        self._counts.recycled += 1
        successor = next((x for x in self._workers if x.slot == w.slot), None)
        self._emit(
            ev.WORKER_RECYCLED,
            ev.WorkerRecycled(w.id, w.slot, successor.id if successor else -1, w.recycle_reason or ""),
        )


__all__ = ["Supervision"]
