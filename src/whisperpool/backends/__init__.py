"""Backends: what a worker process runs. One small protocol, three implementations.

``faster-whisper`` runs the real model (CTranslate2); ``whispercpp`` runs it on
whisper.cpp, from a ggml file; ``fake`` drives the pool's mechanics and its
failures (slow loads, crashes, hangs) in tests. A backend lives inside one worker
process and is never shared between threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..config import DecodeOptions
from ..results import Segment, TranscriptionResult
from ..worker.protocol import BackendSpec

SegmentCallback = Callable[[Segment], None]


class Backend(Protocol):
    def load(self) -> None:
        """Load the model (once, at warm-up)."""

    def warm_up(self, options: DecodeOptions) -> tuple[str, ...]:
        """Dummy inference on silence along every path requests with ``options`` take.

        Returns the windows it warmed: ``("short", "full")`` for ``window="auto"``.
        """

    def transcribe(
        self, audio: np.ndarray, options: DecodeOptions, on_segment: SegmentCallback | None = None
    ) -> TranscriptionResult:
        """Transcribe 16 kHz mono float32 samples; call ``on_segment`` as segments decode."""

    def transcribe_pieces(
        self, audio: np.ndarray, pieces: tuple[Piece, ...], options: DecodeOptions
    ) -> TranscriptionResult:
        """Decode the ``pieces`` of ``audio`` (speech cut at silences, each at most one
        window) as one batch; segments on ``audio``'s timeline, in order."""

    def plan(
        self, audio: np.ndarray, options: DecodeOptions, max_piece_s: float, detect_language: bool = True
    ) -> tuple[tuple[Piece, ...], str | None, float]:
        """Find the speech in (a part of) a long recording: its regions, in order, none
        longer than ``max_piece_s`` (the pool groups them into pieces); and the language
        (``options.language``, or detected on the first speech when ``detect_language``,
        else None) and its probability."""


Piece = tuple[int, int]  # (start, end) sample indices


def create_backend(spec: BackendSpec) -> Backend:
    if spec.name == "fake":
        from .fake import FakeBackend

        return FakeBackend(spec)
    if spec.name == "whispercpp":
        from .whispercpp import WhisperCppBackend

        return WhisperCppBackend(spec)
    from .faster_whisper import FasterWhisperBackend

    return FasterWhisperBackend(spec)


__all__ = ["Backend", "BackendSpec", "Piece", "SegmentCallback", "create_backend"]
