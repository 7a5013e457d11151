"""The real backend: faster-whisper (CTranslate2) on the CPU or a GPU."""

from __future__ import annotations

import numpy as np

from ..config import DecodeOptions
from ..errors import ModelError
from ..results import Segment, TranscriptionResult, Word
from . import BackendSpec, SegmentCallback


def _segment(seg) -> Segment:  # faster_whisper.transcribe.Segment -> ours
    words = None
    if seg.words is not None:
        words = tuple(Word(w.start, w.end, w.word, w.probability) for w in seg.words)
    return Segment(
        id=seg.id,
        start=seg.start,
        end=seg.end,
        text=seg.text,
        seek=seg.seek,
        tokens=tuple(seg.tokens),
        temperature=seg.temperature if seg.temperature is not None else 0.0,
        avg_logprob=seg.avg_logprob,
        compression_ratio=seg.compression_ratio,
        no_speech_prob=seg.no_speech_prob,
        words=words,
    )


class FasterWhisperBackend:
    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        self.model = None

    def load(self) -> None:
        from faster_whisper import WhisperModel

        try:
            self.model = WhisperModel(
                self.spec.model,
                device=self.spec.device,
                compute_type=self.spec.compute_type,
                cpu_threads=self.spec.cpu_threads,
                num_workers=1,
            )
        except Exception as exc:
            raise ModelError(f"cannot load model {self.spec.model!r}: {exc}") from exc

    def transcribe(
        self, audio: np.ndarray, options: DecodeOptions, on_segment: SegmentCallback | None = None
    ) -> TranscriptionResult:
        assert self.model is not None, "load() first"
        segments_iter, info = self.model.transcribe(audio, **options.to_faster_whisper())
        segments = []
        for raw in segments_iter:  # a generator: each segment is decoded as we iterate
            seg = _segment(raw)
            segments.append(seg)
            if on_segment is not None:
                on_segment(seg)
        return TranscriptionResult(
            text="".join(s.text for s in segments).strip(),
            segments=tuple(segments),
            language=info.language,
            language_probability=info.language_probability,
            duration=info.duration,
        )
