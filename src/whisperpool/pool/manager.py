"""The pool's public face and its manager loop (see the package docstring for the flow).

:class:`ProcessPool` is assembled from its parts: this module holds the public methods
and the loop that waits on everything; supervision, readiness and shutdown, adaptive
sizing and background checks live in the modules named after them, as mixins that
run only on the manager thread, under ``_lock``.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import wait
from typing import Any

import numpy as np
from pyee import EventEmitter

from .. import events as ev
from ..audio import SAMPLE_RATE
from ..config import DecodeOptions, PoolConfig
from ..errors import AudioTooLong, ConfigError, PoolClosed, PoolFailed, PoolNotReady, QueueFull, WhisperPoolError
from ..models import ResolvedModel, resolve_model
from ..results import Segment, TranscriptionResult
from ..worker import Worker, WorkerState
from ..worker import protocol as p
from .autoscaler import Autoscaler
from .background import Background
from .batching import Batching
from .jobs import PRIORITY_DEFAULT, Job, RequestQueue
from .lifecycle import Lifecycle
from .messages import Messages
from .pieces import LongRequest, ProgressCallback
from .scaling import Scaling
from .status import Counters, PoolStatus, WarmUpSummary, snapshot
from .supervision import Supervision
from .warmstart import WarmStartState

log = logging.getLogger(__name__)


class ProcessPool(Messages, Supervision, Lifecycle, Scaling, Background, Batching):
    """A pool of warm Whisper worker processes. See :mod:`whisperpool.pool`."""

    def __init__(self, config: PoolConfig | None = None, **overrides: Any) -> None:
        config = config or PoolConfig()
        self.config = config.replace(**overrides) if overrides else config
        self.emitter = EventEmitter()
        self._lock = threading.RLock()
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._workers: list[Worker] = []  # the current workers, shown in the status
        self._retired: list[Worker] = []  # replaced workers whose processes are still exiting
        self._initial: list[Worker] = []  # the first generation: decides warm-up's outcome
        self._restart_at: dict[int, tuple[float, Worker]] = {}  # slot -> (when, the failed worker)
        self._slot_failures: dict[int, int] = {}  # failed warm-ups in a row, per slot
        self._model_source = ""
        self._rng = random.Random()
        self._queue = RequestQueue()
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
        self._counts = Counters()
        self._scaler = Autoscaler(self.config)
        self._state = WarmStartState(self.config.state_file)
        self._last_refusal = ""
        self._scale_up_s: float | None = None  # the last scale-up's warm-up
        self._long: dict[int, LongRequest] = {}  # long recordings in flight, by id
        # express slots follow every slot adaptive sizing may use, so no scale-up takes one
        first = self.config.max_size
        self._express_slots = frozenset(range(first, first + self.config.express_size))

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
            resolved = resolve_model(self.config.model, self.config.model_cache_dir, self.config.backend)
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
            for slot in (*range(self.config.initial_size), *sorted(self._express_slots)):
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
        spec = p.BackendSpec(
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
            warmup_options=cfg.decode.replace(window="short") if quick and cfg.decode.window == "auto" else cfg.decode,
            warmup_timeout_s=self._state.warm_up_deadline(self._state_key(), cfg.warmup_timeout_s),
            on_state_change=self._on_state_change,
            quick=quick,
            express=slot in self._express_slots,
        )
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
        on_progress: ProgressCallback | None = None,
    ) -> Future[TranscriptionResult]:
        """Queue 16 kHz mono float32 ``audio``; the future gets the result or the error.

        ``timeout`` (default ``config.request_timeout_s``) covers queue wait and
        inference. ``on_segment`` is called (on the manager thread) with each segment as
        the worker decodes it, in order. A lower ``priority`` is served first; ties are
        FIFO. Audio longer than ``config.split_above_s`` is decoded in pieces spread over
        the workers (see :mod:`.pieces`); ``on_progress(done, total)`` then follows its
        pieces (called on the manager thread).
        """
        if not isinstance(audio, np.ndarray) or audio.dtype != np.float32 or audio.ndim != 1:
            raise TypeError("audio must be a 1-D float32 numpy array (use whisperpool.audio.load_audio)")
        limit_s = self.config.max_audio_s
        if limit_s is not None and audio.size > limit_s * SAMPLE_RATE:
            raise AudioTooLong(
                f"audio of {audio.size / SAMPLE_RATE:.0f} s is over the limit of {limit_s:g} s (max_audio_s)"
            )
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
            if limit is not None and len(self._queue) >= limit and not any(w.is_idle() for w in self._workers):
                raise QueueFull(f"the request queue is full ({limit} waiting)")
            options = options or self.config.decode
            deadline = now + timeout if timeout else None
            if self._splits(audio, options):
                long = LongRequest(
                    self,
                    next(self._job_ids),
                    audio,
                    options,
                    future,
                    priority=priority,
                    submitted=now,
                    deadline=deadline,
                    on_segment=on_segment,
                    on_progress=on_progress,
                )
                self._long[long.id] = long
                self._counts.long_requests += 1
                jobs = long.plan_jobs
            else:
                job = Job(
                    id=next(self._job_ids),
                    audio=audio,
                    options=options,
                    future=future,
                    priority=priority,
                    submitted=now,
                    deadline=deadline,
                    on_segment=on_segment,
                )
                jobs = [job]
            for job in jobs:
                self._queue.push(job)
            self._scaler.arrived(now)
        future.add_done_callback(self._on_future_done)
        self._wake()
        return future

    def _splits(self, audio: np.ndarray, options: DecodeOptions) -> bool:
        limit = self.config.split_above_s
        return limit is not None and options.window != "short" and audio.size > limit * SAMPLE_RATE

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
            return snapshot(
                self._workers,
                self._counts,
                now=now,
                queue=self._queue.waiting(),
                long_requests=list(self._long.values()),
                min_workers=self.config.min_size,
                max_workers=self.config.max_size,
                express_workers=len(self._capacity(express=True)),
                arrival_rate=self._scaler.arrival_rate(now),
            )

    @property
    def workers(self) -> list[Worker]:
        with self._lock:
            return list(self._workers)

    # -- the manager loop ----------------------------------------------------------------
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
                    self._forget_cancelled()
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
            if (since := w.stalled_since()) is not None:
                deadlines.append(since + self.config.send_timeout_s)
            if w.ping_sent_at is not None:
                deadlines.append(w.ping_sent_at + self.config.ping_timeout_s)
            elif w.next_ping_at is not None and w.is_idle():
                deadlines.append(w.next_ping_at)
        deadlines.extend(j.deadline for j in self._queue if j.deadline is not None)
        deadlines.extend(w.job.deadline for w in self._workers if w.job and w.job.deadline is not None)
        if self._closing and self._close_deadline is not None:
            deadlines.append(self._close_deadline)
        if not self._closing:
            if not self._queue:
                deadlines.extend(due[0] for w in self._workers if w.is_idle() and (due := self._background_due(w)))
            deadlines.extend(self._scaling_deadlines(time.monotonic()))
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

    def _forget_cancelled(self) -> None:
        """Long recordings whose caller gave up (the cancel wakes us) leave the table, and
        their queued jobs with them, here on the manager thread, where pieces are planned;
        pieces still running are dropped when they end. Kept, a cancelled recording and
        its audio would stay listed and held for good."""
        for gone in [i for i, long in self._long.items() if long.future.cancelled()]:
            long = self._long.pop(gone)
            for job in (*long.plan_jobs, *long.jobs):
                job.future.cancel()  # a running one cannot be: it finishes and is dropped

    def _drain_pipe(self, w: Worker) -> None:
        conn = w.conn
        assert conn is not None
        try:
            while conn.poll():
                self._on_message(w, conn.recv())
        except (EOFError, OSError):
            conn.close()  # the sentinel tells us the rest

    def _dispatch(self) -> None:
        if not self._queue:
            return
        # no general worker left or coming back (all failed): the express ones take everything
        stranded = not self._capacity() and not set(self._restart_at) - self._express_slots
        while self._queue:
            idle = [w for w in self._workers if w.is_idle()]
            if not idle:
                return
            express = [w for w in idle if w.express and not stranded]
            general = [w for w in idle if w not in express]
            if general or self._queue.peek().parent is None:
                job = self._queue.pop()
            else:  # only express workers are free: the first job that is not a recording's part
                job = self._queue.pop_first(lambda j: j.parent is None and not j.future.done())
                if job is None:
                    break
            if not job.future.running() and not job.future.set_running_or_notify_cancel():
                continue  # cancelled while it waited (a retried request is already running)
            # a recording's plan and pieces go to general workers only; any other request to
            # an express worker first, which leaves the general ones to the next recording
            idle = general if job.parent is not None else express or general
            job = self._with_company(job)
            if self._scaler.enabled:  # the most recently busy: keeps extra workers idle, so they can go
                w = max(idle, key=lambda x: x.idle_since)
            else:  # the longest idle: spreads the load
                w = min(idle, key=lambda x: x.idle_since)
            job.dispatched = time.monotonic()
            job.attempts += 1
            w.assign(job)
        # Cancelled jobs leave the queue as soon as we see them, not only at dispatch.
        self._queue.remove(lambda j: j.future.cancelled())


__all__ = ["ProcessPool"]
