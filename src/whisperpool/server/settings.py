"""Server settings: a frozen dataclass, filled from ``WHISPERPOOL_*`` variables and flags.

The dataclass's field defaults are the one table of the server's defaults; the command
line's help texts read them from :data:`DEFAULTS`. This module imports nothing of the
server extra, so the CLI can show them without it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import DecodeOptions, PoolConfig
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..engine import TranscriptionEngine

ENV_PREFIX = "WHISPERPOOL_"
DEFAULT_MAX_QUEUE = 64  # a server queues less than a library pool: a client can retry on 503
DEFAULT_WYOMING_PORT = 10300  # Home Assistant's convention for Wyoming speech-to-text


def default_pool(**changes: Any) -> PoolConfig:
    """The server's pool settings: the library's, with the server's queue limit."""
    return PoolConfig(**{"max_queue": DEFAULT_MAX_QUEUE, **changes})


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamLimits:
    """What one live stream (a Realtime WebSocket or a Wyoming connection) may cost.

    ``max_sessions`` streams at once on the server, Realtime and Wyoming together;
    ``max_sessions_per_client`` of them from one client address. A stream that sends no
    event for ``idle_timeout_s`` is closed. Audio may arrive at most ``max_audio_rate``
    times real time, with a burst of ``audio_burst_s`` seconds (a token bucket): audio
    beyond it is dropped with an error event. ``max_buffered_s`` caps the audio of the
    current utterance not yet transcribed (with ``turn_detection: null`` it grows until
    the client commits): an append beyond it is refused with an error event.
    ``allowed_origins`` lists the browser origins a Realtime WebSocket may come from
    (``"*"`` for any); a handshake without an ``Origin`` header is not a browser's and is
    allowed (the API key still applies).
    """

    max_sessions: int = 32
    max_sessions_per_client: int = 8
    idle_timeout_s: float = 60.0
    max_audio_rate: float = 4.0
    audio_burst_s: float = 20.0
    max_buffered_s: float = 30.0
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_sessions", "max_sessions_per_client"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"StreamLimits.{name} must be a whole number >= 1, got {value!r}")
        for name in ("idle_timeout_s", "max_audio_rate", "audio_burst_s", "max_buffered_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"StreamLimits.{name} must be a finite number > 0, got {value!r}")
        if self.max_buffered_s < 1.0:
            raise ConfigError(f"StreamLimits.max_buffered_s must be >= 1 s, got {self.max_buffered_s!r}")
        if isinstance(self.allowed_origins, str):
            raise ConfigError("StreamLimits.allowed_origins is a tuple of origins, not one string")
        object.__setattr__(self, "allowed_origins", tuple(o.strip().rstrip("/") for o in self.allowed_origins))


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerSettings:
    """How the HTTP server runs. ``pool`` holds the worker pool's own settings.

    ``api_key=None`` leaves the API open (the default binds loopback only);
    ``metrics_auth=True`` puts ``/metrics`` behind the key too (it is open by default, as
    Prometheus scrapers often carry no key and it holds counts only, no request content).
    ``grace_s`` is how long in-flight requests may run after SIGTERM/SIGINT (any
    fraction; 0 cancels them at once).

    The price limits of a connection: at most ``max_connections`` open connections (more
    are answered 503 by uvicorn), each given ``read_timeout_s`` to send its request line
    and headers and again ``read_timeout_s`` to send its body (408 ``upload_timeout``
    past it); at most ``max_uploads`` uploads are received or decoded at once (more get
    503 ``queue_full``), so upload files hold at most ``max_uploads * max_upload_mb`` of
    disk.
    ``wyoming_port`` also serves the Wyoming protocol on that TCP port of ``wyoming_host``
    (loopback unless told otherwise, whatever ``host`` is). Wyoming has no authentication:
    with an ``api_key``, a non-loopback ``wyoming_host`` is refused unless
    ``wyoming_insecure`` says so. ``http=False`` serves Wyoming only (``whisperpool wyoming``).
    ``streams`` limits each live stream (see :class:`StreamLimits`). ``models`` serves more
    model configurations beside ``pool``, each with its own workers, chosen by the
    request's ``model`` field (see :func:`parse_model_spec`).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_upload_mb: float = 25.0
    grace_s: float = 30.0
    read_timeout_s: float = 60.0  # for the headers, then for the body: 25 MiB in 60 s is about 3.5 Mbit/s
    max_connections: int = 128
    max_uploads: int = 16
    metrics_auth: bool = False
    model_name: str | None = None  # the id /v1/models lists; default: the pool's model setting
    wyoming_port: int | None = None
    wyoming_host: str = "127.0.0.1"
    wyoming_insecure: bool = False
    http: bool = True
    streams: StreamLimits = field(default_factory=StreamLimits)
    models: dict[str, PoolConfig] = field(default_factory=dict)  # more model configurations, by name
    pool: PoolConfig = field(default_factory=default_pool)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"ServerSettings.port must be 0-65535, got {self.port!r}")
        if self.wyoming_port is not None and not 0 <= self.wyoming_port <= 65535:
            raise ConfigError(f"ServerSettings.wyoming_port must be 0-65535, got {self.wyoming_port!r}")
        if not self.http and self.wyoming_port is None:
            raise ConfigError("ServerSettings: with http=False, wyoming_port must be set")
        if self.max_upload_mb <= 0:
            raise ConfigError(f"ServerSettings.max_upload_mb must be > 0, got {self.max_upload_mb!r}")
        if self.grace_s < 0:
            raise ConfigError(f"ServerSettings.grace_s must be >= 0, got {self.grace_s!r}")
        if not (isinstance(self.read_timeout_s, (int, float)) and self.read_timeout_s > 0):
            raise ConfigError(f"ServerSettings.read_timeout_s must be seconds > 0, got {self.read_timeout_s!r}")
        for name in ("max_connections", "max_uploads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ServerSettings.{name} must be an integer >= 1, got {value!r}")
        if self.max_uploads >= self.max_connections:
            raise ConfigError(
                f"ServerSettings.max_uploads ({self.max_uploads}) must be below max_connections "
                f"({self.max_connections}), so other requests still get through"
            )
        if self.api_key is not None and not self.api_key:
            raise ConfigError("ServerSettings.api_key must not be empty (leave it unset for no key)")
        if (
            self.wyoming_port is not None
            and self.api_key is not None
            and not is_loopback(self.wyoming_host)
            and not self.wyoming_insecure
        ):
            raise ConfigError(
                f"ServerSettings.wyoming_host={self.wyoming_host!r}: the Wyoming protocol has no authentication, "
                "so the API key cannot protect it on a non-loopback address; bind it to 127.0.0.1 and put a "
                "TLS/auth proxy or an SSH tunnel in front, or accept an open port with wyoming_insecure "
                "(--wyoming-insecure)"
            )

    @property
    def max_upload_disk_bytes(self) -> int:
        """The most disk that upload files hold at once."""
        return self.max_uploads * self.max_upload_bytes

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def served_model(self) -> str:
        return self.model_name or self.pool.model

    def engine(self) -> TranscriptionEngine:
        """The engine these settings describe: ``pool`` served as :attr:`served_model`, and ``models``."""
        from ..engine import TranscriptionEngine

        return TranscriptionEngine(self.pool, models=self.models, name=self.served_model)


DEFAULTS = ServerSettings()


def boolean(raw: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


# name of the environment variable (after the prefix) -> (where it goes, how to parse it)
_ENV: dict[str, tuple[str, Any]] = {
    "HOST": ("host", str),
    "PORT": ("port", int),
    "API_KEY": ("api_key", str),
    "MAX_UPLOAD_MB": ("max_upload_mb", float),
    "GRACE_S": ("grace_s", float),
    "READ_TIMEOUT_S": ("read_timeout_s", float),
    "MAX_CONNECTIONS": ("max_connections", int),
    "MAX_UPLOADS": ("max_uploads", int),
    "METRICS_AUTH": ("metrics_auth", boolean),
    "BACKEND": ("pool.backend", str),  # "fake": the test backend (whisperpool load --fake)
    "WYOMING_PORT": ("wyoming_port", int),
    "WYOMING_HOST": ("wyoming_host", str),
    "WYOMING_INSECURE": ("wyoming_insecure", lambda raw: _flag(raw, "WYOMING_INSECURE")),
    "STREAM_MAX_SESSIONS": ("streams.max_sessions", int),
    "STREAM_MAX_SESSIONS_PER_CLIENT": ("streams.max_sessions_per_client", int),
    "STREAM_IDLE_TIMEOUT_S": ("streams.idle_timeout_s", float),
    "STREAM_MAX_AUDIO_RATE": ("streams.max_audio_rate", float),
    "STREAM_AUDIO_BURST_S": ("streams.audio_burst_s", float),
    "STREAM_MAX_BUFFERED_S": ("streams.max_buffered_s", float),
    "ALLOWED_ORIGINS": ("streams.allowed_origins", lambda raw: [x for x in raw.split(",") if x.strip()]),
    "WORKERS": ("pool.pool_size", int),
    "MODEL": ("pool.model", str),
    "THREADS": ("pool.threads_per_worker", int),
    "COMPUTE_TYPE": ("pool.compute_type", str),
    "DEVICE": ("pool.device", str),
    "MAX_QUEUE": ("pool.max_queue", int),
    "MAX_BATCH": ("pool.max_batch", int),
    "MAX_AUDIO_S": ("pool.max_audio_s", float),
    "REQUEST_TIMEOUT_S": ("pool.request_timeout_s", float),
    "WARMUP_TIMEOUT_S": ("pool.warmup_timeout_s", float),
    "MIN_WORKERS": ("pool.min_workers", int),
    "MAX_WORKERS": ("pool.max_workers", int),
    "EXPRESS_WORKERS": ("pool.express_workers", int),
    "MAX_TOTAL_RSS_MB": ("pool.max_total_rss_mb", float),
    "STATE_FILE": ("pool.state_file", str),
    "EXTRA_MODELS": ("extra_models", lambda raw: [x for x in raw.split(";") if x.strip()]),
    "LANGUAGE": ("decode.language", str),
    "BEAM_SIZE": ("decode.beam_size", int),
    "WINDOW": ("decode.window", str),
}


def _flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{ENV_PREFIX}{name}={raw!r}: use 1/true/yes/on or 0/false/no/off")


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``WHISPERPOOL_*`` variables as ``{"port": 8001, "pool.pool_size": 4, ...}``."""
    environ = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    for suffix, (target, parse) in _ENV.items():
        raw = environ.get(ENV_PREFIX + suffix)
        if raw is None or raw == "":
            continue
        try:
            found[target] = parse(raw)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{suffix}={raw!r} is not a valid {parse.__name__}") from None
    return found


def parse_model_spec(spec: str, base: PoolConfig) -> tuple[str, PoolConfig]:
    """``NAME=MODEL[:COMPUTE_TYPE[:WORKERS[:BACKEND]]]`` -> a named configuration like ``base``.

    ``base-f32=base:float32:1`` serves the packaged model at float32 on one worker as
    ``base-f32``; ``MODEL`` may be a folder or a faster-whisper name, as ``--model``.
    ``cpp=base-q8_0::1:whispercpp`` serves the packaged model on whisper.cpp, quantised to
    q8_0, beside the default one (an empty field keeps the default's value).
    """
    name, sep, rest = spec.partition("=")
    parts = rest.split(":") if sep else []
    if not name.strip() or not parts or not parts[0].strip() or len(parts) > 4:
        raise ConfigError(f"a model configuration is NAME=MODEL[:COMPUTE_TYPE[:WORKERS[:BACKEND]]], got {spec!r}")
    changes: dict[str, Any] = {"model": parts[0].strip()}
    if len(parts) > 1 and parts[1].strip():
        changes["compute_type"] = parts[1].strip()
    if len(parts) > 3 and parts[3].strip():
        changes["backend"] = parts[3].strip()
    if len(parts) > 2 and parts[2].strip():
        try:
            workers = int(parts[2])
        except ValueError:
            raise ConfigError(f"{spec!r}: WORKERS must be a whole number") from None
        changes.update(pool_size=workers, min_workers=None, max_workers=None)
    return name.strip(), dataclasses.replace(base, **changes)


def build_settings(values: Mapping[str, Any]) -> ServerSettings:
    """Settings from dotted names (``"pool.pool_size"``, ``"decode.language"``, ``"port"``)."""
    values = dict(values)
    extra = values.pop("extra_models", None) or []
    top = {k: v for k, v in values.items() if "." not in k}
    pool = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("pool.")}
    decode = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("decode.")}
    streams = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("streams.")}
    if "allowed_origins" in streams:
        streams["allowed_origins"] = tuple(streams["allowed_origins"])
    pool_config = default_pool(decode=DecodeOptions(**decode), **pool)
    models = dict(parse_model_spec(spec, pool_config) for spec in extra)
    if len(models) < len(extra):
        raise ConfigError("two extra model configurations have the same name")
    return ServerSettings(pool=pool_config, models=models, streams=StreamLimits(**streams), **top)


__all__ = [
    "DEFAULTS",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_WYOMING_PORT",
    "ENV_PREFIX",
    "ServerSettings",
    "StreamLimits",
    "build_settings",
    "env_overrides",
    "is_loopback",
    "parse_model_spec",
]
