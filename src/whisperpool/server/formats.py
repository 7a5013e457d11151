"""Response formats of the transcription endpoint: json, text, srt, vtt, verbose_json."""

from __future__ import annotations

from typing import Any, Literal

from ..results import TranscriptionResult

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
FORMATS: tuple[str, ...] = ("json", "text", "srt", "vtt", "verbose_json")
TIMED: frozenset[str] = frozenset({"srt", "vtt", "verbose_json"})  # the formats that show segments' times


def _clock(seconds: float, sep: str) -> str:
    ms = int(round(max(seconds, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(result: TranscriptionResult) -> str:
    blocks = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(result.segments, start=1)
    ]
    return "\n".join(blocks)


def vtt(result: TranscriptionResult) -> str:
    blocks = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n" for s in result.segments]
    return "WEBVTT\n\n" + "\n".join(blocks)


def usage(result: TranscriptionResult) -> dict[str, Any]:
    return {"type": "duration", "seconds": round(result.duration, 3)}


def json_body(result: TranscriptionResult) -> dict[str, Any]:
    return {"text": result.text, "usage": usage(result)}


def verbose_json(result: TranscriptionResult, *, task: str, words: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task,
        "language": result.language,
        "duration": result.duration,
        "text": result.text,
        "segments": [
            {
                "id": i,
                "seek": s.seek,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": list(s.tokens),
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for i, s in enumerate(result.segments)
        ],
        "usage": usage(result),
    }
    if words:
        body["words"] = [
            {"word": w.word.strip(), "start": w.start, "end": w.end} for s in result.segments for w in (s.words or ())
        ]
    if result.warnings:  # ours, not OpenAI's: e.g. a truncated file, decoded as far as it went
        body["warnings"] = list(result.warnings)
    return body
