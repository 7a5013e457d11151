"""Live transcription: a session that takes PCM chunks and yields speech events.

:mod:`.session` holds the session and its commit policy (LocalAgreement-2), :mod:`.vad`
the frame-by-frame Silero VAD. The servers for OpenAI's Realtime protocol and for
Wyoming live in :mod:`whisperpool.server` and drive a session each.
"""

from .session import (
    Agreement,
    Final,
    Partial,
    SpeechStarted,
    SpeechStopped,
    StreamError,
    StreamEvent,
    StreamingSession,
    TimedWord,
    appended,
)

__all__ = [
    "Agreement",
    "Final",
    "Partial",
    "SpeechStarted",
    "SpeechStopped",
    "StreamError",
    "StreamEvent",
    "StreamingSession",
    "TimedWord",
    "appended",
]
