"""The engine: the public face of a warm pool, for asyncio code and for plain scripts.

::

    async with TranscriptionEngine(PoolConfig(pool_size=2)) as engine:
        result = await engine.transcribe("meeting.flac", language="en")

    with TranscriptionEngine() as engine:          # the synchronous facade
        print(engine.transcribe_sync("note.wav").text)

    session = engine.stream(language="en")         # live audio, in the event loop
    session.feed(chunk, 16_000)
    async for event in session: ...

It decodes any input to 16 kHz mono float32 (off the event loop), submits it to its
:class:`~whisperpool.pool.ProcessPool`, and awaits the result. It emits ``ready`` once
warm-up has ended with at least one warm worker, and re-emits every pool event.

The engine is the only door for the faces (HTTP, Realtime, Wyoming, the CLI)::

    HTTP, Realtime, Wyoming, CLI
        |
        v
    TranscriptionEngine    resolve_model(), options(), status(), statuses(), readiness()
        |  submit(), transcribe() ------------------------------+
        |  stream() --> StreamingSession (realtime priority) ---+
        v                                                       v
    one ProcessPool per model configuration --> worker processes

Model routing has one behaviour everywhere: ``None``, every configured name, the
default model's served ``name`` and OpenAI's alias ``whisper-1`` are served; any other
name raises :class:`~whisperpool.errors.UnknownModel` (code ``model_not_found``),
whose message lists the names that are.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pyee.asyncio import AsyncIOEventEmitter

from . import events as ev
from .audio import SAMPLE_RATE, AudioInput, Decoded, decode_request
from .config import DecodeOptions, PoolConfig
from .errors import ConfigError, UnknownModel
from .pool import PRIORITY_DEFAULT, PoolStatus, ProcessPool, WarmUpSummary, WorkerStatus
from .results import Segment, TranscriptionResult
from .streaming import StreamingSession
from .streaming.session import FINAL_TAIL_S
from .streaming.vad import FOREGROUND_DB, ROOM_PAUSE_S
from .worker import WorkerState

log = logging.getLogger(__name__)

ENGINE_EVENTS = ev.POOL_EVENTS
OPENAI_ALIAS = "whisper-1"  # what OpenAI clients send by default; served by the default model

ReadyState = Literal["ready", "warming", "failed", "unavailable"]


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether a model's pool can serve now, and why not: what ``/health/ready`` reports.

    ``state`` is ``ready`` (a worker is warm), ``warming`` (workers are still loading),
    ``failed`` (every worker failed to warm up) or ``unavailable`` (none is left).
    """

    state: ReadyState
    status: PoolStatus

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @classmethod
    def of(cls, status: PoolStatus) -> Readiness:
        if status.ready:
            state: ReadyState = "ready"
        elif status.warming_workers or status.cold_workers:
            state = "warming"
        elif status.total_workers and status.failed_workers == status.total_workers:
            state = "failed"
        else:
            state = "unavailable"
        return cls(state, status)

    def to_dict(self) -> dict[str, Any]:
        s = self.status
        return {
            "status": self.state,
            "warm_up_progress": s.warm_up_progress,
            "total_workers": s.total_workers,
            "warm_workers": s.warm_workers,
            "busy_workers": s.busy_workers,
            "failed_workers": s.failed_workers,
            "queue_depth": s.queue_depth,
        }


class TranscriptionEngine:
    """Owns a :class:`ProcessPool` per model configuration; transcribes paths, bytes,
    file objects and arrays, and opens live streaming sessions.

    ``config`` is the default model's pool, served as ``name`` (default: its ``model``
    setting); ``models`` adds more, each a pool of its own with its own sizes
    (``{"base-f32": PoolConfig(model="base", compute_type="float32", pool_size=1)}``),
    chosen per request with ``model=`` (see :meth:`resolve_model`). Readiness and the
    ``ready`` event follow the default pool.

    ``pool`` and ``pools`` (by served name) are there for tests and tools that measure
    the pool itself; the faces go through the methods below.
    """

    def __init__(
        self,
        config: PoolConfig | None = None,
        *,
        models: Mapping[str, PoolConfig] | None = None,
        name: str | None = None,
        **overrides: Any,
    ) -> None:
        self.pool = ProcessPool(config, **overrides)
        self.config = self.pool.config
        self.name = name or self.config.model
        self.pools: dict[str, ProcessPool] = {self.name: self.pool}
        for model_name, model_config in (models or {}).items():
            if model_name in self.pools:
                raise ConfigError(f"model name {model_name!r} is given twice")
            self.pools[model_name] = ProcessPool(model_config)
        # Other names of the default model: its model setting and OpenAI's alias. A
        # configuration named like one of them is served under that name instead.
        self._aliases = {alias: self.name for alias in (self.config.model, OPENAI_ALIAS) if alias not in self.pools}
        self.emitter = AsyncIOEventEmitter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warm_up: WarmUpSummary | None = None
        for pool in self.pools.values():
            for event in ev.POOL_EVENTS:
                if event != ev.READY:  # the engine's own "ready" means: warm-up has ended
                    pool.on(event, self._forwarder(event))

    # -- routing -------------------------------------------------------------------------
    @property
    def served_models(self) -> tuple[str, ...]:
        """The model configurations' names, the default first (one per pool)."""
        return tuple(self.pools)

    @property
    def model_names(self) -> tuple[str, ...]:
        """Every name a request may use: the served names and the default's aliases, sorted."""
        return tuple(sorted({*self.pools, *self._aliases}))

    def resolve_model(self, model: str | None) -> str:
        """The served name of the configuration ``model`` names (None: the default).

        Raises :class:`~whisperpool.errors.UnknownModel` for a name that is not served;
        its message lists the names that are.
        """
        if model is None:
            return self.name
        if model in self.pools:
            return model
        if model in self._aliases:
            return self._aliases[model]
        raise UnknownModel(f"model {model!r} is not served here; available: {', '.join(self.model_names)}")

    def _pool(self, model: str | None) -> ProcessPool:
        return self.pools[self.resolve_model(model)]

    def options(self, model: str | None = None, base: DecodeOptions | None = None, **changes: Any) -> DecodeOptions:
        """Decoding options for ``model``: ``base`` (default: the model's own defaults) with
        ``changes`` applied. Raises :class:`~whisperpool.errors.ConfigError` naming a bad field."""
        options = base or self._pool(model).config.decode
        return options.replace(**changes) if changes else options

    # -- events ------------------------------------------------------------------------
    def on(self, event: str, callback: Callable[..., Any] | None = None) -> Any:
        """Subscribe to an event (see :mod:`whisperpool.events`); works as a decorator too."""
        if event not in ENGINE_EVENTS:
            raise ValueError(f"unknown engine event {event!r}; known: {', '.join(ENGINE_EVENTS)}")
        return self.emitter.on(event, callback) if callback else self.emitter.on(event)

    def _forwarder(self, name: str) -> Callable[[Any], None]:
        def forward(payload: Any) -> None:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(ev.safe_emit, self.emitter, name, payload)
            else:
                ev.safe_emit(self.emitter, name, payload)

        return forward

    def _emit_ready(self, summary: WarmUpSummary) -> None:
        self._warm_up = summary
        ev.safe_emit(self.emitter, ev.READY, ev.Ready(summary.succeeded, summary.total_s))

    @property
    def warm_up_summary(self) -> WarmUpSummary | None:
        """How warm-up went (``None`` until it has ended)."""
        return self._warm_up

    # -- async API -----------------------------------------------------------------------
    async def start(self, *, wait: bool = True) -> None:
        """Start the pool and (with ``wait``) wait until every worker warmed up or failed.

        Raises :class:`~whisperpool.errors.PoolFailed` if every worker failed, and
        :class:`~whisperpool.errors.ModelError` if the model cannot be resolved.
        With ``wait=False`` it returns as soon as the workers are starting; ``ready``
        is emitted later, and requests submitted meanwhile wait in the queue.
        """
        self._loop = asyncio.get_running_loop()
        for pool in self.pools.values():
            await asyncio.to_thread(pool.start)  # resolving the model may join files
        warmed = asyncio.wrap_future(self.pool.warmed_future)
        if wait:
            self._emit_ready(await warmed)
        else:
            warmed.add_done_callback(self._on_warmed)

    def _on_warmed(self, fut: asyncio.Future[WarmUpSummary]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._emit_ready(fut.result())

    async def transcribe(
        self,
        audio: AudioInput,
        *,
        options: DecodeOptions | None = None,
        sample_rate: int = SAMPLE_RATE,
        name: str | None = None,
        priority: int = PRIORITY_DEFAULT,
        timeout: float | None = None,
        on_segment: Callable[[Segment], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        model: str | None = None,
        **decode: Any,
    ) -> TranscriptionResult:
        """Transcribe a path, encoded bytes, a binary file object or an array of samples.

        Decoding options come from ``options`` (default: the model's pool's), with any
        keyword in ``decode`` (``language="en"``, ``word_timestamps=True``, ...) changed.
        ``sample_rate`` applies to arrays only; ``model`` picks a model configuration
        (see :meth:`resolve_model`); ``on_segment`` is called in the event loop with each
        segment as it decodes. Cancelling the call drops a queued request from the queue
        (a running one finishes on its worker).
        """
        opts = self.options(model, options, **decode)
        samples = await self.decode(audio, model=model, sample_rate=sample_rate, name=name)
        return await self.submit(
            samples,
            model=model,
            options=opts,
            priority=priority,
            timeout=timeout,
            on_segment=on_segment,
            on_progress=on_progress,
        )

    async def decode(
        self, audio: AudioInput, *, model: str | None = None, sample_rate: int = SAMPLE_RATE, name: str | None = None
    ) -> Decoded:
        """Any input to 16 kHz mono float32, off the event loop: at least 0.1 s
        (:class:`~whisperpool.errors.AudioTooShort`), within the model's ``max_audio_s``
        (:class:`~whisperpool.errors.AudioTooLong`); a truncated file is decoded as far as
        it goes, with a warning that :meth:`submit` puts into the result."""
        limit = self._pool(model).config.max_audio_s
        return await asyncio.to_thread(decode_request, audio, sample_rate=sample_rate, name=name, max_seconds=limit)

    def submit(
        self,
        samples: np.ndarray | Decoded,
        *,
        model: str | None = None,
        options: DecodeOptions | None = None,
        priority: int = PRIORITY_DEFAULT,
        timeout: float | None = None,
        on_segment: Callable[[Segment], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> asyncio.Future[TranscriptionResult]:
        """Queue 16 kHz mono float32 ``samples`` now; call in the event loop.

        Raises at once what the queue refuses (:class:`~whisperpool.errors.QueueFull`,
        :class:`~whisperpool.errors.UnknownModel`, ...), so a server can answer before it
        starts a response. ``on_segment`` is called in the loop, every segment before the
        result, in order. A recording longer than the pool's ``split_above_s`` is decoded
        in pieces on all the workers; ``on_progress(done, total)`` follows its pieces, in
        the loop. Cancelling the returned future drops a queued request (and a recording's
        queued pieces) from the queue.
        """
        pool = self._pool(model)
        loop = asyncio.get_running_loop()
        warnings = samples.warnings if isinstance(samples, Decoded) else ()
        future = pool.submit(
            samples.samples if isinstance(samples, Decoded) else samples,
            options or pool.config.decode,
            priority=priority,
            timeout=timeout,
            on_segment=_in_loop(loop, on_segment),
            on_progress=_in_loop(loop, on_progress),
        )
        result = asyncio.wrap_future(future)  # cancelling it cancels the pool's future
        return _with_warnings(result, warnings) if warnings else result

    def status(self, model: str | None = None) -> PoolStatus:
        """The pool status of ``model`` (None: the default)."""
        return self._pool(model).get_status()

    def statuses(self) -> dict[str, PoolStatus]:
        """Every model configuration's pool status, by served name, the default first."""
        return {name: pool.get_status() for name, pool in self.pools.items()}

    def readiness(self, model: str | None = None) -> Readiness:
        """Whether ``model`` (None: the default) can serve now: ready, warming, failed or unavailable."""
        return Readiness.of(self.status(model))

    async def close(self, *, drain: bool = False, timeout: float | None = None) -> None:
        """Stop every worker of every pool (see :meth:`ProcessPool.close`)."""
        await asyncio.gather(
            *(asyncio.to_thread(pool.close, drain=drain, timeout=timeout) for pool in self.pools.values())
        )

    def stream(
        self,
        language: str | None = None,
        *,
        model: str | None = None,
        vad: bool = True,
        vad_threshold: float = 0.5,
        update_interval_s: float = 0.5,
        max_buffer_s: float = 15.0,
        min_silence_s: float = 0.4,
        final_tail_s: float | None = FINAL_TAIL_S,
        vad_foreground_db: float | None = FOREGROUND_DB,
        vad_room_pause_s: float | None = ROOM_PAUSE_S,
        options: DecodeOptions | None = None,
        **decode: Any,
    ) -> StreamingSession:
        """A live transcription session (see :mod:`whisperpool.streaming`); call in the loop.

        ``model`` picks a model configuration (see :meth:`resolve_model`). ``vad=False``
        leaves the turns to the caller: :meth:`StreamingSession.commit` ends each
        utterance. Updates use the short-audio window and realtime priority. ``final_tail_s``:
        a VAD-ended utterance's final decodes its audio to this long after its last speech
        frame, sent as soon as that much silence is heard (a speculative final); ``None``
        waits for the VAD's stop and decodes to it (see :mod:`whisperpool.streaming.session`).
        ``vad_foreground_db``: a speech frame this far below the utterance's speech level is
        background (voices behind the speaker), so the speech end is the speaker's; ``None``
        counts every speech frame (see :mod:`whisperpool.streaming.vad`). ``vad_room_pause_s``:
        under background voices, once the speaker has been silent for ``min_silence_s``, a
        pause of the room's this long ends the turn; ``None`` waits for ``min_silence_s`` of
        the room's silence too.
        """
        if language is not None:
            decode["language"] = language
        return StreamingSession(
            self._pool(model),
            self.options(model, options, **decode),
            vad=vad,
            vad_threshold=vad_threshold,
            update_interval_s=update_interval_s,
            max_buffer_s=max_buffer_s,
            min_silence_s=min_silence_s,
            final_tail_s=final_tail_s,
            vad_foreground_db=vad_foreground_db,
            vad_room_pause_s=vad_room_pause_s,
        )

    async def __aenter__(self) -> TranscriptionEngine:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- synchronous facade ---------------------------------------------------------------
    def start_sync(self) -> WarmUpSummary:
        """Start and warm up every worker; blocks. Returns how the default pool's warm-up went."""
        for pool in self.pools.values():
            pool.start()
        summary = self.pool.warm_up_all_workers()
        for pool in self.pools.values():
            if pool is not self.pool:
                pool.warm_up_all_workers()
        self._emit_ready(summary)
        return summary

    def transcribe_sync(
        self,
        audio: AudioInput,
        *,
        options: DecodeOptions | None = None,
        sample_rate: int = SAMPLE_RATE,
        name: str | None = None,
        timeout: float | None = None,
        model: str | None = None,
        **decode: Any,
    ) -> TranscriptionResult:
        """Blocking :meth:`transcribe`, for scripts and threads."""
        pool = self._pool(model)
        opts = self.options(model, options, **decode)
        decoded = decode_request(audio, sample_rate=sample_rate, name=name, max_seconds=pool.config.max_audio_s)
        result = pool.submit(decoded.samples, opts, timeout=timeout).result()
        return dataclasses.replace(result, warnings=result.warnings + decoded.warnings) if decoded.warnings else result

    def close_sync(self, *, drain: bool = False, timeout: float | None = None) -> None:
        for pool in self.pools.values():
            pool.close(drain=drain, timeout=timeout)

    def __enter__(self) -> TranscriptionEngine:
        try:
            self.start_sync()
        except BaseException:
            self.close_sync()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_sync()


def _with_warnings(
    future: asyncio.Future[TranscriptionResult], warnings: tuple[str, ...]
) -> asyncio.Future[TranscriptionResult]:
    """``future``'s result with ``warnings`` in it; cancelling the one cancels the other."""
    out: asyncio.Future[TranscriptionResult] = future.get_loop().create_future()

    def copy(done: asyncio.Future[TranscriptionResult]) -> None:
        if out.done():
            return
        if done.cancelled():
            out.cancel()
        elif done.exception() is not None:
            out.set_exception(done.exception())  # type: ignore[arg-type]
        else:
            out.set_result(dataclasses.replace(done.result(), warnings=done.result().warnings + warnings))

    future.add_done_callback(copy)
    out.add_done_callback(lambda o: future.cancel() if o.cancelled() else None)
    return out


def _in_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., None] | None) -> Callable[..., None] | None:
    """``callback`` as the pool may call it, from its manager thread: run in ``loop``."""
    if callback is None:
        return None
    return lambda *args: loop.call_soon_threadsafe(callback, *args)


__all__ = [
    "ENGINE_EVENTS",
    "OPENAI_ALIAS",
    "PoolStatus",
    "Readiness",
    "TranscriptionEngine",
    "WarmUpSummary",
    "WorkerState",
    "WorkerStatus",
]
