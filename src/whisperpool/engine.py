"""The engine: the public face of a warm pool, for asyncio code and for plain scripts.

::

    async with TranscriptionEngine(PoolConfig(pool_size=2)) as engine:
        result = await engine.transcribe("meeting.flac", language="en")

    with TranscriptionEngine() as engine:          # the synchronous facade
        print(engine.transcribe_sync("note.wav").text)

    async with engine.stream(language="en") as session:   # live audio
        session.feed(chunk, 16_000)
        async for event in session: ...

It decodes any input to 16 kHz mono float32 (off the event loop), submits it to its
:class:`~whisperpool.pool.ProcessPool`, and awaits the result. It emits ``ready`` once
warm-up has ended with at least one warm worker, and re-emits every pool event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from . import events as ev
from .audio import SAMPLE_RATE, AudioInput, load_audio
from .config import DecodeOptions, PoolConfig
from .errors import ConfigError, UnknownModel
from .pool import PRIORITY_DEFAULT, PoolStatus, ProcessPool, WarmUpSummary
from .results import Segment, TranscriptionResult
from .streaming import StreamingSession

log = logging.getLogger(__name__)

ENGINE_EVENTS = ev.POOL_EVENTS


class TranscriptionEngine:
    """Owns a :class:`ProcessPool` per model configuration; transcribes paths, bytes,
    file objects and arrays.

    ``config`` is the default model's pool, named by its ``model`` setting; ``models``
    adds more, each a pool of its own with its own sizes (``{"base-f32":
    PoolConfig(model="base", compute_type="float32", pool_size=1)}``), chosen per request
    with ``model=``. Readiness and the ``ready`` event follow the default pool.
    """

    def __init__(
        self, config: PoolConfig | None = None, *, models: Mapping[str, PoolConfig] | None = None, **overrides: Any
    ) -> None:
        self.pool = ProcessPool(config, **overrides)
        self.config = self.pool.config
        self.default_model = self.config.model
        self.pools: dict[str, ProcessPool] = {self.default_model: self.pool}
        for name, model_config in (models or {}).items():
            if name in self.pools:
                raise ConfigError(f"model name {name!r} is given twice")
            self.pools[name] = ProcessPool(model_config)
        self.emitter = AsyncIOEventEmitter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warm_up: WarmUpSummary | None = None
        for pool in self.pools.values():
            for name in ev.POOL_EVENTS:
                if name != ev.READY:  # the engine's own "ready" means: warm-up has ended
                    pool.on(name, self._forwarder(name))

    def pool_for(self, model: str | None) -> ProcessPool:
        """The pool serving ``model`` (None: the default); ``UnknownModel`` if none does."""
        if model is None:
            return self.pool
        try:
            return self.pools[model]
        except KeyError:
            raise UnknownModel(f"model {model!r} is not served here; available: {', '.join(self.pools)}") from None

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
        model: str | None = None,
        **decode: Any,
    ) -> TranscriptionResult:
        """Transcribe a path, encoded bytes, a binary file object or an array of samples.

        Decoding options come from ``options`` (default: the model's pool's), with any
        keyword in ``decode`` (``language="en"``, ``word_timestamps=True``, ...) changed.
        ``sample_rate`` applies to arrays only; ``model`` picks a model configuration.
        """
        pool = self.pool_for(model)
        opts = self._options(options, decode, pool)
        samples = await asyncio.to_thread(load_audio, audio, sample_rate=sample_rate, name=name)
        future = pool.submit(samples, opts, priority=priority, timeout=timeout, on_segment=on_segment)
        return await asyncio.wrap_future(future)

    def status(self, model: str | None = None) -> PoolStatus:
        return self.pool_for(model).get_status()

    def statuses(self) -> dict[str, PoolStatus]:
        """Every model configuration's pool status, by name."""
        return {name: pool.get_status() for name, pool in self.pools.items()}

    async def close(self, *, drain: bool = False, timeout: float | None = None) -> None:
        """Stop every worker of every pool (see :meth:`ProcessPool.close`)."""
        await asyncio.gather(
            *(asyncio.to_thread(pool.close, drain=drain, timeout=timeout) for pool in self.pools.values())
        )

    def stream(
        self,
        language: str | None = None,
        *,
        vad: bool = True,
        update_interval_s: float = 0.5,
        max_buffer_s: float = 15.0,
        min_silence_s: float = 0.4,
        options: DecodeOptions | None = None,
        model: str | None = None,
        **decode: Any,
    ) -> StreamingSession:
        """A live transcription session (see :mod:`whisperpool.streaming`); call in the loop.

        ``vad=False`` leaves the turns to the caller: :meth:`StreamingSession.commit` ends
        each utterance. Updates use the short-audio window and realtime priority.
        """
        if language is not None:
            decode["language"] = language
        pool = self.pool_for(model)
        return StreamingSession(
            pool,
            self._options(options, decode, pool),
            vad=vad,
            update_interval_s=update_interval_s,
            max_buffer_s=max_buffer_s,
            min_silence_s=min_silence_s,
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
        pool = self.pool_for(model)
        opts = self._options(options, decode, pool)
        samples = load_audio(audio, sample_rate=sample_rate, name=name)
        return pool.submit(samples, opts, timeout=timeout).result()

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

    def _options(
        self, options: DecodeOptions | None, changes: dict[str, Any], pool: ProcessPool | None = None
    ) -> DecodeOptions:
        base = options or (pool or self.pool).config.decode
        return base.replace(**changes) if changes else base


__all__ = ["ENGINE_EVENTS", "TranscriptionEngine"]
