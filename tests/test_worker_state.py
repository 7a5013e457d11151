"""The worker lifecycle: one enum, one transition table, one place that changes it."""

from __future__ import annotations

import itertools

import pytest

from whisperpool import DecodeOptions, InvalidStateTransition, WorkerState
from whisperpool.testing import FakeBehavior
from whisperpool.worker import TRANSITIONS, Worker
from whisperpool.worker.protocol import BackendSpec

S = WorkerState


def make_worker(changes: list) -> Worker:
    spec = BackendSpec("fake", "none", "cpu", "int8", 1, 0, FakeBehavior())
    return Worker(
        7,
        spec,
        warmup_options=DecodeOptions(),
        warmup_timeout_s=5.0,
        on_state_change=lambda w, old, new: changes.append((w.id, old, new)),
    )


def path_to(target: WorkerState) -> list[WorkerState]:
    """A legal route from cold to ``target`` (breadth-first over the table)."""
    routes = {S.COLD: []}
    frontier = [S.COLD]
    while frontier:
        state = frontier.pop(0)
        for nxt in TRANSITIONS[state]:
            if nxt not in routes:
                routes[nxt] = routes[state] + [nxt]
                frontier.append(nxt)
    return routes[target]


def test_the_happy_cycle_is_legal_and_emits_each_change():
    changes: list = []
    w = make_worker(changes)
    cycle = [
        S.WARMING,
        S.WARM,
        S.PROCESSING,
        S.COMPLETED,
        S.WARM,
        S.PROCESSING,
        S.COMPLETED,
        S.WARM,
        S.STOPPING,
        S.TERMINATED,
    ]
    for state in cycle:
        w.set_state(state)
    assert w.state is S.TERMINATED
    assert [new for _, _, new in changes] == cycle
    assert changes[0] == (7, S.COLD, S.WARMING)


@pytest.mark.parametrize("old,new", list(itertools.product(list(S), list(S))))
def test_every_pair_is_allowed_exactly_when_the_table_says(old, new):
    changes: list = []
    w = make_worker(changes)
    for state in path_to(old):
        w.set_state(state)
    before = len(changes)
    if new in TRANSITIONS[old]:
        w.set_state(new)
        assert w.state is new and changes[-1] == (7, old, new)
    else:
        with pytest.raises(InvalidStateTransition, match=f"{old} -> {new}"):
            w.set_state(new)
        assert w.state is old and len(changes) == before


def test_final_states_have_no_way_out_and_every_state_is_reachable():
    assert TRANSITIONS[S.FAILED] == frozenset() and TRANSITIONS[S.TERMINATED] == frozenset()
    for state in S:
        assert state is S.COLD or path_to(state), state


def test_is_warm_covers_the_hot_states_only():
    w = make_worker([])
    seen = {}
    for state in [S.WARMING, S.WARM, S.PROCESSING, S.DRAINING, S.STOPPING, S.FAILED]:
        w.set_state(state)
        seen[state] = (w.is_warm(), w.is_idle(), w.is_leaving())
    assert seen == {
        S.WARMING: (False, False, False),
        S.WARM: (True, True, False),
        S.PROCESSING: (True, False, False),
        S.DRAINING: (True, False, True),  # still serving its last request, takes no new one
        S.STOPPING: (False, False, True),
        S.FAILED: (False, False, False),
    }


def test_the_docs_state_diagram_is_the_transition_table():
    import re
    from pathlib import Path

    from whisperpool.worker.states import mermaid

    page = (Path(__file__).resolve().parent.parent / "docs" / "pool.md").read_text()
    block = re.search(r"<!-- states:begin -->\n```mermaid\n(.*?)\n```\n<!-- states:end -->", page, re.S)
    assert block is not None, "docs/pool.md has no states block"
    assert block.group(1) == mermaid(), "regenerate it with whisperpool.worker.states.mermaid()"
    moves = {tuple(line.strip().split(" --> ")) for line in mermaid().splitlines()[1:] if "[*]" not in line}
    assert moves == {(str(a), str(b)) for a, news in TRANSITIONS.items() for b in news}
