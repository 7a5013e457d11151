"""What a load or abuse run is told: :class:`LoadOptions`, checked (loopback only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ConfigError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadOptions:
    """A load run. ``url=None`` starts a server (``workers``, ``threads``, ``max_queue``,
    ``language``) on a free loopback port; a given ``url`` must be a loopback address.
    ``chaos_every_s`` kills a random worker that often; the run stops after ``limit_s``.
    ``output``: a JSON file to write the result to.
    """

    url: str | None = None
    requests: int = 300
    concurrency: int = 16
    chaos_every_s: float | None = None
    workers: int = 2
    threads: int | None = None
    max_queue: int = 64
    language: str | None = "en"
    limit_s: float = 1800.0
    output: Path | None = None
    abuse: bool = False
    fake: bool = False
    probe_s: float = 5.0
    probe_count: int = 8
    read_timeout_s: float = 2.0  # of the started server; with --url, the server's own (for the waits)
    max_connections: int = 64
    max_uploads: int = 8
    max_audio_s: float = 600.0
    stream_max_sessions: int = 4  # of the started server; with --url, the server's (the sessions probe opens more)
    stream_max_buffered_s: float = 30.0  # of the started server; with --url, the server's (a final's bound)

    def __post_init__(self) -> None:
        names = ("requests", "concurrency", "workers", "probe_count", "max_connections", "max_uploads")
        for name in (*names, "stream_max_sessions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"LoadOptions.{name} must be an integer >= 1, got {value!r}")
        if self.chaos_every_s is not None and not self.chaos_every_s > 0:
            raise ConfigError(f"LoadOptions.chaos_every_s must be > 0, got {self.chaos_every_s!r}")
        for name in ("probe_s", "read_timeout_s", "max_audio_s", "stream_max_buffered_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"LoadOptions.{name} must be > 0, got {getattr(self, name)!r}")
        if not self.limit_s > 0:
            raise ConfigError(f"LoadOptions.limit_s must be > 0, got {self.limit_s!r}")
        if self.url is not None and urlparse(self.url).hostname not in LOOPBACK:
            raise ConfigError(f"LoadOptions.url must be a loopback address (load only goes there), got {self.url!r}")
