"""Test support: what the fake backend does, for tests of the pool's mechanics and failures.

``PoolConfig(backend="fake", fake=FakeBehavior(...))`` runs workers that load no model
and answer by describing the audio they got, and that can be told to load slowly, fail,
crash or hang. Not for production use.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True, kw_only=True, slots=True)
class FakeBehavior:
    """What the fake backend does: for tests of the pool's mechanics and its failures.

    ``*_workers`` fields name worker slots (0-based) that misbehave; an empty set means
    none. Audio whose first sample equals ``crash_marker`` (or ``hang_marker``,
    ``error_marker``) makes the worker crash (hang, raise) on that request. Like the real
    backend, audio up to ``DecodeOptions.short_window_max_s`` is answered by a "short" window under
    ``window="auto"``; one that starts with ``fallback_marker`` is reported as a fallback.
    """

    load_delay_s: float = 0.0
    inference_delay_s: float = 0.0
    fail_warmup_workers: frozenset[int] = frozenset()
    crash_warmup_workers: frozenset[int] = frozenset()
    hang_warmup_workers: frozenset[int] = frozenset()
    crash_marker: float = 0.75
    hang_marker: float = 0.5
    error_marker: float = 0.25
    fallback_marker: float = 0.125
    flaky_warmup_workers: frozenset[int] = frozenset()  # these fail warm-up until ``flaky_until``
    flaky_until: float = 0.0  # a wall-clock time, as time.time() gives

    def __post_init__(self) -> None:
        for name in ("load_delay_s", "inference_delay_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"FakeBehavior.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("fail_warmup_workers", "crash_warmup_workers", "hang_warmup_workers", "flaky_warmup_workers"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))


__all__ = ["FakeBehavior"]
