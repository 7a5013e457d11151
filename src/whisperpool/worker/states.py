"""A worker's lifecycle: one enum and the table of the moves it may make.

::

    cold -> warming -> warm <-> processing -> completed -> warm ...
                        |          |
                        |          +--> draining (serves its last request, then leaves)
                        v          v
                     stopping -> terminated        (any live state) --> failed

``draining`` is a worker whose planned replacement is warm while it still holds a
request; ``stopping`` one that was asked to exit (scaled down, recycled, or the pool is
closing) and has not yet. ``failed`` and ``terminated`` are final: a replacement is a new
worker. :meth:`whisperpool.worker.Worker.set_state` is the one place a state changes; it
checks the move against :data:`TRANSITIONS`.
"""

from __future__ import annotations

import enum


class WorkerState(str, enum.Enum):
    COLD = "cold"
    WARMING = "warming"
    WARM = "warm"
    PROCESSING = "processing"
    COMPLETED = "completed"
    DRAINING = "draining"
    STOPPING = "stopping"
    FAILED = "failed"
    TERMINATED = "terminated"

    def __str__(self) -> str:
        return self.value


S = WorkerState
TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    S.COLD: frozenset({S.WARMING, S.TERMINATED, S.FAILED}),
    S.WARMING: frozenset({S.WARM, S.STOPPING, S.FAILED}),
    S.WARM: frozenset({S.PROCESSING, S.STOPPING, S.FAILED}),
    S.PROCESSING: frozenset({S.COMPLETED, S.DRAINING, S.STOPPING, S.FAILED}),
    S.COMPLETED: frozenset({S.WARM, S.STOPPING, S.FAILED}),
    S.DRAINING: frozenset({S.STOPPING, S.FAILED}),
    S.STOPPING: frozenset({S.TERMINATED, S.FAILED}),
    S.FAILED: frozenset(),
    S.TERMINATED: frozenset(),
}
FINAL_STATES = frozenset({S.FAILED, S.TERMINATED})
STARTING_STATES = frozenset({S.COLD, S.WARMING})
HOT_STATES = frozenset({S.WARM, S.PROCESSING, S.COMPLETED, S.DRAINING})  # the model is loaded and warm
BUSY_STATES = frozenset({S.PROCESSING, S.COMPLETED, S.DRAINING})  # holding (or just finished) a request
LEAVING_STATES = frozenset({S.DRAINING, S.STOPPING})  # on its way out: takes no new request


def mermaid() -> str:
    """The lifecycle as a Mermaid state diagram, one line per move (the docs show it)."""
    lines = ["stateDiagram-v2", "    [*] --> cold"]
    for old, news in TRANSITIONS.items():
        lines += [f"    {old} --> {new}" for new in sorted(news, key=list(WorkerState).index)]
    lines += [f"    {s} --> [*]" for s in sorted(FINAL_STATES, key=list(WorkerState).index)]
    return "\n".join(lines)


__all__ = [
    "BUSY_STATES",
    "FINAL_STATES",
    "HOT_STATES",
    "LEAVING_STATES",
    "STARTING_STATES",
    "TRANSITIONS",
    "WorkerState",
    "mermaid",
]
