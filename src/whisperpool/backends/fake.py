"""A fake backend for tests of the pool's mechanics: no model, controllable failures.

It "transcribes" by describing the audio it got, so tests can check which request got
which answer. ``FakeBehavior`` tells it to load slowly, fail or crash or hang at warm-up
(per worker slot), and to crash, hang or raise on audio that starts with a marker value.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np

from ..config import DecodeOptions
from ..results import Segment, TranscriptionResult
from . import BackendSpec, SegmentCallback

SAMPLE_RATE = 16_000


def _hang() -> None:
    threading.Event().wait()  # until the parent kills us


def _crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class FakeBackend:
    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        self.behavior = spec.fake
        self.loaded = False

    def load(self) -> None:
        slot = self.spec.slot
        time.sleep(self.behavior.load_delay_s)
        if slot in self.behavior.crash_warmup_workers:
            _crash()
        if slot in self.behavior.hang_warmup_workers:
            _hang()
        if slot in self.behavior.fail_warmup_workers:
            raise RuntimeError(f"fake load failure in worker slot {slot}")
        if slot in self.behavior.flaky_warmup_workers and time.time() < self.behavior.flaky_until:
            raise RuntimeError(f"fake flaky load failure in worker slot {slot}")
        self.loaded = True

    def warm_up(self, options: DecodeOptions) -> tuple[str, ...]:
        windows = ("short", "full") if options.window == "auto" else (options.window,)
        for window in windows:  # one inference delay per window, as the real backend
            self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), options.replace(window=window))
        return windows

    def transcribe(
        self, audio: np.ndarray, options: DecodeOptions, on_segment: SegmentCallback | None = None
    ) -> TranscriptionResult:
        assert self.loaded, "load() first"
        first = float(audio[0]) if audio.size else 0.0
        if first == self.behavior.crash_marker:
            _crash()
        if first == self.behavior.hang_marker:
            _hang()
        if first == self.behavior.error_marker:
            raise ValueError("fake backend was told to fail on this audio")
        time.sleep(self.behavior.inference_delay_s)
        duration = audio.size / SAMPLE_RATE
        text = f"{audio.size} samples"
        marked = {self.behavior.fallback_marker: "log_probability", self.behavior.retry_marker: "repetition"}
        if options.window == "short" and first in marked:  # as the real guard: rejected, not decoded again
            return TranscriptionResult("", (), options.language, 0.0, duration, window="short", fallback=marked[first])
        segment = Segment(id=1, start=0.0, end=duration, text=text)
        if on_segment is not None:
            on_segment(segment)
        auto = options.window == "auto" and duration <= options.short_window_max_s
        short = auto or options.window == "short"
        fell = auto and first == self.behavior.fallback_marker and options.low_confidence_fallback
        fallback = "log_probability" if fell else None
        retried = "repetition" if auto and first == self.behavior.retry_marker else None  # window="short" never retries
        return TranscriptionResult(
            text=text,
            segments=(segment,),
            language=options.language or "en",
            language_probability=1.0,
            duration=duration,
            window="short" if short and fallback is None else "full",
            fallback=fallback,
            retried=retried,
        )

    def plan(self, audio: np.ndarray, options: DecodeOptions, max_piece_s: float, detect_language: bool = True):
        """Every sample is speech: regions of ``max_piece_s`` back to back (the last shorter)."""
        assert self.loaded, "load() first"
        time.sleep(self.behavior.inference_delay_s)
        step = int(max_piece_s * SAMPLE_RATE)
        regions = tuple((i, min(i + step, audio.size)) for i in range(0, audio.size, step))
        return regions, options.language or ("en" if detect_language else None), 1.0

    def transcribe_pieces(self, audio: np.ndarray, pieces, options: DecodeOptions) -> TranscriptionResult:
        """One segment per piece, describing it (markers as in :meth:`transcribe`, per piece)."""
        assert self.loaded, "load() first"
        segments = []
        for i, (start, end) in enumerate(pieces, 1):
            piece = self.transcribe(audio[start:end], options)
            segments.append(Segment(id=i, start=start / SAMPLE_RATE, end=end / SAMPLE_RATE, text=piece.text))
        return TranscriptionResult(
            text=" ".join(s.text for s in segments),
            segments=tuple(segments),
            language=options.language or "en",
            language_probability=1.0,
            duration=audio.size / SAMPLE_RATE,
            window="full",
        )
