"""The whisperpool server: an OpenAI-compatible HTTP API on a warm pool.

``whisperpool serve`` runs :func:`serve`; ``create_app`` builds the ASGI app for any
ASGI server. See :mod:`whisperpool.server.app` for the endpoints,
:mod:`.realtime` for the Realtime WebSocket and :mod:`.wyoming` for Wyoming.

The server is an extra (``pip install 'whisperpool[server]'``): this package and its
:mod:`.settings` import without it, and :func:`require_extra` (called by :func:`serve`,
:func:`serve_wyoming` and ``create_app``) raises
:class:`~whisperpool.errors.MissingDependency` naming the extra when a package is missing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rich.console import Console

from ..engine import WorkerState
from ..errors import MissingDependency
from ..events import WarmUpFailedEvent, WorkerStateChanged
from ..models import resolve_model
from .settings import ServerSettings, build_settings, env_overrides

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

EXTRA = "server"
# the modules the server extra installs (pyproject.toml's [server] extra), by import name
EXTRA_MODULES = ("fastapi", "uvicorn", "python_multipart", "prometheus_client", "websockets", "wyoming")


def require_extra() -> None:
    """Raise :class:`MissingDependency` naming the extra if a package of the server is missing."""
    MissingDependency.unless_importable(EXTRA_MODULES, extra=EXTRA, needed_for="the server")


def create_app(settings: ServerSettings, **kwargs: Any) -> FastAPI:
    """The ASGI app (see :func:`whisperpool.server.app.create_app`)."""
    require_extra()
    from .app import create_app as create

    return create(settings, **kwargs)


def uvicorn_config(settings: ServerSettings, app: Any, **changes: Any) -> Any:
    """The ``uvicorn.Config`` that serves ``app`` under ``settings``' connection limits."""
    import uvicorn

    from .connections import header_deadline_protocol

    options: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=settings.grace_s,  # any fraction; 0: cancel in-flight requests at once
        limit_concurrency=settings.max_connections,  # more connections are answered 503 by uvicorn
        http=header_deadline_protocol(settings.read_timeout_s),
        lifespan="on",
    )
    return uvicorn.Config(app, **{**options, **changes})


def serve(settings: ServerSettings, *, console: Console | None = None) -> bool:
    """Run the server until SIGTERM/SIGINT, showing warm-up progress on ``console``.

    Raises :class:`~whisperpool.errors.ModelError` before binding if the model cannot be
    found; returns False if the server could not start (the port is taken, say).
    """
    require_extra()
    import uvicorn

    for config in (settings.pool, *settings.models.values()):
        if config.backend != "fake":  # fail before binding, with the model's own message
            resolve_model(config.model, config.model_cache_dir, config.backend)
    console = console or Console(stderr=True)
    engine = settings.engine()

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
    served = ", ".join(repr(name) for name in engine.served_models)
    wyoming = f" and Wyoming on tcp://{settings.wyoming_host}:{settings.wyoming_port}" if settings.wyoming_port else ""
    console.print(
        f"whisperpool serving {served} on http://{settings.host}:{settings.port}/v1{wyoming} "
        f"with {settings.pool.pool_size} worker(s); API key {key}; warming up ...",
        highlight=False,
    )
    server = uvicorn.Server(uvicorn_config(settings, app))
    handle_exit = server.handle_exit

    def on_exit(sig: int, frame: Any) -> None:  # end the dashboard feeds, or shutdown waits for them
        app.state.dashboard.closing = True
        handle_exit(sig, frame)

    server.handle_exit = on_exit  # type: ignore[method-assign]
    server.run()
    return server.started


def serve_wyoming(settings: ServerSettings, *, console: Console | None = None) -> bool:
    """Serve only the Wyoming protocol until SIGTERM/SIGINT (``whisperpool wyoming``)."""
    import asyncio
    import signal

    require_extra()
    from .wyoming import start_wyoming

    for config in (settings.pool, *settings.models.values()):
        if config.backend != "fake":
            resolve_model(config.model, config.model_cache_dir, config.backend)
    console = console or Console(stderr=True)
    assert settings.wyoming_port is not None

    async def main() -> bool:
        engine = settings.engine()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            server = await start_wyoming(engine, settings.wyoming_host, settings.wyoming_port, limits=settings.streams)
        except OSError as exc:
            console.print(f"cannot listen on {settings.wyoming_host}:{settings.wyoming_port}: {exc}", highlight=False)
            return False
        console.print(
            f"whisperpool serving Wyoming on tcp://{settings.wyoming_host}:{settings.wyoming_port} "
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


__all__ = [
    "EXTRA",
    "ServerSettings",
    "build_settings",
    "create_app",
    "env_overrides",
    "require_extra",
    "serve",
    "serve_wyoming",
    "uvicorn_config",
]
