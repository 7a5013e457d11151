"""Long recordings in pieces: cut at silences, decoded in parallel, stitched in order.

A recording longer than ``split_above_s`` is not given to one worker. First *plan* jobs
find its speech (faster-whisper's own Silero VAD, as its batched mode does): one per
idle worker, each on a part of at least ``plan_span_s`` seconds cut at the quietest
moment near its nominal end, the first also detecting the language when the request
leaves it open. Their regions are grouped here into pieces of at most ``piece_s``
seconds, cut only at silences (and at every long one). Then each piece (or batch of
``piece_batch`` pieces, joined end to end; the backend lays each out in a window of its
own) is a job of its own: the pieces queue like any other work (piece
k in round k, so short requests are not stuck behind a recording, see :mod:`.jobs`),
go to whichever workers are idle, and are retried alone if their worker dies. As the
pieces finish, their segments are moved onto the recording's timeline and handed to
``on_segment`` in order; when the last one is in, the result is stitched together.
A piece that fails fails the recording, and its other pieces are dropped.

Everything here runs on the manager thread, under the pool's lock, except what a
caller's cancel triggers (cancelling the recording cancels its queued pieces).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np

from ..audio import SAMPLE_RATE
from ..config import DecodeOptions
from ..results import Segment, Timings, TranscriptionResult
from ..worker import protocol as p
from .jobs import Job, settle

if TYPE_CHECKING:
    from .manager import ProcessPool

log = logging.getLogger(__name__)

HOP = 160  # samples per feature frame: a segment's ``seek`` is counted in frames
MAX_GAP_S = 2.0  # a silence at least this long always ends a piece: Whisper invents words in long ones
CUT_SEARCH_S = 2.0  # a plan part ends at the quietest 10 ms this close to its nominal end
ProgressCallback = Callable[[int, int], None]  # (pieces done, pieces in all)
Region = tuple[int, int]  # (start, end) sample indices


def group_pieces(regions: list[Region], max_samples: int, max_gap_samples: int) -> tuple[Region, ...]:
    """Speech regions (in order) grouped into contiguous pieces of at most ``max_samples``,
    cut only at silences, and at every silence longer than ``max_gap_samples``."""
    pieces: list[Region] = []
    for start, end in regions:
        if pieces and end - pieces[-1][0] <= max_samples and start - pieces[-1][1] <= max_gap_samples:
            pieces[-1] = (pieces[-1][0], end)
        else:
            pieces.append((start, end))
    return tuple(pieces)


def batch_sizes(pieces: int, most: int, workers: int) -> list[int]:
    """How many of ``pieces`` each job takes: at most ``most``, in as few jobs as that
    allows, rounded up to whole rounds of ``workers`` and shared out evenly (sizes differ
    by one at most, the larger first). 10 pieces in batches of up to 4 on 2 workers go
    3, 3, 2, 2 rather than 4, 4, 2, whose third job would leave one worker idle."""
    if pieces < 1:
        return []
    jobs = min(pieces, math.ceil(math.ceil(pieces / most) / workers) * workers)
    size, larger = divmod(pieces, jobs)
    return [size + 1] * larger + [size] * (jobs - larger)


def balanced_pieces(regions: list[Region], max_samples: int, max_gap_samples: int, workers: int) -> tuple[Region, ...]:
    """:func:`group_pieces`, with as many pieces as fill whole rounds of ``workers``, each
    as short as that count allows.

    The pieces of one recording finish together only if every worker decodes as many of
    them, of about the same length: 9 full pieces on 2 workers leave one worker idle for
    the last one, while 10 shorter ones keep both busy to the end. The extra encoder
    window costs less than the idle round saves. Greedy grouping under a length limit
    gives the fewest pieces that limit allows, and that count only grows as the limit
    falls, so the shortest limit that keeps the count is found by bisection."""
    pieces = group_pieces(regions, max_samples, max_gap_samples)
    if workers < 2 or len(pieces) < 2:
        return pieces
    wanted = math.ceil(len(pieces) / workers) * workers
    lo, hi = max(end - start for start, end in regions), max_samples  # the longest region cannot be cut
    while lo < hi:  # the shortest limit that still gives no more than ``wanted`` pieces
        mid = (lo + hi) // 2
        if len(group_pieces(regions, mid, max_gap_samples)) <= wanted:
            hi = mid
        else:
            lo = mid + 1
    return group_pieces(regions, lo, max_gap_samples)


def plan_spans(audio: np.ndarray, parts: int) -> list[Region]:
    """``audio`` in ``parts`` contiguous spans of about equal length, each cut at the
    quietest 10 ms (lowest energy) within ``CUT_SEARCH_S`` of its nominal end, so that a
    cut falls between words where it can."""
    hop, bounds = HOP, [0]
    for k in range(1, parts):
        nominal = audio.size * k // parts
        lo = max(bounds[-1] + hop, nominal - int(CUT_SEARCH_S * SAMPLE_RATE))
        hi = min(audio.size - hop, nominal + int(CUT_SEARCH_S * SAMPLE_RATE))
        frames = audio[lo : lo + (hi - lo) // hop * hop].reshape(-1, hop)
        bounds.append(lo + int(np.argmin(np.einsum("ij,ij->i", frames, frames))) * hop if frames.size else nominal)
    bounds.append(audio.size)
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def joined(audio: np.ndarray, batch: tuple[Region, ...]) -> tuple[np.ndarray, tuple[Region, ...]]:
    """The audio a job carries for ``batch`` (pieces of ``audio``): the pieces end to end
    (the backend lays each out in its own window), and where each lies in it
    (:func:`on_timeline` maps its times back)."""
    where, at = [], 0
    for start, end in batch:
        where.append((at, at + end - start))
        at = where[-1][1]
    return np.concatenate([audio[start:end] for start, end in batch]), tuple(where)


def on_timeline(segment: Segment, batch: tuple[Region, ...], where: tuple[Region, ...]) -> Segment:
    """A segment of a job's :func:`joined` audio moved onto the recording's timeline: by
    the offset of the piece its middle falls in, its times (and words) kept inside that
    piece (a word timed past the piece's end, in its window's silence, belongs to its edge)."""
    middle = (segment.start + segment.end) / 2 * SAMPLE_RATE
    k = next((k for k, (_, e) in enumerate(where) if middle <= e), len(where) - 1)  # at its end: still this piece
    start, end = batch[k]
    shift = start - where[k][0]
    lo, hi = start / SAMPLE_RATE, end / SAMPLE_RATE
    moved = segment.moved(shift / SAMPLE_RATE, shift // HOP)

    def inside(t: float) -> float:
        return min(max(t, lo), hi)

    words = moved.words
    if words is not None:
        words = tuple(dataclasses.replace(w, start=inside(w.start), end=inside(w.end)) for w in words)
    return dataclasses.replace(moved, start=inside(moved.start), end=inside(moved.end), words=words)


class LongRequest:
    """One long recording on its way through the pool, from plan to stitched result."""

    def __init__(
        self,
        pool: ProcessPool,
        job_id: int,
        audio: np.ndarray,
        options: DecodeOptions,
        future: Future[TranscriptionResult],
        *,
        priority: int,
        submitted: float,
        deadline: float | None,
        on_segment: Callable[[Segment], None] | None,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.id = job_id
        self.pool = pool
        self.piece_s = pool.config.piece_s
        self.audio = audio
        self.options = options
        self.future = future
        self.submitted = submitted
        self.on_segment = on_segment
        self.on_progress = on_progress
        self.pieces: tuple[tuple[int, int], ...] = ()
        self.batches: list[tuple[tuple[int, int], ...]] = []  # the pieces each job decodes
        self.layouts: list[tuple[Region, ...]] = []  # where they lie in its audio (none: alone)
        self.jobs: list[Job] = []
        self.results: list[TranscriptionResult | None] = []
        self.delivered = 0  # pieces whose segments went to on_segment, numbered on the recording
        self.segments = 0  # segments numbered so far
        self.streamed = 0  # segments of a single piece already handed to on_segment
        self.language: str | None = options.language
        self.language_probability = 0.0
        self.spans = plan_spans(audio, self._plan_parts())
        self.regions: list[tuple[Region, ...] | None] = [None] * len(self.spans)
        self.plan_jobs = [
            Job(
                id=job_id if index == 0 else next(pool._job_ids),
                audio=audio[start:end] if len(self.spans) > 1 else audio,
                options=options,
                future=Future(),
                priority=priority,
                submitted=submitted,
                deadline=deadline,
                kind="plan",
                parent=self,
                round=index,  # the first part (round 0) detects the language
            )
            for index, (start, end) in enumerate(self.spans)
        ]
        self.plan_job = self.plan_jobs[0]
        for index, job in enumerate(self.plan_jobs):
            job.future.add_done_callback(lambda f, index=index: self._part_planned(index, f))

    @property
    def done_pieces(self) -> int:
        return sum(len(b) for b, r in zip(self.batches, self.results, strict=True) if r is not None)

    def _workers(self) -> int:
        """Workers that can take work now (at least one: the pool replaces the ones it lost)."""
        return max(1, len(self.pool._capacity()))

    def _plan_parts(self) -> int:
        """One part per worker that can take work now, each at least ``plan_span_s`` long."""
        span = self.pool.config.plan_span_s
        if span is None:
            return 1
        return max(1, min(self._workers(), int(self.duration // span)))

    # -- callbacks ---------------------------------------------------------------------
    def _part_planned(self, index: int, future: Future) -> None:
        if future.cancelled() or self.future.done():
            return
        if future.exception() is not None:
            self._fail(future.exception())
            return
        planned: p.Planned = future.result()
        offset = self.spans[index][0]
        self.regions[index] = tuple((start + offset, end + offset) for start, end in planned.regions)
        if index == 0:
            if self.options.language is None:
                self.language = planned.language
            self.language_probability = planned.language_probability
        if all(r is not None for r in self.regions):
            self._planned()

    def _planned(self) -> None:
        """Every part is planned: the regions, joined across the cuts, become pieces."""
        regions = [region for part in self.regions if part is not None for region in part]
        max_samples = int(self.piece_s * SAMPLE_RATE)
        workers = self._workers()
        self.pieces = balanced_pieces(regions, max_samples, int(MAX_GAP_S * SAMPLE_RATE), workers)
        ends = list(itertools.accumulate(batch_sizes(len(self.pieces), self.pool.config.pieces_per_batch, workers)))
        self.batches = [self.pieces[i:j] for i, j in itertools.pairwise([0, *ends])]
        self.results = [None] * len(self.batches)
        log.info(
            "request %d: %.0f s of audio in %d piece(s), %d batch(es)",
            self.id,
            self.duration,
            len(self.pieces),
            len(self.batches),
        )
        self._progress()
        if not self.pieces:  # no speech: nothing to decode
            self._finish()
            return
        # The plan's VAD found the speech: no piece needs the gate or the filter again.
        options = self.options.replace(language=self.language, vad_filter=False, speech_gate=False)
        # One piece: nothing to spread. It is decoded as any audio up to 30 s is, and its
        # segments stream as they decode.
        alone = len(self.pieces) == 1
        self.layouts = []
        for index, batch in enumerate(self.batches):
            if alone:
                start, end = batch[0]
                audio, where = np.ascontiguousarray(self.audio[start:end]), ()
            else:
                audio, where = joined(self.audio, batch)
            self.layouts.append(where)
            job = Job(
                id=next(self.pool._job_ids),
                audio=audio,
                options=options,
                future=Future(),
                priority=self.plan_job.priority,
                submitted=self.submitted,
                deadline=self.plan_job.deadline,
                parent=self,
                round=index,
                pieces=where,
                on_segment=self._stream_alone if alone and self.on_segment is not None else None,
            )
            job.future.add_done_callback(lambda f, index=index: self._piece_done(index, f))
            self.jobs.append(job)
            self.pool._queue.push(job)

    def _stream_alone(self, segment: Segment) -> None:
        """A single piece's segment, as it decodes: on the recording's timeline, numbered."""
        offset = self.pieces[0][0] / SAMPLE_RATE
        self.streamed += 1
        assert self.on_segment is not None
        self.on_segment(segment.moved(offset, self.pieces[0][0] // HOP))

    def _piece_done(self, index: int, future: Future) -> None:
        if future.cancelled() or self.future.done():
            return
        if future.exception() is not None:
            self._fail(future.exception())
            return
        self.results[index] = self._on_timeline(index, future.result())
        while self.delivered < len(self.results) and (piece := self.results[self.delivered]) is not None:
            # In order: now its segments' numbers on the recording are known.
            segments = tuple(dataclasses.replace(s, id=self.segments + i) for i, s in enumerate(piece.segments, 1))
            self.segments += len(segments)
            self.results[self.delivered] = dataclasses.replace(piece, segments=segments)
            already = self.streamed  # a single piece's first segments went out as they decoded
            self.streamed = 0
            for segment in segments[already:] if self.on_segment is not None else ():
                try:
                    self.on_segment(segment)
                except Exception:
                    log.exception("an on_segment callback raised")
            self.delivered += 1
        self._progress()
        if self.delivered == len(self.results):
            self._finish()

    # -- the result ----------------------------------------------------------------------
    @property
    def duration(self) -> float:
        return self.audio.size / SAMPLE_RATE

    def _on_timeline(self, index: int, piece: TranscriptionResult) -> TranscriptionResult:
        """The batch's segments and words moved to the recording's timeline."""
        batch, where = self.batches[index], self.layouts[index]
        if not where:  # a single piece, decoded as it is
            start = batch[0][0]
            moved = tuple(s.moved(start / SAMPLE_RATE, start // HOP) for s in piece.segments)
        else:
            moved = tuple(on_timeline(s, batch, where) for s in piece.segments)
        return dataclasses.replace(piece, segments=moved)

    def _finish(self) -> None:
        pieces = [r for r in self.results if r is not None]
        segments = tuple(s for r in pieces for s in r.segments)
        now = time.monotonic()
        started = self.plan_job.dispatched or now
        result = TranscriptionResult(
            text="".join(s.text for s in segments).strip(),
            segments=segments,
            language=self.language,
            language_probability=self.language_probability,
            duration=self.duration,
            worker_id=pieces[0].worker_id if pieces else -1,
            timings=Timings(
                queue_wait_s=started - self.submitted,
                inference_s=sum(r.timings.inference_s for r in pieces),
                total_s=now - self.submitted,
            ),
            window="full" if any(r.window == "full" for r in pieces) else "short",
            fallback=next((r.fallback for r in pieces if r.fallback is not None), None),
            retried=next((r.retried for r in pieces if r.retried is not None), None),
            pieces=len(self.pieces),
        )
        if settle(self.future, result=result):
            self.pool._counts.completed += 1
            self.pool._counts.latencies.append(result.timings.total_s)
        self.pool._long.pop(self.id, None)

    def _fail(self, error: BaseException) -> None:
        if settle(self.future, error=error):
            self.pool._counts.failed += 1
        for job in (*self.plan_jobs, *self.jobs):
            job.future.cancel()  # queued pieces leave; running ones finish and are dropped
        self.pool._long.pop(self.id, None)

    def _progress(self) -> None:
        if self.on_progress is not None:
            try:
                self.on_progress(self.done_pieces, len(self.pieces))
            except Exception:
                log.exception("an on_progress callback raised")


__all__ = [
    "MAX_GAP_S",
    "LongRequest",
    "ProgressCallback",
    "balanced_pieces",
    "group_pieces",
    "joined",
    "on_timeline",
    "plan_spans",
]
