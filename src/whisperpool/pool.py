"""The pool: long-lived worker processes that keep a Whisper model loaded and warm.

Data flow::

    submit() --> queue (priority, FIFO) --+                 +--> Worker 0 process
                                          |  manager thread |      (pipe 0)
    Future <-- result / error ------------+-- wait() on ---+--> Worker 1 process
                                             pipes,             (pipe 1)
                                             sentinels,
                                             wake-up pipe

Callers submit from any thread and get a ``concurrent.futures.Future``. One manager
thread owns every worker and the queue: it blocks in
``multiprocessing.connection.wait()`` on every worker's pipe and process sentinel and a
wake-up pipe, with a timeout that is the nearest deadline (warm-up, request, kill), so
nothing sleeps and polls. All state changes happen on that thread, under ``_lock``,
which :meth:`ProcessPool.get_status` also takes.

The pool is ready when one worker is warm and fails
(:class:`~whisperpool.errors.PoolFailed`) only when every worker fails its first warm-up;
then nothing is restarted, since a configuration that no worker can boot with will not
get better by retrying.

Supervision, all on the manager thread:

* a worker that dies (pipe EOF or sentinel) is replaced at once; the request it was
  serving is retried on another worker, and refused as poison once it has crashed
  ``max_crashes_per_request`` workers;
* a request past its timeout fails with ``RequestTimeout`` and its worker is stopped
  (SIGTERM, then SIGKILL) and replaced; an idle worker that does not answer a health
  ping in time is replaced too;
* a worker that fails warm-up is restarted with exponential backoff, and its slot is
  given up (state ``failed``, with the reason) after ``max_restarts`` failures in a row;
* planned recycling (``max_requests_per_worker``, ``max_worker_rss_mb``) warms the
  replacement first and retires the old worker only then, so capacity never dips.

Adaptive, also on the manager thread:

* with ``max_workers`` above ``min_workers``, :class:`~whisperpool.scaling.Autoscaler`
  decides at each turn whether to start workers (requests waited, or the predicted load
  needs them; within the memory budget) or retire one idle too long; each decision is
  logged and emitted as ``pool_scaled`` with its reason. A new worker takes requests
  only once warm, like any other, but warms the short window only (the path most
  requests take; it is wanted now), and how long that took is the horizon the
  autoscaler predicts over;
* an idle worker gets a dummy inference (one second of silence) after
  ``rewarm_after_idle_s`` without a request, and every ``health_check_interval_s``; it
  is never started while a request waits, its time shows per worker in the status, and
  a worker that fails it is replaced;
* warm-up timings and worker memory go to ``state_file`` (:mod:`whisperpool.state`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import multiprocessing
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

import numpy as np
from pyee import EventEmitter

from . import events as ev
from . import protocol as p
from .backends import BackendSpec
from .config import DecodeOptions, PoolConfig
from .errors import (
    ConfigError,
    PoolClosed,
    PoolFailed,
    PoolNotReady,
    QueueFull,
    RequestTimeout,
    WhisperPoolError,
    WorkerCrashed,
)
from .models import ResolvedModel, resolve_model
from .results import Segment, Timings, TranscriptionResult
from .scaling import Autoscaler, Decision, Load
from .state import WarmStartState
from .worker import Worker, WorkerState

log = logging.getLogger(__name__)

PRIORITY_REALTIME = 0
PRIORITY_DEFAULT = 10
BACKGROUND_SECONDS = 1.0  # the silence a re-warm or health check transcribes
_STARTING = (WorkerState.COLD, WorkerState.WARMING)


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

    def sort_key(self) -> tuple[int, int]:
        return (self.priority, self.id)


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    id: int
    slot: int
    pid: int | None
    state: WorkerState
    load_s: float | None
    warm_up_s: float | None
    requests_served: int
    error: str | None
    rss_mb: float | None = None
    ping_rtt_ms: float | None = None
    recycling: bool = False
    check_ms: float | None = None  # the last background inference (re-warm or health check)
    check_age_s: float | None = None
    checks: int = 0
    warm_windows: tuple[str, ...] = ()  # the encoder windows it has run: ("short", "full") when fully warm


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """A snapshot of the pool. Worker counts partition ``total_workers`` by state."""

    total_workers: int
    cold_workers: int
    warming_workers: int
    warm_workers: int
    busy_workers: int
    failed_workers: int
    warm_up_progress: float
    ready: bool
    queue_depth: int
    requests_completed: int
    requests_failed: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    worker_restarts: int = 0
    worker_crashes: int = 0
    workers_recycled: int = 0
    requests_retried: int = 0
    short_window_requests: int = 0
    window_fallbacks: dict[str, int] = field(default_factory=dict)
    min_workers: int = 0
    max_workers: int = 0
    scale_ups: int = 0
    scale_downs: int = 0
    arrival_rate: float = 0.0  # requests per second, moving average
    background_inferences: int = 0
    workers: tuple[WorkerStatus, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "workers"}
        data["workers"] = [
            {k: (str(v) if k == "state" else v) for k, v in ((f, getattr(w, f)) for f in w.__dataclass_fields__)}
            for w in self.workers
        ]
        return data


@dataclass(frozen=True, slots=True)
class WarmUpSummary:
    succeeded: int
    failed: int
    total_s: float
    errors: dict[int, str]


class ProcessPool:
    """A pool of warm Whisper worker processes. See the module docstring."""

    def __init__(self, config: PoolConfig | None = None, **overrides: Any) -> None:
        config = config or PoolConfig()
        self.config = config.replace(**overrides) if overrides else config
        self.emitter = EventEmitter()
        self._lock = threading.RLock()
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._context = multiprocessing.get_context(self.config.start_method)
        self._workers: list[Worker] = []  # the current workers, shown in the status
        self._retired: list[Worker] = []  # replaced workers whose processes are still exiting
        self._initial: list[Worker] = []  # the first generation: decides warm-up's outcome
        self._restart_at: dict[int, tuple[float, Worker]] = {}  # slot -> (when, the failed worker)
        self._slot_failures: dict[int, int] = {}  # failed warm-ups in a row, per slot
        self._model_source = ""
        self._rng = random.Random()
        self._queue: list[tuple[tuple[int, int], Job]] = []
        self._ids = itertools.count()
        self._job_ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._closing = False
        self._drain = False
        self._close_deadline: float | None = None
        self._started_at: float | None = None
        self._ready_future: Future[None] = Future()
        self._warmed_future: Future[WarmUpSummary] = Future()
        self._ready_sent = False
        self._completed = 0
        self._failed = 0
        self._restarts = 0
        self._crashes = 0
        self._recycled = 0
        self._retried = 0
        self._scaler = Autoscaler(self.config)
        self._state = WarmStartState(self.config.state_file)
        self._scale_ups = 0
        self._scale_downs = 0
        self._last_refusal = ""
        self._background = 0
        self._scale_up_s: float | None = None  # the last scale-up's warm-up
        self._short_windows = 0  # requests answered by the short-audio window
        self._window_fallbacks: dict[str, int] = {}  # short windows the guard rejected, by reason
        self._latencies: deque[float] = deque(maxlen=2048)

    # -- events ------------------------------------------------------------------------
    def on(self, event: str, callback: Callable[..., Any] | None = None) -> Any:
        """Subscribe to a pool event (see :mod:`whisperpool.events`)."""
        if event not in ev.POOL_EVENTS:
            raise ConfigError(f"unknown pool event {event!r}; known: {', '.join(ev.POOL_EVENTS)}")
        return self.emitter.on(event, callback) if callback else self.emitter.on(event)

    def _emit(self, event: str, payload: Any) -> None:
        ev.safe_emit(self.emitter, event, payload)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Create every worker cold and start warming them all in parallel. Returns at once.

        Raises :class:`~whisperpool.errors.ModelError` if the model cannot be resolved.
        """
        if self.config.backend == "fake":  # no model files to find
            resolved = ResolvedModel(self.config.model, False, "fake backend")
        else:  # outside the lock: the first run joins the packaged model (seconds)
            resolved = resolve_model(self.config.model, self.config.model_cache_dir)
        with self._lock:
            if self._thread is not None:
                return
            if self._closing:
                raise PoolClosed("the pool is closed")
            self._model_source = resolved.source
            record = self._state.lookup(self._state_key())
            if record is not None:
                self._scaler.worker_mb_hint = record.get("rss_mb")
                self._scaler.warm_up_hint_s = record.get("warm_up_s")
            for slot in range(self.config.initial_size):
                self._workers.append(self._new_worker(slot))
            self._initial = list(self._workers)
            self._started_at = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="whisperpool-manager", daemon=True)
        self._emit(ev.INITIALIZED, ev.Initialized(len(self._workers), self.config.model))
        self._thread.start()

    def _new_worker(self, slot: int, *, quick: bool = False) -> Worker:
        """A cold worker for ``slot``. ``quick``: a scale-up, wanted now - under
        ``window="auto"`` its warm-up runs only the short window, the path most requests
        take (the full window's first request then costs about 8% more, once)."""
        cfg = self.config
        spec = BackendSpec(
            name=cfg.backend,
            model=self._model_source,
            device=cfg.device,
            compute_type=cfg.compute_type,
            cpu_threads=cfg.cpu_threads,
            slot=slot,
            fake=cfg.fake,
        )
        worker = Worker(
            next(self._ids),
            spec,
            context=self._context,
            warmup_options=cfg.decode.replace(window="short") if quick and cfg.decode.window == "auto" else cfg.decode,
            warmup_timeout_s=self._state.warm_up_deadline(self._state_key(), cfg.warmup_timeout_s),
            on_state_change=self._on_state_change,
        )
        worker.quick_start = quick
        if cfg.max_requests_per_worker is not None:
            worker.max_requests = cfg.max_requests_per_worker + self._rng.randint(0, cfg.max_requests_jitter)
        return worker

    def warm_up_all_workers(self, timeout: float | None = None) -> WarmUpSummary:
        """Start (if needed) and block until every worker is warm or failed.

        Raises :class:`~whisperpool.errors.PoolFailed` if every worker failed.
        """
        self.start()
        try:
            return self._warmed_future.result(timeout)
        except FutureTimeout:
            raise PoolNotReady(f"the pool did not finish warming up within {timeout} s") from None

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until at least one worker is warm (raises ``PoolFailed`` if all failed)."""
        try:
            self._ready_future.result(timeout)
        except FutureTimeout:
            raise PoolNotReady(f"no worker became warm within {timeout} s") from None

    @property
    def ready_future(self) -> Future[None]:
        """Resolves when the first worker is warm; fails with ``PoolFailed`` if none can be."""
        return self._ready_future

    @property
    def warmed_future(self) -> Future[WarmUpSummary]:
        """Resolves when every worker has finished warming up (see ``warm_up_all_workers``)."""
        return self._warmed_future

    def close(self, *, drain: bool = False, timeout: float | None = None) -> None:
        """Stop every worker process and wait for them to exit.

        Queued requests fail with ``PoolClosed`` unless ``drain`` is true, in which case
        queued and running requests are served first. Running requests get
        ``timeout`` seconds (default: ``stop_timeout_s``) to finish before their workers
        are stopped.
        """
        grace = self.config.stop_timeout_s if timeout is None else timeout
        with self._lock:
            if self._thread is None:
                self._closing = True
                self._fail_queue(PoolClosed("the pool was closed"))
                for w in self._workers:
                    w.set_state(WorkerState.TERMINATED)
                return
            if not self._closing:
                self._closing = True
                self._drain = drain
                self._close_deadline = time.monotonic() + grace
            thread = self._thread
        self._wake()
        if thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> ProcessPool:
        self.warm_up_all_workers()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------
    def submit(
        self,
        audio: np.ndarray,
        options: DecodeOptions | None = None,
        *,
        priority: int = PRIORITY_DEFAULT,
        timeout: float | None = None,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> Future[TranscriptionResult]:
        """Queue 16 kHz mono float32 ``audio``; the future gets the result or the error.

        ``timeout`` (default ``config.request_timeout_s``) covers queue wait and
        inference. ``on_segment`` is called (on the manager thread) with each segment as
        the worker decodes it. A lower ``priority`` is served first; ties are FIFO.
        """
        if not isinstance(audio, np.ndarray) or audio.dtype != np.float32 or audio.ndim != 1:
            raise TypeError("audio must be a 1-D float32 numpy array (use whisperpool.audio.load_audio)")
        timeout = self.config.request_timeout_s if timeout is None else timeout
        now = time.monotonic()
        future: Future[TranscriptionResult] = Future()
        with self._lock:
            if self._closing:
                raise PoolClosed("the pool is closed")
            if self._thread is None:
                raise PoolNotReady("the pool is not started; call start() or warm_up_all_workers()")
            failure = self._ready_future.exception() if self._ready_future.done() else None
            if failure is not None:
                raise PoolFailed(str(failure))
            limit = self.config.max_queue
            if limit is not None and len(self._queue) >= limit and not self._has_idle_worker():
                raise QueueFull(f"the request queue is full ({limit} waiting)")
            job = Job(
                id=next(self._job_ids),
                audio=audio,
                options=options or self.config.decode,
                future=future,
                priority=priority,
                submitted=now,
                deadline=now + timeout if timeout else None,
                on_segment=on_segment,
            )
            heapq.heappush(self._queue, (job.sort_key(), job))
            self._scaler.arrived(now)
        future.add_done_callback(self._on_future_done)
        self._wake()
        return future

    def transcribe(self, audio: np.ndarray, options: DecodeOptions | None = None, **kwargs: Any) -> TranscriptionResult:
        """Submit and wait for the result (blocking)."""
        return self.submit(audio, options, **kwargs).result()

    def _on_future_done(self, future: Future) -> None:
        if future.cancelled():
            self._wake()  # let the manager drop it from the queue now

    # -- status --------------------------------------------------------------------------
    def get_status(self) -> PoolStatus:
        now = time.monotonic()
        with self._lock:
            workers = list(self._workers)
            counts = {state: 0 for state in WorkerState}
            for w in workers:
                counts[w.state] += 1
            progress = 0.0
            for w in workers:
                if w.state is WorkerState.COLD:
                    continue
                if w.state is WorkerState.WARMING:
                    progress += 0.5 if w.load_s is not None else 0.1
                else:
                    progress += 1.0
            lat = np.array(self._latencies) if self._latencies else None
            return PoolStatus(
                total_workers=len(workers) - counts[WorkerState.TERMINATED],
                cold_workers=counts[WorkerState.COLD],
                warming_workers=counts[WorkerState.WARMING],
                warm_workers=counts[WorkerState.WARM],
                busy_workers=counts[WorkerState.PROCESSING] + counts[WorkerState.COMPLETED],
                failed_workers=counts[WorkerState.FAILED],
                warm_up_progress=round(100.0 * progress / len(workers), 1) if workers else 0.0,
                ready=any(w.is_warm() for w in workers),
                queue_depth=sum(1 for _, j in self._queue if not j.future.done()),
                requests_completed=self._completed,
                requests_failed=self._failed,
                latency_p50_s=float(np.percentile(lat, 50)) if lat is not None else None,
                latency_p95_s=float(np.percentile(lat, 95)) if lat is not None else None,
                worker_restarts=self._restarts,
                worker_crashes=self._crashes,
                workers_recycled=self._recycled,
                requests_retried=self._retried,
                short_window_requests=self._short_windows,
                window_fallbacks=dict(self._window_fallbacks),
                min_workers=self.config.min_size,
                max_workers=self.config.max_size,
                scale_ups=self._scale_ups,
                scale_downs=self._scale_downs,
                arrival_rate=round(self._scaler.arrival_rate(now), 3),
                background_inferences=self._background,
                workers=tuple(
                    WorkerStatus(
                        w.id,
                        w.slot,
                        w.pid,
                        w.state,
                        w.load_s,
                        w.warm_up_s,
                        w.requests_served,
                        w.error,
                        round(w.rss_bytes / 2**20, 1) if w.rss_bytes else None,
                        round(w.ping_rtt_s * 1000, 2) if w.ping_rtt_s is not None else None,
                        w.recycle_reason is not None,
                        round(w.check_s * 1000, 1) if w.check_s is not None else None,
                        round(now - w.last_check_at, 1) if w.checks else None,
                        w.checks,
                        w.warm_windows,
                    )
                    for w in workers
                ),
            )

    @property
    def workers(self) -> list[Worker]:
        with self._lock:
            return list(self._workers)

    # -- manager thread ------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"")
        except OSError:  # closed at the very end of shutdown
            pass

    def _run(self) -> None:
        try:
            with self._lock:
                for w in self._workers:
                    self._start_worker(w)
            while True:
                with self._lock:
                    if self._closing and self._shutdown_step():
                        break
                    self._dispatch()
                    waitables = self._waitables()
                    timeout = self._next_timeout()
                ready = wait(list(waitables), timeout)
                with self._lock:
                    self._handle(ready, waitables)
                    self._check_deadlines(time.monotonic())
        except BaseException:
            log.exception("the pool's manager thread crashed")
            with self._lock:
                self._abort(WhisperPoolError("the pool's manager thread crashed; see the log"))
            raise
        finally:
            self._wake_r.close()
            self._wake_w.close()

    def _start_worker(self, w: Worker) -> None:
        try:
            w.warm_up()
        except Exception as exc:
            log.exception("could not start worker %d", w.id)
            self._worker_failed(w, f"could not start the worker process: {exc}")

    def _waitables(self) -> dict[Any, tuple[str, Worker | None]]:
        waitables: dict[Any, tuple[str, Worker | None]] = {self._wake_r: ("wake", None)}
        for w in self._workers + self._retired:
            if w.alive:
                if w.conn is not None and not w.conn.closed:
                    waitables[w.conn] = ("conn", w)
                waitables[w.process.sentinel] = ("exit", w)  # type: ignore[union-attr]
        return waitables

    def _next_timeout(self) -> float | None:
        deadlines = [at for at, _ in self._restart_at.values()]
        for w in self._workers + self._retired:
            if w.state is WorkerState.WARMING and w.warmup_deadline is not None:
                deadlines.append(w.warmup_deadline)
            if w.kill_at is not None:
                deadlines.append(w.kill_at)
            if w.ping_sent_at is not None:
                deadlines.append(w.ping_sent_at + self.config.ping_timeout_s)
            elif w.next_ping_at is not None and w.is_idle():
                deadlines.append(w.next_ping_at)
        deadlines.extend(j.deadline for _, j in self._queue if j.deadline is not None)
        deadlines.extend(w.job.deadline for w in self._workers if w.job and w.job.deadline is not None)
        if self._closing and self._close_deadline is not None:
            deadlines.append(self._close_deadline)
        if not self._closing:
            if not self._queue:
                deadlines.extend(due[0] for w in self._workers if w.is_idle() and (due := self._background_due(w)))
            if self._scaler.enabled:
                # Only deadlines still ahead: one that passed without a change (at max,
                # at min) must not make the loop spin.
                now = time.monotonic()
                patience = self._scaler.patience()
                ahead = [j.submitted + patience for _, j in self._queue]
                ahead += [w.last_request_at + self.config.scale_down_idle_s for w in self._workers if w.is_idle()]
                deadlines.extend(at for at in ahead if at > now)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _handle(self, ready: list[Any], waitables: dict[Any, tuple[str, Worker | None]]) -> None:
        exited: list[Worker] = []
        for obj in ready:
            kind, w = waitables[obj]
            if kind == "wake":
                while self._wake_r.poll():
                    self._wake_r.recv_bytes()
            elif kind == "conn":
                self._drain_pipe(w)
            else:
                exited.append(w)
        for w in exited:  # after the pipes, so a last message before exit is not lost
            if w.conn is not None and not w.conn.closed:
                self._drain_pipe(w)
            self._on_exit(w)

    def _drain_pipe(self, w: Worker) -> None:
        conn = w.conn
        assert conn is not None
        try:
            while conn.poll():
                self._on_message(w, conn.recv())
        except (EOFError, OSError):
            conn.close()  # the sentinel tells us the rest

    def _on_message(self, w: Worker, msg: Any) -> None:
        now = time.monotonic()
        if isinstance(msg, p.Loaded):
            w.load_s = msg.load_s
        elif isinstance(msg, p.Ready):
            w.warm_up_s = now - (w.warmup_started or now)
            w.idle_since = w.last_request_at = w.last_check_at = now
            w.warm_windows = msg.windows
            if w.quick_start:  # how long a scale-up takes: the horizon of predictive warm-up
                self._scale_up_s = w.warm_up_s
            else:  # the warm-start record is of full warm-ups: it sets their deadline
                self._state.record(self._state_key(), w.warm_up_s, msg.rss_bytes / 2**20)
            w.rss_bytes = msg.rss_bytes
            w.pong(now, self.config.ping_interval_s)
            w.set_state(WorkerState.WARM)
            log.info("worker %d warm in %.2f s (pid %s)", w.id, w.warm_up_s, w.pid)
            self._slot_failures.pop(w.slot, None)
            if w.replaces is not None:  # a planned recycle: the old worker may go now
                w.replaces.retire_when_idle = True
                w.replaces = None
            self._after_warm_up_change()
        elif isinstance(msg, p.WarmUpFailed):
            self._worker_failed(w, f"warm-up failed: {msg.error.type}: {msg.error.message}")
        elif isinstance(msg, p.SegmentDecoded):
            job = w.job
            if job is not None and job.id == msg.request_id and job.on_segment is not None:
                try:
                    job.on_segment(msg.segment)
                except Exception:
                    log.exception("an on_segment callback raised")
        elif isinstance(msg, (p.Done, p.Failed)):
            if w.job is None or w.job.id != msg.request_id:
                log.warning("worker %d answered request %s it was not serving", w.id, msg.request_id)
                return
            job = w.finish_job()
            w.pong(now, self.config.ping_interval_s)  # an answer is as good as a pong
            if job.background is not None:
                self._background_done(w, job, msg, now)
                return
            w.last_request_at = now
            if isinstance(msg, p.Done):
                self._scaler.served(msg.inference_s)
                w.rss_bytes = msg.rss_bytes
                timings = Timings(
                    queue_wait_s=(job.dispatched or now) - job.submitted,
                    inference_s=msg.inference_s,
                    total_s=now - job.submitted,
                )
                result = _with(msg.result, worker_id=w.id, timings=timings)
                if _settle(job.future, result=result):
                    self._completed += 1
                    self._latencies.append(timings.total_s)
                self._short_windows += result.window == "short"
                if result.window not in w.warm_windows:
                    w.warm_windows += (result.window,)
                if result.fallback is not None:
                    self._window_fallbacks[result.fallback] = self._window_fallbacks.get(result.fallback, 0) + 1
            else:
                if _settle(job.future, error=msg.error.to_exception()):
                    self._failed += 1
            w.idle_since = now
            w.set_state(WorkerState.WARM)
            self._maybe_recycle(w)
        elif isinstance(msg, p.Pong):
            w.pong(now, self.config.ping_interval_s)
        else:
            log.error("worker %d sent an unknown message %r", w.id, type(msg).__name__)

    def _on_exit(self, w: Worker) -> None:
        code = w.reap()
        if w in self._retired:
            self._retired.remove(w)
        if w.state in (WorkerState.FAILED, WorkerState.TERMINATED):
            return
        if w.stopping and w.job is None:
            w.set_state(WorkerState.TERMINATED)
            return
        reason = f"worker process exited unexpectedly (exit code {code})"
        log.error("worker %d (pid %s): %s", w.id, w.pid, reason)
        self._worker_failed(w, reason)

    def _worker_failed(self, w: Worker, reason: str) -> None:
        """Mark ``w`` failed, stop its process, retry or fail its request, plan its replacement."""
        if w.state in (WorkerState.FAILED, WorkerState.TERMINATED):
            return
        was_warming = w.state in _STARTING
        w.error = reason
        job, w.job = w.job, None
        w.set_state(WorkerState.FAILED)
        now = time.monotonic()
        if w.alive:
            w.terminate(now, self.config.stop_timeout_s)
        self._emit(ev.WORKER_FAILED, ev.WorkerFailed(w.id, w.slot, reason, was_warming))
        if job is not None:
            self._requeue_or_fail(job, w, reason)
        if was_warming:
            self._slot_failures[w.slot] = self._slot_failures.get(w.slot, 0) + 1
            self._emit(ev.WARM_UP_FAILED, ev.WarmUpFailedEvent(w.id, reason))
        elif w.recycle_reason is None:
            self._crashes += 1
        self._after_warm_up_change()
        self._plan_replacement(w, now)

    def _requeue_or_fail(self, job: Job, w: Worker, reason: str) -> None:
        """The worker serving ``job`` died: try it elsewhere, unless it is poison."""
        job.crashes += 1
        if job.future.done() or job.background is not None:
            return
        if job.crashes >= self.config.max_crashes_per_request:
            error = WorkerCrashed(
                f"request {job.id} was refused as poison: it crashed {job.crashes} workers (last: {reason})"
            )
        elif self._closing:
            error = WorkerCrashed(f"worker {w.id} failed while serving the request: {reason}")
        else:
            log.warning("worker %d died serving request %d; retrying it on another worker", w.id, job.id)
            self._retried += 1
            job.dispatched = None
            heapq.heappush(self._queue, (job.sort_key(), job))
            return
        if _settle(job.future, error=error):
            self._failed += 1

    def _plan_replacement(self, w: Worker, now: float) -> None:
        """Schedule a new worker for ``w``'s slot: at once after a crash, with backoff after a failed warm-up."""
        if self._closing or w.retire_when_idle or w in self._retired:
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

    def _restart_due(self, now: float) -> None:
        for slot, (at, old) in list(self._restart_at.items()):
            if now < at:
                continue
            del self._restart_at[slot]
            if self._ready_future.done() and self._ready_future.exception() is not None:
                continue
            new = self._new_worker(slot)
            new.replaces, old.replaces = old.replaces, None  # a recycle in progress carries over
            self._swap(old, new)
            self._restarts += 1
            log.info("worker slot %d: starting worker %d to replace worker %d", slot, new.id, old.id)
            self._emit(ev.WORKER_RESTARTED, ev.WorkerRestarted(new.id, slot, old.id, old.error or ""))
            self._start_worker(new)

    def _swap(self, old: Worker, new: Worker) -> None:
        """``new`` takes ``old``'s place in the status; ``old`` is kept until its process is reaped."""
        self._workers[self._workers.index(old)] = new
        if old.alive:
            self._retired.append(old)

    def _maybe_recycle(self, w: Worker) -> None:
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

    def _retire_relieved(self, now: float) -> None:
        """Stop recycled workers whose replacement is warm, once they hold no request."""
        for w in [w for w in self._workers if w.retire_when_idle and w.job is None and not w.stopping]:
            w.ask_to_stop(now, self.config.stop_timeout_s)
            self._workers.remove(w)
            self._retired.append(w)
            self._recycled += 1
            successor = next((x for x in self._workers if x.slot == w.slot), None)
            self._emit(
                ev.WORKER_RECYCLED,
                ev.WorkerRecycled(w.id, w.slot, successor.id if successor else -1, w.recycle_reason or ""),
            )

    # -- adaptive sizing -----------------------------------------------------------------
    def _state_key(self) -> str:
        cfg = self.config
        return f"{self._model_source}|{cfg.device}|{cfg.compute_type}|{cfg.cpu_threads} threads"

    def _capacity(self) -> list[Worker]:
        """Workers that are or will be serving: not failed, leaving, or a recycle's successor."""
        return [
            w
            for w in self._workers
            if w.state not in (WorkerState.FAILED, WorkerState.TERMINATED)
            and not w.stopping
            and not w.retire_when_idle
            and w.replaces is None
        ]

    def _autoscale(self, now: float) -> None:
        if self._closing or not self._scaler.enabled or not self._ready_sent:
            return
        live = self._capacity()
        queued = [j for _, j in self._queue if not j.future.done()]
        load = Load(
            now=now,
            workers=len(live) + len(self._restart_at),
            warming=sum(1 for w in live if w.state in _STARTING) + len(self._restart_at),
            queued=len(queued),
            oldest_wait_s=max((now - j.submitted for j in queued), default=0.0),
            idle_since={w.id: w.last_request_at for w in live if w.is_idle() and w.recycle_reason is None},
            rss_mb=tuple(w.rss_bytes / 2**20 for w in live if w.rss_bytes),
            warm_up_s=self._scale_up_s
            or (float(np.median(warmed)) if (warmed := [w.warm_up_s for w in live if w.warm_up_s]) else None),
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

    def _scale_up(self, decision: Decision, before: int) -> None:
        new = []
        for _ in range(decision.start):
            used = {w.slot for w in self._workers} | set(self._restart_at)
            slot = next(i for i in itertools.count() if i not in used)
            w = self._new_worker(slot, quick=True)
            self._workers.append(w)
            new.append(w)
        self._scale_ups += len(new)
        log.info("scaling up %d -> %d worker(s): %s", before, before + len(new), decision.reason)
        self._emit(
            ev.POOL_SCALED, ev.PoolScaled("up", before, before + len(new), decision.reason, tuple(w.id for w in new))
        )
        for w in new:
            self._start_worker(w)

    def _scale_down(self, worker_id: int, reason: str, before: int, now: float) -> None:
        w = next((x for x in self._workers if x.id == worker_id and x.is_idle()), None)
        if w is None:
            return
        w.ask_to_stop(now, self.config.stop_timeout_s)
        self._workers.remove(w)
        self._retired.append(w)
        self._scale_downs += 1
        log.info("scaling down %d -> %d worker(s): worker %d %s", before, before - 1, w.id, reason)
        self._emit(ev.POOL_SCALED, ev.PoolScaled("down", before, before - 1, f"worker {w.id} {reason}", (w.id,)))

    # -- background inference: re-warm and health check ---------------------------------
    def _background_due(self, w: Worker) -> tuple[float, str] | None:
        """When ``w`` is next due a background inference, and which kind; None if never."""
        cfg = self.config
        due = []
        if cfg.rewarm_after_idle_s is not None:
            due.append((max(w.last_request_at, w.last_check_at) + cfg.rewarm_after_idle_s, "re-warm"))
        if cfg.health_check_interval_s is not None:
            due.append((w.last_check_at + cfg.health_check_interval_s, "health check"))
        return min(due) if due else None

    def _start_background(self, now: float) -> None:
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
                audio=np.zeros(int(16_000 * BACKGROUND_SECONDS), dtype=np.float32),
                options=cfg.decode,
                future=future,
                priority=PRIORITY_DEFAULT,
                submitted=now,
                deadline=now + cfg.warmup_timeout_s,
                background=due[1],
            )
            job.dispatched = now
            try:
                w.assign(job)
            except OSError as exc:
                self._worker_failed(w, f"cannot send to the worker: {exc}")

    def _background_done(self, w: Worker, job: Job, msg: Any, now: float) -> None:
        w.idle_since = now
        w.set_state(WorkerState.WARM)
        if isinstance(msg, p.Failed):
            self._worker_failed(w, f"{job.background} failed: {msg.error.type}: {msg.error.message}")
            return
        w.last_check_at = now
        w.check_s = msg.inference_s
        w.checks += 1
        w.rss_bytes = msg.rss_bytes
        self._background += 1
        log.debug("worker %d: %s took %.3f s", w.id, job.background, msg.inference_s)
        self._maybe_recycle(w)

    def _after_warm_up_change(self) -> None:
        """Resolve the readiness futures and emit the warm-up events, each once."""
        workers = self._workers
        now = time.monotonic()
        elapsed = now - (self._started_at or now)
        warm = sum(1 for w in workers if w.is_warm())
        if warm and not self._ready_sent:
            self._ready_sent = True
            self._ready_future.set_result(None)
            self._emit(ev.READY, ev.Ready(warm, elapsed))
        first = self._initial
        settled = [w for w in first if w.warm_up_s is not None or w.state is WorkerState.FAILED]
        if not self._warmed_future.done() and len(settled) == len(first):
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

    def _on_state_change(self, w: Worker, old: WorkerState, new: WorkerState) -> None:
        self._emit(ev.WORKER_STATE_CHANGED, ev.WorkerStateChanged(w.id, old, new, w.error))

    def _has_idle_worker(self) -> bool:
        return any(w.is_idle() for w in self._workers)

    def _dispatch(self) -> None:
        while self._queue:
            idle = [w for w in self._workers if w.is_idle()]
            if not idle:
                return
            _, job = heapq.heappop(self._queue)
            if not job.future.running() and not job.future.set_running_or_notify_cancel():
                continue  # cancelled while it waited (a retried request is already running)
            if self._scaler.enabled:  # the most recently busy: keeps extra workers idle, so they can go
                w = max(idle, key=lambda x: x.idle_since)
            else:  # the longest idle: spreads the load
                w = min(idle, key=lambda x: x.idle_since)
            job.dispatched = time.monotonic()
            job.attempts += 1
            try:
                w.assign(job)
            except OSError as exc:
                self._worker_failed(w, f"cannot send to the worker: {exc}")
        # Cancelled jobs leave the queue as soon as we see them, not only at dispatch.
        if any(j.future.cancelled() for _, j in self._queue):
            self._queue = [(k, j) for k, j in self._queue if not j.future.cancelled()]
            heapq.heapify(self._queue)

    def _check_deadlines(self, now: float) -> None:
        cfg = self.config
        for w in list(self._workers):
            if w.state is WorkerState.WARMING and w.warmup_deadline is not None and now >= w.warmup_deadline:
                limit = w.warmup_deadline - (w.warmup_started or w.warmup_deadline)
                self._worker_failed(w, f"warm-up did not finish within {limit:.3g} s")
            elif w.job is not None and w.job.deadline is not None and now >= w.job.deadline:
                job = w.job
                if _settle(job.future, error=RequestTimeout(_timeout_message(job, now))) and job.background is None:
                    self._failed += 1
                w.job = None
                what = job.background or f"request {job.id}"
                self._worker_failed(w, f"{what} timed out; the worker was stopped")
            elif w.ping_sent_at is not None and now >= w.ping_sent_at + cfg.ping_timeout_s:
                self._worker_failed(w, f"did not answer a health ping within {cfg.ping_timeout_s:g} s")
            elif (
                w.is_idle()
                and w.ping_sent_at is None
                and w.next_ping_at is not None
                and now >= w.next_ping_at
                and not self._closing
            ):
                try:
                    w.ping(now)
                except OSError as exc:
                    self._worker_failed(w, f"cannot send to the worker: {exc}")
        for w in self._workers + self._retired:
            if w.kill_at is not None and now >= w.kill_at:
                w.kill()
        self._retire_relieved(now)
        self._restart_due(now)
        self._autoscale(now)
        self._start_background(now)
        expired = [j for _, j in self._queue if j.deadline is not None and now >= j.deadline]
        if expired:
            self._queue = [(k, j) for k, j in self._queue if j not in expired]
            heapq.heapify(self._queue)
            warm = any(w.is_warm() for w in self._workers)
            for job in expired:
                error: WhisperPoolError
                if warm:
                    error = RequestTimeout(_timeout_message(job, now))
                else:  # nothing could have served it: the pool is not ready, not slow
                    error = PoolNotReady(f"request {job.id}: no worker became warm within its timeout")
                if _settle(job.future, error=error):
                    self._failed += 1
        if self._queue and not any(w.is_warm() or w.state in _STARTING for w in self._workers) and not self._restart_at:
            self._fail_queue(PoolNotReady("no worker is warm, warming or about to restart"))

    def _fail_queue(self, error: Exception) -> None:
        queue, self._queue = self._queue, []
        for _, job in queue:
            if _settle(job.future, error=error):
                self._failed += 1

    def _drain_wanted(self) -> bool:
        return self._drain and self._close_deadline is not None and time.monotonic() < self._close_deadline

    def _shutdown_step(self) -> bool:
        """One round of closing; True once every worker process is gone."""
        now = time.monotonic()
        if not self._drain_wanted():
            self._fail_queue(PoolClosed("the pool was closed"))
        elif self._queue:
            return False  # draining: the queue is still being served
        past_grace = self._close_deadline is not None and now >= self._close_deadline
        for w in self._workers:
            if w.state is WorkerState.COLD:
                w.set_state(WorkerState.TERMINATED)
            elif not w.alive or w.stopping or w.state is WorkerState.FAILED:
                continue
            elif w.state is WorkerState.WARMING:
                w.stopping = True
                w.terminate(now, self.config.stop_timeout_s)
            elif w.job is None:
                w.ask_to_stop(now, self.config.stop_timeout_s)
            elif past_grace:
                job, w.job = w.job, None
                if _settle(job.future, error=PoolClosed("the pool was closed before the request finished")):
                    self._failed += 1
                w.set_state(WorkerState.TERMINATED)
                w.stopping = True
                w.terminate(now, self.config.stop_timeout_s)
        self._restart_at.clear()
        for w in self._retired:
            if w.alive and not w.stopping and w.state is not WorkerState.FAILED:
                w.ask_to_stop(now, self.config.stop_timeout_s)
        if any(w.alive for w in self._workers + self._retired):
            return False
        for w in self._workers:
            if w.state is not WorkerState.FAILED and w.state is not WorkerState.TERMINATED:
                w.set_state(WorkerState.TERMINATED)
        closed = PoolClosed("the pool was closed")
        for fut in (self._ready_future, self._warmed_future):
            if not fut.done():
                fut.set_exception(closed)
        return True

    def _abort(self, error: WhisperPoolError) -> None:
        """Last resort if the manager thread itself breaks: fail everything, kill workers."""
        self._closing = True
        self._fail_queue(error)
        for w in self._workers + self._retired:
            if w.job is not None:
                _settle(w.job.future, error=error)
            if w.alive and w.process is not None:
                w.process.kill()
                w.reap()
        for fut in (self._ready_future, self._warmed_future):
            if not fut.done():
                fut.set_exception(error)


def _settle(future: Future, *, result: Any = None, error: BaseException | None = None) -> bool:
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


def _with(result: TranscriptionResult, **changes: Any) -> TranscriptionResult:
    import dataclasses

    return dataclasses.replace(result, **changes)


def _timeout_message(job: Job, now: float) -> str:
    where = "in the queue" if job.dispatched is None else "while being transcribed"
    return f"request {job.id} timed out after {now - job.submitted:.1f} s ({where})"


__all__ = ["PRIORITY_DEFAULT", "PRIORITY_REALTIME", "Job", "PoolStatus", "ProcessPool", "WarmUpSummary", "WorkerStatus"]
