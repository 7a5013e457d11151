"""What a streaming session yields: speech started and stopped, partial and final text, errors."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ErrorInfo


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    item_id: str
    start_s: float


@dataclass(frozen=True, slots=True)
class Partial:
    """The current utterance so far: ``stable`` (committed, never changes) + the rest."""

    item_id: str
    text: str
    stable: str


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    item_id: str
    end_s: float


@dataclass(frozen=True, slots=True)
class Final:
    """The committed text of a whole utterance, with its times in the stream."""

    item_id: str
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class StreamError:
    item_id: str | None
    error: ErrorInfo


StreamEvent = SpeechStarted | Partial | SpeechStopped | Final | StreamError


__all__ = ["Final", "Partial", "SpeechStarted", "SpeechStopped", "StreamError", "StreamEvent"]
