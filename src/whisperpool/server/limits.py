"""The price limits of live streams, shared by the Realtime and Wyoming faces.

:class:`StreamLimits` (in :mod:`.settings`) holds the numbers; this module enforces them:

- :class:`SessionSlots`: streams at once, per server and per client address; one
  instance per engine, so Realtime and Wyoming count together.
- :class:`AudioBudget`: a token bucket of audio seconds (``max_audio_rate`` times real
  time, ``audio_burst_s`` of burst) plus the cap on the current utterance's buffer.
- :func:`check_json_depth`: nesting checked before ``json.loads`` (which raises
  ``RecursionError`` on a deeply nested document).

Every refusal is a :class:`LimitExceeded` whose message names the limit and its setting.
"""

from __future__ import annotations

import re
import time
import weakref
from dataclasses import dataclass, field

from .settings import StreamLimits

MAX_JSON_DEPTH = 16  # the deepest client event is 5 levels (session.audio.input.format.rate)

_TOKENS = re.compile(r'"(?:\\.|[^"\\])*"|[\[\]{}]')


class LimitExceeded(Exception):
    """A stream went over one of its limits; ``code`` is the error event's code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def check_json_depth(raw: str | bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`LimitExceeded` if ``raw`` nests arrays/objects deeper than ``limit``.

    Linear, and cheap for audio appends: a document with fewer brackets than the limit
    cannot be too deep, so only bracket-heavy documents are scanned (strings skipped).
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if text.count("[") + text.count("{") <= limit:
        return
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                raise LimitExceeded(f"JSON nested deeper than {limit} levels", "too_deep")
        elif token in "]}":
            depth -= 1


@dataclass
class SessionSlots:
    """Counts the open streams of one server; :meth:`acquire` refuses one over a cap."""

    limits: StreamLimits
    total: int = 0
    by_client: dict[str, int] = field(default_factory=dict)

    def acquire(self, client: str) -> None:
        if self.total >= self.limits.max_sessions:
            raise LimitExceeded(
                f"too many streams: this server serves {self.limits.max_sessions} at once "
                "(--stream-max-sessions); try again later",
                "session_limit",
            )
        if self.by_client.get(client, 0) >= self.limits.max_sessions_per_client:
            raise LimitExceeded(
                f"too many streams from {client}: at most {self.limits.max_sessions_per_client} at once "
                "per client address (--stream-max-sessions-per-client)",
                "session_limit",
            )
        self.total += 1
        self.by_client[client] = self.by_client.get(client, 0) + 1

    def release(self, client: str) -> None:
        self.total -= 1
        left = self.by_client.get(client, 1) - 1
        if left > 0:
            self.by_client[client] = left
        else:
            self.by_client.pop(client, None)


_slots: weakref.WeakKeyDictionary[object, SessionSlots] = weakref.WeakKeyDictionary()


def session_slots(engine: object, limits: StreamLimits) -> SessionSlots:
    """The one :class:`SessionSlots` of the server that serves ``engine`` (made on first use)."""
    slots = _slots.get(engine)
    if slots is None:
        slots = _slots[engine] = SessionSlots(limits)
    return slots


class AudioBudget:
    """One stream's audio rate (a token bucket of seconds) and buffered-audio cap."""

    def __init__(self, limits: StreamLimits, *, clock=time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.tokens = limits.audio_burst_s
        self.stamp = clock()

    def take(self, seconds: float, buffered_s: float) -> None:
        """Account for a chunk of ``seconds``; raise :class:`LimitExceeded` (and take
        nothing) if it would go over the rate or make the buffer longer than the cap."""
        limits = self.limits
        if buffered_s + seconds > limits.max_buffered_s:
            raise LimitExceeded(
                f"input audio buffer too large: {buffered_s:.1f} s are buffered and the limit is "
                f"{limits.max_buffered_s:g} s (--stream-max-buffered-s); this chunk was dropped. End the "
                "utterance (Realtime: input_audio_buffer.commit or .clear; Wyoming: audio-stop)",
                "input_audio_buffer_too_large",
            )
        now = self.clock()
        self.tokens = min(limits.audio_burst_s, self.tokens + (now - self.stamp) * limits.max_audio_rate)
        self.stamp = now
        if seconds > self.tokens:
            raise LimitExceeded(
                f"audio sent faster than {limits.max_audio_rate:g}x real time (--stream-max-audio-rate, "
                f"burst {limits.audio_burst_s:g} s): this chunk of {seconds:.2f} s was dropped; "
                "send audio at real-time pace",
                "rate_limited",
            )
        self.tokens -= seconds

    def refund(self, seconds: float) -> None:
        """Give back what :meth:`take` took for a chunk that turned out not to be audio."""
        self.tokens = min(self.limits.audio_burst_s, self.tokens + seconds)


__all__ = [
    "MAX_JSON_DEPTH",
    "AudioBudget",
    "LimitExceeded",
    "SessionSlots",
    "check_json_depth",
    "session_slots",
]
