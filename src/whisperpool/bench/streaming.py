"""``whisperpool bench --streaming``: live transcription latency, accuracy and capacity.

A stream of 17 sentences with a pause after each (the short fixtures and two example
clips, about 80 s) is played at real-time pace, in 100 ms chunks, into streaming sessions on a
warm pool of 2 single-thread workers (the default on 2 cores). Measured:

* final latency - from the end of each sentence's audio (when its last chunk was fed)
  to its final text; median and p95
* time to first partial - from the start of a sentence to its first non-empty text
* WER of the joined finals against the texts, beside the WER of an offline
  transcription of the same audio (the full stream at once, as a file)
* capacity - 1, 2, 3 ... concurrent streams (started 0.3 s apart), until the p95 final
  latency is 2 s or more; the most streams that stayed under 2 s
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .. import DecodeOptions, PoolConfig, TranscriptionEngine
from ..audio import load_audio
from ..streaming.client import play_local
from ..wer import word_error_rate
from . import BenchOptions
from .common import CLIPS, Target, header, median, pct

SAMPLE_RATE = 16_000
PAUSE_S = 1.0
SENTENCES = [
    "short/s5-brother",
    "short/s3-pasta",
    "groceries",
    "short/s5-window",
    "short/s1-lights",
    "short/s3-station",
    "fox",
    "short/s5-heating",
    "short/s3-photos",
    "short/s5-meeting",
    "short/s1-keys",
    "short/s3-umbrella",
    "short/s5-news",
    "short/s3-plants",
    "short/s1-alarm",
    "short/s5-river",
    "short/s3-coffee",
]
MAX_STREAMS = 5
LATENCY_LIMIT_S = 2.0
COMPLETED = "conversation.item.input_audio_transcription.completed"


def stream_audio() -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """The sentences with pauses, and each one's (start, end, text)."""
    texts = json.loads((CLIPS / "texts.json").read_text())
    texts |= {f"short/{k}": v for k, v in json.loads((CLIPS / "short" / "texts.json").read_text()).items()}
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)
    pieces, spans, t = [pause[: SAMPLE_RATE // 2]], [], 0.5
    for name in SENTENCES:
        audio = load_audio(CLIPS / f"{name}.wav")
        pieces += [audio, pause]
        spans.append((t, t + audio.size / SAMPLE_RATE, texts[name]))
        t += audio.size / SAMPLE_RATE + PAUSE_S
    return np.concatenate(pieces), spans


def _per_sentence(events: list[tuple[float, dict]], spans, delay: float) -> list[dict[str, Any]]:
    """For each sentence: its final latency, time to first partial, and final text.

    A final belongs to the sentence its audio overlaps most (the VAD may split one).
    """
    out = [{"finals": [], "final_at": None, "first_partial_at": None} for _ in spans]
    items: dict[str, int] = {}
    for t, e in events:
        if e["type"] == COMPLETED:
            overlap = [min(e["end_s"], end) - max(e["start_s"], start) for start, end, _ in spans]
            i = int(np.argmax(overlap))
            items[e["item_id"]] = i
            out[i]["finals"].append(e["transcript"])
            out[i]["final_at"] = t - delay
    for t, e in events:  # partials are matched by the time they arrive
        if e["type"] == "partial" and e["text"].strip():
            i = items.get(e["item_id"])
            if i is not None and out[i]["first_partial_at"] is None:
                out[i]["first_partial_at"] = t - delay
    rows = []
    for (start, end, text), o in zip(spans, out, strict=True):
        rows.append(
            {
                "reference": text,
                "final": " ".join(o["finals"]),
                "final_latency_s": None if o["final_at"] is None else o["final_at"] - end,
                "first_partial_s": None if o["first_partial_at"] is None else o["first_partial_at"] - start,
            }
        )
    return rows


async def _streams(engine: TranscriptionEngine, audio: np.ndarray, spans, count: int) -> list[list[dict[str, Any]]]:
    async def one(i: int) -> list[dict[str, Any]]:
        await asyncio.sleep(0.3 * i)
        events = [r async for r in play_local(engine.stream(), audio)]
        return _per_sentence(events, spans, 0.0)

    return await asyncio.gather(*(one(i) for i in range(count)))


def _latencies(runs: list[list[dict[str, Any]]], key: str) -> list[float]:
    return [row[key] if row[key] is not None else float("inf") for run in runs for row in run]


async def _measure(options: BenchOptions, log: Console) -> dict[str, Any]:
    audio, spans = stream_audio()
    decode = DecodeOptions(language=options.language)
    out: dict[str, Any] = header()
    out["settings"] = {
        "workers": 2,
        "threads_per_worker": 1,
        "language": options.language,
        "stream_seconds": round(audio.size / SAMPLE_RATE, 1),
        "sentences": len(spans),
        "pause_s": PAUSE_S,
        "update_interval_s": 0.5,
        "vad_min_silence_s": 0.4,
    }
    async with TranscriptionEngine(
        PoolConfig(pool_size=2, threads_per_worker=1, express_workers=0, decode=decode)
    ) as engine:
        log.print("[dim]offline: the whole stream as one file ...[/dim]")
        offline = await engine.transcribe(audio, options=decode.replace(window="full"))
        out["offline_text"] = offline.text
        out["runs"] = {}
        for count in range(1, MAX_STREAMS + 1):
            log.print(f"[dim]{count} concurrent stream(s) at real-time pace ...[/dim]")
            runs = await _streams(engine, audio, spans, count)
            out["runs"][str(count)] = runs
            if pct(_latencies(runs, "final_latency_s"), 95) >= LATENCY_LIMIT_S:
                break
    return out


def measure(options: BenchOptions, log: Console) -> dict[str, Any]:
    return asyncio.run(_measure(options, log))


def _reference(r: dict[str, Any]) -> str:
    return " ".join(row["reference"] for row in r["runs"]["1"][0])


def summary(r: dict[str, Any]) -> dict[str, Any]:
    single = r["runs"]["1"]
    finals = " ".join(row["final"] for row in single[0])
    by_count = {}
    for count, runs in r["runs"].items():
        lat = _latencies(runs, "final_latency_s")
        by_count[int(count)] = {"p50": median(lat), "p95": pct(lat, 95)}
    sustained = max((c for c, v in by_count.items() if v["p95"] < LATENCY_LIMIT_S), default=0)
    return {
        "final_p50_s": median(_latencies(single, "final_latency_s")),
        "final_p95_s": pct(_latencies(single, "final_latency_s"), 95),
        "first_partial_p50_s": median(_latencies(single, "first_partial_s")),
        "wer_streaming": 100 * word_error_rate(_reference(r), finals),
        "wer_offline": 100 * word_error_rate(_reference(r), r["offline_text"]),
        "by_count": by_count,
        "sustained_streams": sustained,
    }


def targets(r: dict[str, Any]) -> list[Target]:
    s = summary(r)
    return [
        Target("one stream: median latency from end of speech to final", s["final_p50_s"], 0.8, False, "s"),
        Target(
            "WER of joined finals minus WER of offline transcription",
            s["wer_streaming"] - s["wer_offline"],
            3.0,
            False,
            "points",
        ),
        Target(
            f"concurrent real-time streams with p95 final latency < {LATENCY_LIMIT_S:.0f} s",
            s["sustained_streams"],
            2,
            True,
            "streams",
        ),
    ]


def report(r: dict[str, Any], out: Console) -> None:
    s = summary(r)
    one = Table(title=f"one live stream ({r['settings']['stream_seconds']} s, {r['settings']['sentences']} sentences)")
    one.add_column("measure")
    one.add_column("value", justify="right")
    one.add_row("final latency after end of speech, median s", f"{s['final_p50_s']:.2f}")
    one.add_row("final latency after end of speech, p95 s", f"{s['final_p95_s']:.2f}")
    one.add_row("first partial after start of speech, median s", f"{s['first_partial_p50_s']:.2f}")
    one.add_row("WER of joined finals, %", f"{s['wer_streaming']:.1f}")
    one.add_row("WER of offline transcription (full window), %", f"{s['wer_offline']:.1f}")
    out.print(one)
    many = Table(title="concurrent streams (2 single-thread workers)")
    for col in ("streams", "final latency p50 s", "p95 s"):
        many.add_column(col, justify="right")
    for count, v in s["by_count"].items():
        many.add_row(str(count), f"{v['p50']:.2f}", f"{v['p95']:.2f}")
    out.print(many)
