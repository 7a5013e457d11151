"""``whisperpool serve`` and ``wyoming``: flags and ``WHISPERPOOL_*`` variables to settings, then serve."""

from __future__ import annotations

import argparse

from rich.console import Console

from ..errors import ModelError
from ..server.settings import ServerSettings, build_settings, env_overrides
from .codes import EXIT_OK, EXIT_START_FAILED
from .pool_options import pool_values

# the server's own flags; the engine's are pool_options.POOL_FLAGS
_SERVE_FLAGS = {
    "host": "host",
    "port": "port",
    "api_key": "api_key",
    "max_upload_mb": "max_upload_mb",
    "grace": "grace_s",
    "read_timeout": "read_timeout_s",
    "max_connections": "max_connections",
    "max_uploads": "max_uploads",
    "metrics_auth": "metrics_auth",
    "wyoming_port": "wyoming_port",
    "wyoming_host": "wyoming_host",
    "wyoming_insecure": "wyoming_insecure",
    "stream_max_sessions": "streams.max_sessions",
    "stream_max_sessions_per_client": "streams.max_sessions_per_client",
    "stream_idle_timeout_s": "streams.idle_timeout_s",
    "stream_max_audio_rate": "streams.max_audio_rate",
    "stream_audio_burst_s": "streams.audio_burst_s",
    "stream_max_buffered_s": "streams.max_buffered_s",
    "allowed_origins": "streams.allowed_origins",
    "extra_models": "extra_models",
}


def serve_settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> ServerSettings:
    """``serve``/``wyoming`` settings: ``WHISPERPOOL_*`` variables, then the flags given (a flag wins)."""
    values = env_overrides(environ)
    values.update(pool_values(args))
    values.update(
        {target: getattr(args, flag) for flag, target in _SERVE_FLAGS.items() if getattr(args, flag, None) is not None}
    )
    if args.command == "wyoming":
        values["http"] = False
    return build_settings(values)


def _serve(args: argparse.Namespace, err: Console) -> int:
    from ..server import require_extra, serve, serve_wyoming

    require_extra()
    settings = serve_settings(args)
    try:
        started = serve(settings, console=err) if settings.http else serve_wyoming(settings, console=err)
        if not started:
            err.print("whisperpool: the server could not start (see above)", highlight=False)
            return EXIT_START_FAILED
    except ModelError as exc:
        err.print(f"whisperpool: cannot start: {exc}", highlight=False, markup=False)
        return EXIT_START_FAILED
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down gracefully
        err.print("whisperpool: stopped", highlight=False)
        return 130
    return EXIT_OK
