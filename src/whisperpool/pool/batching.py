"""Requests decoded together: several queued short requests as one batch on one worker.

With ``max_batch`` above 1, a worker that takes a short request also takes, from the
queue, up to ``max_batch - 1`` more that share its decoding options (what is queued
now: a lone request never waits for company). The worker decodes them as one batch,
the way it decodes the pieces of a long recording (faster-whisper's batched mode),
and the answer is split back into one result per
request. A batch shares its earliest deadline; if its worker dies, each request in it
is retried on its own.

Each request is decoded in the window it gets alone, from its own audio padded with
silence (the backend groups a batch by window), so a batched request's text is the one
it gets alone, bar a lone pass the short window's guard would have rejected. Off by
default (``max_batch=1``): it pays under concurrent load (see ``bench --throughput``),
and a batch decodes at the first temperature only, with a lighter guard than the short
window's (a request whose pass goes astray is decoded again alone).
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np

from ..audio import SAMPLE_RATE
from ..results import Timings, TranscriptionResult
from .jobs import Job, settle

if TYPE_CHECKING:
    from .manager import ProcessPool

log = logging.getLogger(__name__)


def batchable(job: Job, short_s: float) -> bool:
    """A caller's short request without streaming, decoded as the fast path would."""
    return (
        job.counted
        and not job.alone
        and job.kind == "transcribe"
        and not job.pieces
        and job.on_segment is None
        and job.options.window == "auto"
        and job.audio.size <= min(short_s, job.options.short_window_max_s) * SAMPLE_RATE
    )


def _decoded_alike(a: Job, b: Job) -> bool:
    """Options that decode a short request alike: ``segment_timestamps`` matters to a long
    recording's pieces only (a short window keeps its timestamp tokens), so a ``json``
    request and a ``verbose_json`` one may share a batch. Equal options need no copy."""
    return a.options == b.options or a.options.replace(segment_timestamps=b.options.segment_timestamps) == b.options


def split(batch: Job, result: TranscriptionResult) -> list[TranscriptionResult]:
    """One result per request of ``batch``: the segments that fall in its span, on its timeline."""
    out = []
    for member, (start, end) in zip(batch.members, batch.pieces, strict=True):
        offset = start / SAMPLE_RATE
        inside = [s for s in result.segments if start <= (s.start + s.end) / 2 * SAMPLE_RATE < end]
        segments = tuple(
            dataclasses.replace(
                s,
                id=i,
                start=s.start - offset,
                end=s.end - offset,
                words=None
                if s.words is None or not member.options.word_timestamps
                else tuple(dataclasses.replace(w, start=w.start - offset, end=w.end - offset) for w in s.words),
            )
            for i, s in enumerate(inside, start=1)
        )
        out.append(
            dataclasses.replace(
                result,
                text="".join(s.text for s in segments).strip(),
                segments=segments,
                duration=(end - start) / SAMPLE_RATE,
            )
        )
    return out


class Batching:
    """Mixin of :class:`~whisperpool.pool.ProcessPool`: runs on the manager thread."""

    def _with_company(self: ProcessPool, job: Job) -> Job:
        """``job``, or a batch of it and the queued requests that can go with it."""
        limit = self.config.max_batch
        if limit <= 1 or not batchable(job, self.config.split_above_s or 30.0):
            return job
        short_s = self.config.split_above_s or 30.0
        chosen: list[Job] = []
        for other in sorted(self._queue, key=Job.sort_key):  # in the order they would be served
            if len(chosen) == limit - 1:
                break
            if not other.future.done() and _decoded_alike(other, job) and batchable(other, short_s):
                chosen.append(other)
        taken = set(map(id, chosen))
        self._queue.remove(lambda j: id(j) in taken)
        company = [j for j in chosen if j.future.running() or j.future.set_running_or_notify_cancel()]
        if not company:
            return job
        members = (job, *company)
        spans, at = [], 0
        for m in members:
            spans.append((at, at + m.audio.size))
            at += m.audio.size
        batch = Job(
            id=next(self._job_ids),
            audio=np.concatenate([m.audio for m in members]),
            options=job.options,
            future=Future(),
            priority=min(m.priority for m in members),
            submitted=min(m.submitted for m in members),
            deadline=min((m.deadline for m in members if m.deadline is not None), default=None),
            pieces=tuple(spans),
            members=members,
        )
        batch.future.set_running_or_notify_cancel()
        self._counts.batches += 1
        self._counts.batched_requests += len(members)
        log.debug("batch of %d requests: %s", len(members), [m.id for m in members])
        return batch

    def _batch_answered(
        self: ProcessPool,
        batch: Job,
        result: TranscriptionResult | None,
        error: Exception | None,
        worker_id: int,
        now: float,
    ) -> None:
        """Settle each request of a batch with its part of the answer (or the error)."""
        parts = split(batch, result) if result is not None else [None] * len(batch.members)
        for member, part in zip(batch.members, parts, strict=True):
            if part is None:
                if settle(member.future, error=error):
                    self._counts.failed += 1
                continue
            timings = Timings(
                queue_wait_s=(batch.dispatched or now) - member.submitted,
                inference_s=result.timings.inference_s if result is not None else 0.0,
                total_s=now - member.submitted,
            )
            if settle(member.future, result=dataclasses.replace(part, worker_id=worker_id, timings=timings)):
                self._counts.completed += 1
                self._counts.latencies.append(timings.total_s)


__all__ = ["Batching", "batchable", "split"]
