"""whisperpool: low-latency local speech-to-text on a pool of warm Whisper workers.

The package root re-exports the public API::

    from whisperpool import TranscriptionEngine, PoolConfig

    with TranscriptionEngine(PoolConfig(pool_size=2)) as engine:
        print(engine.transcribe_sync("speech.wav", language="en").text)
"""

from ._version import __version__
from .config import DecodeOptions, PoolConfig
from .engine import TranscriptionEngine
from .errors import (
    AudioTooLong,
    AudioTooShort,
    ConfigError,
    InvalidAudio,
    InvalidStateTransition,
    ModelError,
    PoolClosed,
    PoolFailed,
    PoolNotReady,
    QueueFull,
    RequestTimeout,
    TranscriptionError,
    UnknownModel,
    WhisperPoolError,
    WorkerCrashed,
)
from .pool import PoolStatus, ProcessPool, WarmUpSummary, WorkerStatus
from .results import Segment, Timings, TranscriptionResult, Word
from .streaming import StreamingSession
from .worker import WorkerState

__all__ = [
    "AudioTooLong",
    "AudioTooShort",
    "ConfigError",
    "DecodeOptions",
    "InvalidAudio",
    "InvalidStateTransition",
    "ModelError",
    "PoolClosed",
    "PoolConfig",
    "PoolFailed",
    "PoolNotReady",
    "PoolStatus",
    "ProcessPool",
    "QueueFull",
    "RequestTimeout",
    "Segment",
    "StreamingSession",
    "Timings",
    "TranscriptionEngine",
    "TranscriptionError",
    "TranscriptionResult",
    "UnknownModel",
    "WarmUpSummary",
    "WhisperPoolError",
    "Word",
    "WorkerCrashed",
    "WorkerState",
    "WorkerStatus",
    "__version__",
]
