"""Requests on their way through the pool, and the queue they wait in.

The queue is a heap ordered by ``(priority, round, id)``: a lower priority is served
first (streaming updates at :data:`PRIORITY_REALTIME`); within a priority, the k-th
piece of a long recording waits for round k, so a short request that arrives while a
long one is split over the workers waits for at most the pieces already running, not
for the whole recording; ties in arrival order. Only the
manager thread and :meth:`ProcessPool.submit` (under the pool's lock) touch it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..config import DecodeOptions
from ..results import Segment

if TYPE_CHECKING:
    from .pieces import LongRequest

PRIORITY_REALTIME = 0
PRIORITY_DEFAULT = 10


@dataclass(eq=False)
class Job:
    """One request on its way through the pool."""

    id: int
    audio: np.ndarray
    options: DecodeOptions
    future: Future
    priority: int
    submitted: float
    deadline: float | None
    on_segment: Callable[[Segment], None] | None = None
    dispatched: float | None = None
    attempts: int = 0
    crashes: int = 0  # workers that died while serving it
    background: str | None = None  # "re-warm" or "health check": the pool's own, no caller waits
    kind: Literal["transcribe", "plan"] = "transcribe"  # plan: cut a long recording into pieces
    parent: LongRequest | None = None  # the long recording this job is a part (or the plan) of
    round: int = 0  # the piece's index: see the module docstring
    pieces: tuple[tuple[int, int], ...] = ()  # a batch of a long recording's pieces, in ``audio``
    members: tuple[Job, ...] = ()  # a batch of callers' requests (see .batching): their spans are ``pieces``
    alone: bool = False  # its batch's worker died: it is retried, and batched no more

    @property
    def counted(self) -> bool:
        """A request of a caller's own: counted in the status (a piece counts with its recording)."""
        return self.parent is None and self.background is None and not self.members

    def requests(self) -> tuple[Job, ...]:
        """The callers' requests this job carries: its batch's members, or itself."""
        return self.members or (self,)

    def sort_key(self) -> tuple[int, int, int]:
        return (self.priority, self.round, self.id)


class RequestQueue:
    """Jobs waiting for a worker, by priority then arrival."""

    def __init__(self) -> None:
        self._heap: list[tuple[tuple[int, int, int], Job]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[Job]:
        return (job for _, job in self._heap)

    def push(self, job: Job) -> None:
        heapq.heappush(self._heap, (job.sort_key(), job))

    def pop(self) -> Job:
        return heapq.heappop(self._heap)[1]

    def peek(self) -> Job:
        """The job :meth:`pop` would take."""
        return self._heap[0][1]

    def pop_first(self, wanted: Callable[[Job], bool]) -> Job | None:
        """Take the first job, in serving order, that ``wanted`` picks (None if none)."""
        entries = [entry for entry in self._heap if wanted(entry[1])]
        if not entries:
            return None
        first = min(entries, key=lambda entry: entry[0])
        self._heap.remove(first)
        heapq.heapify(self._heap)
        return first[1]

    def waiting(self) -> list[Job]:
        """The jobs a caller still waits for (not cancelled or otherwise settled)."""
        return [job for _, job in self._heap if not job.future.done()]

    def remove(self, drop: Callable[[Job], bool]) -> list[Job]:
        """Take out the jobs ``drop`` picks; returns them."""
        kept, taken = [], []
        for entry in self._heap:
            (taken if drop(entry[1]) else kept).append(entry)
        if taken:
            self._heap = kept
            heapq.heapify(self._heap)
        return [job for _, job in taken]

    def clear(self) -> list[Job]:
        jobs, self._heap = [job for _, job in self._heap], []
        return jobs


def settle(future: Future, *, result: Any = None, error: BaseException | None = None) -> bool:
    """Resolve ``future`` unless already done (cancelled); True if this call resolved it."""
    if future.done():
        return False
    if not future.running() and not future.set_running_or_notify_cancel():
        return False
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
    return True


def timeout_message(job: Job, now: float) -> str:
    where = "in the queue" if job.dispatched is None else "while being transcribed"
    return f"request {job.id} timed out after {now - job.submitted:.1f} s ({where})"


__all__ = ["PRIORITY_DEFAULT", "PRIORITY_REALTIME", "Job", "RequestQueue", "settle", "timeout_message"]
