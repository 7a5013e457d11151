"""What the pool does with each message a worker sends (see :mod:`whisperpool.worker.protocol`)."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from ..results import Timings
from ..worker import Worker, WorkerState
from ..worker import protocol as p
from .jobs import settle

if TYPE_CHECKING:
    from .manager import ProcessPool

log = logging.getLogger(__name__)


class Messages:
    """Mixin of :class:`~whisperpool.pool.ProcessPool`: runs on the manager thread."""

    def _on_message(self: ProcessPool, w: Worker, msg: Any) -> None:
        now = time.monotonic()
        if isinstance(msg, p.Loaded):
            w.load_s = msg.load_s
        elif isinstance(msg, p.Ready):
            self._on_ready(w, msg, now)
        elif isinstance(msg, p.WarmUpFailed):
            self._worker_failed(w, f"warm-up failed: {msg.error.type}: {msg.error.message}")
        elif isinstance(msg, p.SegmentDecoded):
            job = w.job
            if job is not None and job.id == msg.request_id and job.on_segment is not None:
                try:
                    job.on_segment(msg.segment)
                except Exception:
                    log.exception("an on_segment callback raised")
        elif isinstance(msg, (p.Done, p.Failed, p.Planned)):
            self._on_answer(w, msg, now)
        elif isinstance(msg, p.Pong):
            w.pong(now, self.config.ping_interval_s)
        else:
            log.error("worker %d sent an unknown message %r", w.id, type(msg).__name__)

    def _on_ready(self: ProcessPool, w: Worker, msg: p.Ready, now: float) -> None:
        w.warm_up_s = now - (w.warmup_started or now)
        w.idle_since = w.last_request_at = w.last_check_at = now
        w.warm_windows = msg.windows
        if w.quick:  # how long a scale-up takes: the horizon of predictive warm-up
            self._scale_up_s = w.warm_up_s
        else:  # the warm-start record is of full warm-ups: it sets their deadline
            self._state.record(self._state_key(), w.warm_up_s, msg.rss_bytes / 2**20)
        w.rss_bytes = msg.rss_bytes
        w.pong(now, self.config.ping_interval_s)
        w.set_state(WorkerState.WARM)
        log.info("worker %d warm in %.2f s (pid %s)", w.id, w.warm_up_s, w.pid)
        self._slot_failures.pop(w.slot, None)
        if w.replaces is not None:  # a planned recycle: the old worker may go now
            old, w.replaces = w.replaces, None
            self._relieve(old, now)
        self._after_warm_up_change()

    def _on_answer(self: ProcessPool, w: Worker, msg: p.Done | p.Failed | p.Planned, now: float) -> None:
        if w.job is None or w.job.id != msg.request_id:
            log.warning("worker %d answered request %s it was not serving", w.id, msg.request_id)
            return
        job = w.finish_job()
        w.pong(now, self.config.ping_interval_s)  # an answer is as good as a pong
        if job.background is not None:
            self._background_done(w, job, msg, now)
            return
        w.last_request_at = now
        if job.members:  # a batch of requests: each gets its part
            if isinstance(msg, p.Done):
                self._scaler.served(msg.inference_s)
                w.rss_bytes = msg.rss_bytes
                result = dataclasses.replace(msg.result, timings=Timings(inference_s=msg.inference_s))
                self._batch_answered(job, result, None, w.id, now)
            else:
                self._batch_answered(job, None, msg.error.to_exception(), w.id, now)
        elif isinstance(msg, p.Planned):  # a long recording's pieces: its LongRequest queues them
            self._scaler.served(msg.inference_s)
            settle(job.future, result=msg)
        elif isinstance(msg, p.Done):
            self._scaler.served(msg.inference_s)
            w.rss_bytes = msg.rss_bytes
            timings = Timings(
                queue_wait_s=(job.dispatched or now) - job.submitted,
                inference_s=msg.inference_s,
                total_s=now - job.submitted,
            )
            result = dataclasses.replace(msg.result, worker_id=w.id, timings=timings)
            if settle(job.future, result=result):
                if job.counted:
                    self._counts.completed += 1
                    self._counts.latencies.append(timings.total_s)
                else:
                    self._counts.pieces += max(1, len(job.pieces))
            self._counts.short_windows += result.window == "short"
            if result.window in ("short", "full") and result.window not in w.warm_windows:
                w.warm_windows += (result.window,)
            if result.fallback is not None and result.window == "full":  # not a partial's rejection
                self._counts.window_fallbacks[result.fallback] += 1
            if result.retried is not None:
                self._counts.window_retries[result.retried] += 1
        elif settle(job.future, error=msg.error.to_exception()) and job.counted:
            self._counts.failed += 1
        self._job_finished(w, now)

    def _job_finished(self: ProcessPool, w: Worker, now: float) -> None:
        """After an answer: a draining worker leaves; any other is idle again."""
        w.idle_since = now
        if w.state is WorkerState.DRAINING:
            self._retire(w, now)
            return
        w.set_state(WorkerState.WARM)
        self._maybe_recycle(w)


__all__ = ["Messages"]
