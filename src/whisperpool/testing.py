"""Test support: what the fake backend does, for tests of the pool's mechanics and failures.

``PoolConfig(backend="fake", fake=FakeBehavior(...))`` runs workers that load no model
and answer by describing the audio they got, and that can be told to load slowly, fail,
crash or hang. Not for production use.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True, kw_only=True, slots=True)
class FakeBehavior:
    """What the fake backend does: for tests of the pool's mechanics and its failures.

    ``*_workers`` fields name worker slots (0-based) that misbehave; an empty set means
    none. Audio whose first sample equals ``crash_marker`` (or ``hang_marker``,
    ``error_marker``) makes the worker crash (hang, raise) on that request. Like the real
    backend, audio up to ``DecodeOptions.short_window_max_s`` is answered by a "short" window under
    ``window="auto"``; one that starts with ``fallback_marker`` is reported as a fallback,
    one that starts with ``retry_marker`` as mended by a retry on the short window. Under
    ``window="short"`` (a live partial) either comes back empty, ``fallback`` naming a
    reason, as a pass the real guard rejects.
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
    retry_marker: float = 0.0625
    flaky_warmup_workers: frozenset[int] = frozenset()  # these fail warm-up until ``flaky_until``
    flaky_until: float = 0.0  # a wall-clock time, as time.time() gives

    def __post_init__(self) -> None:
        for name in ("load_delay_s", "inference_delay_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"FakeBehavior.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("fail_warmup_workers", "crash_warmup_workers", "hang_warmup_workers", "flaky_warmup_workers"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))


def silent_flac(seconds: int, *, declare_length: bool = True) -> bytes:
    """FLAC of silence: about 200 bytes a second. Without ``declare_length`` its header's
    total-samples field is zeroed (unknown), as a stream written without seeking leaves it.
    For tests and the abuse probes: a few kilobytes that decode to as long as asked."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=16_000, layout="mono")
        for _ in range(seconds):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 16_000), np.int16), format="s16", layout="mono")
            frame.sample_rate = 16_000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = bytearray(buf.getvalue())
    if not declare_length:
        at = 4 + 4 + 10  # "fLaC", the block header, the block and frame sizes: then rate, channels, bits, total
        value = int.from_bytes(data[at : at + 8], "big") & ~((1 << 36) - 1)
        data[at : at + 8] = value.to_bytes(8, "big")
    return bytes(data)


__all__ = ["FakeBehavior", "silent_flac"]
