"""What a transcription returns: small frozen dataclasses of plain data.

They are built in the worker, pickled across its pipe, and completed in the parent with
the timings only the parent can know (queue wait, total).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Why the short-window guard rejected a decoding: ``TranscriptionResult.fallback`` (it went to
# the full window) or ``.retried`` (a retry on the short window mended it).
FALLBACK_REASONS = (
    "compression_ratio",
    "repetition",
    "log_probability",
    "token_cap",
    "no_end_timestamp",
    "stopped_early",
)
# Those a retry on the short window can mend (a loop or a cut; a low log-probability is
# the audio's fault): ``TranscriptionResult.retried`` is one of them.
RETRIED_REASONS = ("compression_ratio", "repetition", "token_cap", "no_end_timestamp", "stopped_early")


@dataclass(frozen=True, slots=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True, slots=True)
class Segment:
    """One decoded segment, with the fields Whisper-compatible APIs expose."""

    id: int
    start: float
    end: float
    text: str
    seek: int = 0
    tokens: tuple[int, ...] = ()
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: tuple[Word, ...] | None = None

    def moved(self, seconds: float, frames: int, id: int | None = None) -> Segment:  # noqa: A002 (the field's name)
        """This segment, and its words, ``seconds`` later: on a longer recording whose
        feature frames (``seek``) start ``frames`` earlier; numbered ``id`` if given."""
        words = self.words
        if words is not None:
            words = tuple(dataclasses.replace(w, start=w.start + seconds, end=w.end + seconds) for w in words)
        return dataclasses.replace(
            self,
            id=self.id if id is None else id,
            start=self.start + seconds,
            end=self.end + seconds,
            seek=self.seek + frames,
            words=words,
        )


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds spent: waiting in the queue, in the model, and from submit to result."""

    queue_wait_s: float = 0.0
    inference_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True, slots=True)
class TranscriptionResult:
    """What one transcription returns.

    ``window`` says which encoder window answered: ``"short"`` (sized to the audio),
    ``"full"`` (30 s), or ``"none"`` when there was no speech to decode (see
    ``DecodeOptions.speech_gate``); ``fallback`` names why a short window was rejected (one of
    ``FALLBACK_REASONS``), or is None. ``retried`` (one of ``RETRIED_REASONS``) names why the short window's first pass
    was rejected when a retry on the short window answered (``fallback`` is then None:
    no full window ran), or is None. ``pieces``: how many pieces a long recording was
    decoded in (see ``PoolConfig.split_above_s``); 1 for audio decoded whole, 0 for a
    recording without speech.
    """

    text: str
    segments: tuple[Segment, ...]
    language: str | None
    language_probability: float
    duration: float
    worker_id: int = -1
    timings: Timings = Timings()
    window: str = "full"
    fallback: str | None = None
    retried: str | None = None
    pieces: int = 1
    warnings: tuple[str, ...] = ()  # e.g. a file shorter than its header says: decoded as far as it goes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# One JSON Lines record per file, the same from every face that writes them
# (``whisperpool transcribe --json`` and ``whisperpool ray transcribe``), so their outputs
# can be merged, compared and resumed from one another.
def file_record(file: str, result: TranscriptionResult) -> dict[str, Any]:
    """``file``'s transcript as one JSON Lines record."""
    data = result.to_dict()
    keys = ("text", "language", "duration", "segments", "worker_id", "timings")
    return {"file": file, **{key: data[key] for key in keys}}


def error_record(file: str, error: BaseException) -> dict[str, Any]:
    """Why ``file`` failed, as one JSON Lines record."""
    return {"file": file, "error": {"type": type(error).__name__, "message": str(error)}}


__all__ = [
    "FALLBACK_REASONS",
    "RETRIED_REASONS",
    "Segment",
    "Timings",
    "TranscriptionResult",
    "Word",
    "error_record",
    "file_record",
]
