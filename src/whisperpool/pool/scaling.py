"""Adaptive sizing, the pool's side: what it tells the :class:`~.autoscaler.Autoscaler`
and how it carries out a decision.

With ``max_workers`` above ``min_workers``, the manager thread asks the autoscaler at
each turn whether to start workers (requests waited, or the predicted load needs them;
within the memory budget) or retire one idle too long; each decision is logged and
emitted as ``pool_scaled`` with its reason. A new worker takes requests only once warm,
like any other, but warms the short window only (the path most requests take; it is
wanted now), and how long that took is the horizon the autoscaler predicts over.
Warm-up timings and worker memory go to ``state_file`` (:mod:`.warmstart`).
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING

import numpy as np

from .. import events as ev
from ..worker import Worker
from .autoscaler import Decision, Load

if TYPE_CHECKING:
    from .manager import ProcessPool

log = logging.getLogger(__name__)


class Scaling:
    """Mixin of :class:`~whisperpool.pool.ProcessPool`: runs on the manager thread."""

    def _state_key(self: ProcessPool) -> str:
        cfg = self.config
        return f"{self._model_source}|{cfg.device}|{cfg.compute_type}|{cfg.cpu_threads} threads"

    def _capacity(self: ProcessPool, *, express: bool = False) -> list[Worker]:
        """Workers that are or will be serving: not failed, leaving, or a recycle's
        successor. The general ones, or with ``express`` the express ones, which are apart:
        never sized, never given pieces."""
        return [
            w
            for w in self._workers
            if w.express is express and not w.is_final() and not w.is_leaving() and w.replaces is None
        ]

    def _scaling_deadlines(self: ProcessPool, now: float) -> list[float]:
        """When the autoscaler may next decide something: only deadlines still ahead, since
        one that passed without a change (at max, at min) must not make the loop spin."""
        if not self._scaler.enabled:
            return []
        patience = self._scaler.patience()
        ahead = [j.submitted + patience for j in self._queue]
        ahead += [w.last_request_at + self.config.scale_down_idle_s for w in self._capacity() if w.is_idle()]
        return [at for at in ahead if at > now]

    def _autoscale(self: ProcessPool, now: float) -> None:
        if self._closing or not self._scaler.enabled or not self._ready_sent:
            return
        live = self._capacity()
        queued = self._queue.waiting()
        warmed = [w.warm_up_s for w in live if w.warm_up_s]
        express = self._capacity(express=True)
        restarting = len(set(self._restart_at) - self._express_slots)
        load = Load(
            now=now,
            workers=len(live) + restarting,
            warming=sum(1 for w in live if w.is_starting()) + restarting,
            queued=len(queued),
            oldest_wait_s=max((now - j.submitted for j in queued), default=0.0),
            idle_since={w.id: w.last_request_at for w in live if w.is_idle() and w.recycle_reason is None},
            rss_mb=tuple(w.rss_bytes / 2**20 for w in live if w.rss_bytes),
            express=len({w.slot for w in express} | (set(self._restart_at) & self._express_slots)),
            express_rss_mb=tuple(w.rss_bytes / 2**20 for w in express if w.rss_bytes),
            warm_up_s=self._scale_up_s or (float(np.median(warmed)) if warmed else None),
        )
        decision = self._scaler.decide(load)
        if decision.refused and decision.refused != self._last_refusal:
            log.warning("not scaling up: %s", decision.refused)
            self._emit(ev.POOL_SCALED, ev.PoolScaled("refused", load.workers, load.workers, decision.refused))
        self._last_refusal = decision.refused or (self._last_refusal if not decision.start else "")
        if decision.start:
            self._scale_up(decision, load.workers)
        for worker_id in decision.retire:
            self._scale_down(worker_id, decision.reason, load.workers, now)

    def _scale_up(self: ProcessPool, decision: Decision, before: int) -> None:
        new = []
        for _ in range(decision.start):
            used = {w.slot for w in self._workers} | set(self._restart_at) | self._express_slots
            slot = next(i for i in itertools.count() if i not in used)
            w = self._new_worker(slot, quick=True)
            self._workers.append(w)
            new.append(w)
        self._counts.scale_ups += len(new)
        log.info("scaling up %d -> %d worker(s): %s", before, before + len(new), decision.reason)
        self._emit(
            ev.POOL_SCALED, ev.PoolScaled("up", before, before + len(new), decision.reason, tuple(w.id for w in new))
        )
        for w in new:
            self._start_worker(w)

    def _scale_down(self: ProcessPool, worker_id: int, reason: str, before: int, now: float) -> None:
        w = next((x for x in self._workers if x.id == worker_id and x.is_idle()), None)
        if w is None:
            return
        w.ask_to_stop(now, self.config.stop_timeout_s)
        self._workers.remove(w)
        self._retired.append(w)
        self._counts.scale_downs += 1
        log.info("scaling down %d -> %d worker(s): worker %d %s", before, before - 1, w.id, reason)
        self._emit(ev.POOL_SCALED, ev.PoolScaled("down", before, before - 1, f"worker {w.id} {reason}", (w.id,)))


__all__ = ["Scaling"]
