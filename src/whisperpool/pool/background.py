"""Background inference: a dummy transcription on idle workers, to keep them warm and honest.

An idle worker gets one second of silence to transcribe after ``rewarm_after_idle_s``
without a request (caches and pages grow cold over a quiet spell), and every
``health_check_interval_s`` (a worker that answers pings but can no longer infer is
replaced). Never while a request waits; the time each took shows per worker in the status.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np

from ..audio import SAMPLE_RATE
from ..results import TranscriptionResult
from ..worker import Worker, WorkerState
from ..worker import protocol as p
from .jobs import PRIORITY_DEFAULT, Job

if TYPE_CHECKING:
    from .manager import ProcessPool

log = logging.getLogger(__name__)

BACKGROUND_SECONDS = 1.0  # the silence a re-warm or health check transcribes


class Background:
    """Mixin of :class:`~whisperpool.pool.ProcessPool`: runs on the manager thread."""

    def _background_due(self: ProcessPool, w: Worker) -> tuple[float, str] | None:
        """When ``w`` is next due a background inference, and which kind; None if never."""
        cfg = self.config
        due = []
        if cfg.rewarm_after_idle_s is not None:
            due.append((max(w.last_request_at, w.last_check_at) + cfg.rewarm_after_idle_s, "re-warm"))
        if cfg.health_check_interval_s is not None:
            due.append((w.last_check_at + cfg.health_check_interval_s, "health check"))
        return min(due) if due else None

    def _start_background(self: ProcessPool, now: float) -> None:
        """A dummy inference on each idle worker that is due one, while no request waits."""
        if self._closing or self._queue:
            return
        cfg = self.config
        for w in self._workers:
            due = self._background_due(w) if w.is_idle() else None
            if due is None or now < due[0]:
                continue
            future: Future[TranscriptionResult] = Future()
            future.set_running_or_notify_cancel()
            job = Job(
                id=next(self._job_ids),
                audio=np.zeros(int(SAMPLE_RATE * BACKGROUND_SECONDS), dtype=np.float32),
                options=cfg.decode.replace(speech_gate=False),  # silence must reach the decoder
                future=future,
                priority=PRIORITY_DEFAULT,
                submitted=now,
                deadline=now + cfg.warmup_timeout_s,
                background=due[1],
            )
            job.dispatched = now
            w.assign(job)

    def _background_done(self: ProcessPool, w: Worker, job: Job, msg: Any, now: float) -> None:
        if isinstance(msg, p.Failed):
            w.idle_since = now
            if w.state is WorkerState.COMPLETED:
                w.set_state(WorkerState.WARM)
            self._worker_failed(w, f"{job.background} failed: {msg.error.type}: {msg.error.message}")
            return
        w.last_check_at = now
        w.check_s = msg.inference_s
        w.checks += 1
        w.rss_bytes = msg.rss_bytes
        self._counts.background += 1
        log.debug("worker %d: %s took %.3f s", w.id, job.background, msg.inference_s)
        self._job_finished(w, now)


__all__ = ["BACKGROUND_SECONDS", "Background"]
