"""The whisperpool server: an OpenAI-compatible HTTP API on a warm pool.

``whisperpool serve`` runs :func:`serve`; ``create_app`` builds the ASGI app for any
ASGI server. See :mod:`whisperpool.server.app` for the endpoints,
:mod:`.realtime` for the Realtime WebSocket and :mod:`.wyoming` for Wyoming.
"""

from __future__ import annotations

import logging

from rich.console import Console

from ..engine import TranscriptionEngine
from ..events import WarmUpFailedEvent, WorkerStateChanged
from ..models import resolve_model
from ..worker import WorkerState
from .app import create_app
from .settings import ServerSettings, build_settings, env_overrides

log = logging.getLogger(__name__)


def serve(settings: ServerSettings, *, console: Console | None = None) -> bool:
    """Run the server until SIGTERM/SIGINT, showing warm-up progress on ``console``.

    Raises :class:`~whisperpool.errors.ModelError` before binding if the model cannot be
    found; returns False if the server could not start (the port is taken, say).
    """
    import uvicorn

    for config in (settings.pool, *settings.models.values()):
        if config.backend != "fake":  # fail before binding, with the model's own message
            resolve_model(config.model, config.model_cache_dir)
    console = console or Console(stderr=True)
    engine = TranscriptionEngine(settings.pool, models=settings.models)

    def on_change(event: WorkerStateChanged) -> None:
        if event.new is WorkerState.WARM and event.old is WorkerState.WARMING:
            progress = engine.status().warm_up_progress
            console.print(f"worker {event.worker_id} warm ({progress:.0f}% of the pool warmed up)", highlight=False)

    def on_failed(event: WarmUpFailedEvent) -> None:
        console.print(f"[red]worker {event.worker_id} failed to warm up: {event.error}[/red]", highlight=False)

    engine.on("worker_state_changed", on_change)
    engine.on("warm_up_failed", on_failed)
    engine.on("ready", lambda e: console.print(f"ready: {e.warm_workers} warm worker(s) in {e.elapsed_s:.1f} s"))
    app = create_app(settings, engine=engine)
    key = "on" if settings.api_key else "off (set --api-key or WHISPERPOOL_API_KEY)"
    served = ", ".join(repr(name) for name in (settings.served_model, *settings.models))
    console.print(
        f"whisperpool serving {served} on http://{settings.host}:{settings.port}/v1 "
        f"with {settings.pool.pool_size} worker(s); API key {key}; warming up ...",
        highlight=False,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.grace_s) or None,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run()
    return server.started


def serve_wyoming(settings: ServerSettings, *, console: Console | None = None) -> bool:
    """Serve only the Wyoming protocol until SIGTERM/SIGINT (``whisperpool wyoming``)."""
    import asyncio
    import signal

    from .wyoming import start_wyoming

    if settings.pool.backend != "fake":
        resolve_model(settings.pool.model, settings.pool.model_cache_dir)
    console = console or Console(stderr=True)
    assert settings.wyoming_port is not None

    async def main() -> bool:
        engine = TranscriptionEngine(settings.pool)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            server = await start_wyoming(engine, settings.host, settings.wyoming_port, settings.served_model)
        except OSError as exc:
            console.print(f"cannot listen on {settings.host}:{settings.wyoming_port}: {exc}", highlight=False)
            return False
        console.print(
            f"whisperpool serving Wyoming on tcp://{settings.host}:{settings.wyoming_port} "
            f"with {settings.pool.pool_size} worker(s); warming up ...",
            highlight=False,
        )
        try:
            await engine.start()
            console.print("ready", highlight=False)
            await stop.wait()
        finally:
            await server.stop()
            await engine.close(drain=True, timeout=settings.grace_s)
        console.print("stopped", highlight=False)
        return True

    return asyncio.run(main())


__all__ = ["ServerSettings", "build_settings", "create_app", "env_overrides", "serve", "serve_wyoming"]
