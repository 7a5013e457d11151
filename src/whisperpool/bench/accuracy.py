"""``whisperpool bench --accuracy``: word error rate on a varied dev set, ``auto`` vs ``full``, streams vs offline.

The set (``bench/clips/eval/``, rendered by ``scripts/make_eval_set.py``) is 306 clips
in two batches: English commands, numbers, names, dates, templated requests, passages
of the Python manual and sentences of the standard library's docstrings in 24
espeak-ng voices, at 1, 3, 5, 7, 10 and 20 s, clean and mixed with white, pink and
brown noise, babble and music at known SNRs, and a few clean clips in German, Spanish,
French, Italian, Portuguese and Dutch. Each clip is in one half: ``tune`` (settings may
be chosen on it) or ``held-out`` (only reported), 153 clips and about 2,000 reference
words each; the targets are measured on ``held-out``. ``--split`` runs one half only.

Offline: one warm worker (a pool of one, all the machine's cores) transcribes every clip
with ``window="full"`` and ``window="auto"`` (which goes first alternates), in the clip's
language. Reported by split and length class, condition and language: the WER of both
(errors summed over the group's reference words), the difference, how many ``auto``
decodings the guard sent to the full window, and the median full / auto inference time.

Streaming: each clip of the 3, 5 and 10 s classes of the streamed splits (``held-out``
by default) is played after 0.5 s of silence at real-time pace, in 100 ms chunks, into
a session on a pool of the default layout (two workers, as ``bench --streaming``
measures streams), with the session's VAD (:func:`~whisperpool.streaming.client.play_local`,
as ``bench --streaming`` does). Reported: the WER of its finals beside offline ``auto``
and ``full`` on the same clips, the final latency after the end of the voice (from the
clean rendering; the noise goes on to the clip's end), and how many finals the guard sent
to the full window. The session is given the pool behind a thin wrapper that sees the
results of the final decodings (``window="auto"``; partials use ``"short"``), since
stream events do not say which window answered; the pool's ``window_fallbacks``
counters, before and after, give the fallbacks of all the stream's decodings.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from concurrent.futures import Future
from typing import Any

import numpy as np
from rich.console import Console

from .. import DecodeOptions, PoolConfig, ProcessPool, StreamingSession, TranscriptionEngine
from ..audio import SAMPLE_RATE, load_audio
from ..config import available_cores
from ..results import TranscriptionResult
from ..streaming.client import play_local
from ..wer import normalize, word_error_rate
from . import BenchOptions
from .common import CLIPS, Target, header, median, pct, table

EVAL = CLIPS / "eval"
LENGTHS = (1, 3, 5, 7, 10, 20)
STREAMED_LENGTHS = (3, 5, 10)
LEAD_S = 0.5  # silence before a streamed clip
COMPLETED = "conversation.item.input_audio_transcription.completed"
SPLITS = ("held-out", "tune")
# --quick: a few clips, for tests
QUICK = ("en-01s-clean-1", "en-03s-pink-10db-1", "en-05s-babble-10db-0", "de-03s-clean-1")
QUICK_STREAMED = ("en-03s-pink-10db-1",)


def eval_set() -> dict[str, dict[str, Any]]:
    """``eval.json``: per clip name, its reference text, language, voice, length class, condition, split, ..."""
    return json.loads((EVAL / "eval.json").read_text())


class _FinalsSeen:
    """The pool as a streaming session sees it, keeping the results of its final decodings."""

    def __init__(self, pool: ProcessPool) -> None:
        self._pool = pool
        self.finals: list[TranscriptionResult] = []

    def submit(self, audio: np.ndarray, options: DecodeOptions, **kwargs: Any) -> Future[TranscriptionResult]:
        future = self._pool.submit(audio, options, **kwargs)
        if options.window != "short":  # partials ask for the short window only
            future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[TranscriptionResult]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.finals.append(future.result())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def _fallbacks(engine: TranscriptionEngine) -> Counter[str]:
    return Counter(engine.status().window_fallbacks)


async def _stream_one(engine: TranscriptionEngine, audio: np.ndarray, meta: dict[str, Any]) -> dict[str, Any]:
    seen = _FinalsSeen(engine.pool)
    session = StreamingSession(seen, engine.pool.config.decode.replace(language=meta["language"]))  # type: ignore[arg-type]
    before = _fallbacks(engine)
    played = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), audio])
    finals = [(t, e) for t, e in [x async for x in play_local(session, played)] if e["type"] == COMPLETED]
    speech_end = LEAD_S + meta["speech_end_s"]
    return {
        "text": " ".join(e["transcript"] for _, e in finals),
        "finals": len(finals),
        "latency_s": finals[-1][0] - speech_end if finals else None,
        "after_clip_end_s": finals[-1][0] - LEAD_S - meta["seconds"] if finals else None,
        "final_windows": [r.window for r in seen.finals],
        "final_fallbacks": [r.fallback for r in seen.finals if r.fallback is not None],
        "final_retries": [r.retried for r in seen.finals if r.retried is not None],
        "all_fallbacks": dict(_fallbacks(engine) - before),
    }


def chosen(clips: dict[str, dict[str, Any]], options: BenchOptions) -> tuple[list[str], list[str]]:
    """The clips to transcribe (those of ``options.splits``) and, of them, those to stream."""
    if options.quick:
        return list(QUICK), list(QUICK_STREAMED)
    names = sorted(n for n, c in clips.items() if c["split"] in options.splits)
    streamed = [
        n for n in names if clips[n]["length_class"] in STREAMED_LENGTHS and clips[n]["split"] in options.stream_splits
    ]
    return names, streamed


async def _measure(options: BenchOptions, log: Console) -> dict[str, Any]:
    clips = eval_set()
    names, streamed = chosen(clips, options)
    threads = available_cores()
    decode = DecodeOptions(language="en")
    out: dict[str, Any] = header()
    out["settings"] = {
        "model": "base (packaged)",
        "compute_type": "int8",
        "workers": 1,
        "threads": threads,
        "stream_workers": PoolConfig().pool_size,
        "beam_size": decode.beam_size,
        "short_window_max_s": decode.short_window_max_s,
        "quick": options.quick,
        "splits": list(options.splits),
        "stream_splits": list(options.stream_splits),
        "streamed_lengths": list(STREAMED_LENGTHS),
        "stream_lead_s": LEAD_S,
    }
    entries: dict[str, dict[str, Any]] = {}
    async with TranscriptionEngine(
        PoolConfig(pool_size=1, threads_per_worker=threads, express_workers=0, decode=decode)
    ) as engine:
        log.print(f"[dim]offline: {len(names)} clips, full and auto ...[/dim]")
        for i, name in enumerate(names):
            meta = clips[name]
            audio = load_audio(EVAL / f"{name}.opus")
            entry: dict[str, Any] = {"name": name} | meta
            order = ("full", "auto") if i % 2 == 0 else ("auto", "full")
            for window in order:
                opts = decode.replace(language=meta["language"], window=window)
                result = await engine.transcribe(audio, options=opts, timeout=600)
                entry[window] = {
                    "text": result.text,
                    "window": result.window,
                    "fallback": result.fallback,
                    "inference_s": round(result.timings.inference_s, 3),
                }
            entries[name] = entry
            if (i + 1) % 20 == 0:
                log.print(f"[dim]  {i + 1}/{len(names)}[/dim]")
    # The streams run on the default layout, as a server's do and as bench --streaming
    # measures them: on a pool of one, a final waits for the partial being decoded,
    # while with two it goes to the other worker.
    async with TranscriptionEngine(PoolConfig(express_workers=0, decode=decode)) as engine:
        log.print(f"[dim]streaming: {len(streamed)} clips at real-time pace ...[/dim]")
        for i, name in enumerate(streamed):
            audio = load_audio(EVAL / f"{name}.opus")
            entries[name]["stream"] = await _stream_one(engine, audio, clips[name])
            if (i + 1) % 10 == 0:
                log.print(f"[dim]  {i + 1}/{len(streamed)}[/dim]")
    out["clips"] = list(entries.values())
    return out


def measure(options: BenchOptions, log: Console) -> dict[str, Any]:
    return asyncio.run(_measure(options, log))


# -- summaries ----------------------------------------------------------------------------
def _wer(entries: list[dict[str, Any]], text: Any) -> float:
    """Errors over reference words, summed over ``entries``; ``text(entry)`` is the hypothesis."""
    words = sum(len(normalize(e["text"])) for e in entries)
    errors = sum(word_error_rate(e["text"], text(e)) * len(normalize(e["text"])) for e in entries)
    return 100.0 * errors / words if words else float("nan")


def _clip_wer(entry: dict[str, Any], window: str) -> float:
    return word_error_rate(entry["text"], entry[window]["text"])


def _bootstrap(entries: list[dict[str, Any]], draws: int = 2000) -> tuple[float, float]:
    """A 95% interval of auto - full WER points, clips resampled with replacement (paired, seeded)."""
    words = np.array([len(normalize(e["text"])) for e in entries], dtype=float)
    diff = np.array([(_clip_wer(e, "auto") - _clip_wer(e, "full")) for e in entries]) * words
    picks = np.random.default_rng(0).integers(0, len(entries), size=(draws, len(entries)))
    points = 100.0 * diff[picks].sum(axis=1) / np.maximum(words[picks].sum(axis=1), 1)
    low, high = np.percentile(points, [2.5, 97.5])
    return round(float(low), 2), round(float(high), 2)


def group(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """WER full and auto, their difference, clips worse and better under auto, auto's fallbacks, full / auto time."""
    if not entries:
        return {"clips": 0}
    full = _wer(entries, lambda e: e["full"]["text"])
    auto = _wer(entries, lambda e: e["auto"]["text"])
    return {
        "clips": len(entries),
        "words": sum(len(normalize(e["text"])) for e in entries),
        "wer_full": full,
        "wer_auto": auto,
        "auto_minus_full": auto - full,
        "auto_fallbacks": sum(e["auto"]["fallback"] is not None for e in entries),
        # paired, clip by clip: how many lost words under auto, how many gained, how many came back empty
        "auto_worse": sum(_clip_wer(e, "auto") > _clip_wer(e, "full") for e in entries),
        "auto_better": sum(_clip_wer(e, "auto") < _clip_wer(e, "full") for e in entries),
        "auto_empty": sum(not normalize(e["auto"]["text"]) and bool(normalize(e["full"]["text"])) for e in entries),
        "auto_minus_full_ci95": _bootstrap(entries),
        "full_over_auto": median([e["full"]["inference_s"] / max(e["auto"]["inference_s"], 1e-6) for e in entries]),
    }


def streams(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Streaming finals over the streamed ``entries``: WER against offline, latency, fallbacks."""
    played = [e for e in entries if "stream" in e]
    if not played:
        return {"clips": 0}
    latencies = [e["stream"]["latency_s"] if e["stream"]["latency_s"] is not None else float("inf") for e in played]
    finals = sum(len(e["stream"]["final_windows"]) for e in played)
    fell_back = sum(len(e["stream"]["final_fallbacks"]) for e in played)
    reasons = Counter(r for e in played for r in e["stream"]["final_fallbacks"])
    return {
        "clips": len(played),
        "wer_stream": _wer(played, lambda e: e["stream"]["text"]),
        "wer_auto": _wer(played, lambda e: e["auto"]["text"]),
        "wer_full": _wer(played, lambda e: e["full"]["text"]),
        "latency_p50_s": median(latencies),
        "latency_p95_s": pct(latencies, 95),
        "finals": finals,
        "final_fallbacks": fell_back,
        "final_fallback_pct": 100.0 * fell_back / finals if finals else 0.0,
        "final_fallback_reasons": dict(reasons),
        # mended by a retry on the short window (older results lack the key)
        "final_retries": sum(len(e["stream"].get("final_retries", ())) for e in played),
        "missing_finals": sum(e["stream"]["latency_s"] is None for e in played),
    }


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """Per split: overall, by length class, by condition, by language; and the streams."""
    out: dict[str, Any] = {}
    for split in SPLITS:
        mine = [e for e in r["clips"] if e["split"] == split]
        out[split] = {
            "all": group(mine),
            "length": {str(n): group([e for e in mine if e["length_class"] == n]) for n in LENGTHS},
            "condition": {c: group([e for e in mine if e["condition"] == c]) for c in _ordered(r, "condition")},
            "language": {c: group([e for e in mine if e["language"] == c]) for c in _ordered(r, "language")},
            "streams": streams(mine),
            "streams_by_length": {
                str(n): streams([e for e in mine if e["length_class"] == n]) for n in STREAMED_LENGTHS
            },
            # babble keeps the VAD hearing speech after the voice: its latency apart
            "streams_by_condition": {
                c: streams([e for e in mine if e["condition"] == c]) for c in _ordered(r, "condition")
            },
        }
    return out


def _ordered(r: dict[str, Any], key: str) -> list[str]:
    return list(dict.fromkeys(e[key] for e in sorted(r["clips"], key=lambda e: e["snr_db"] or 99, reverse=True)))


def targets(r: dict[str, Any]) -> list[Target]:
    held = summary(r)["held-out"]
    s = held["streams"]
    if not held["all"]["clips"]:  # --split tune: nothing to report against the targets
        return []
    found = [Target("held-out: WER of auto minus WER of full", held["all"]["auto_minus_full"], 0.3, False, "points")]
    if s["clips"]:
        found += [
            Target("held-out: stream final after the end of speech, p95", s["latency_p95_s"], 0.8, False, "s"),
            Target(
                "held-out: stream finals that fell back to the full window", s["final_fallback_pct"], 2.0, False, "%"
            ),
        ]
    return found


# -- report -------------------------------------------------------------------------------
def _f(value: Any, digits: int = 1) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def _group_table(title: str, rows: dict[str, dict[str, dict[str, Any]]], out: Console) -> None:
    t = table(
        title,
        ("", "clips", "full", "auto", "diff", "worse/better", "fb", "time x", "tune full", "auto", "diff"),
    )
    for key, by_split in rows.items():
        h, tune = by_split["held-out"], by_split["tune"]
        if not h["clips"] and not tune["clips"]:
            continue
        t.add_row(
            key,
            f"{h['clips']} + {tune['clips']}",
            _f(h.get("wer_full")),
            _f(h.get("wer_auto")),
            _f(h.get("auto_minus_full"), 2),
            f"{h['auto_worse']}/{h['auto_better']}" if h["clips"] else "",
            str(h.get("auto_fallbacks", "")),
            _f(h.get("full_over_auto"), 2),
            _f(tune.get("wer_full")),
            _f(tune.get("wer_auto")),
            _f(tune.get("auto_minus_full"), 2),
        )
    out.print(t, width=max(out.width, 130))


def report(r: dict[str, Any], out: Console) -> None:
    s = summary(r)
    held, tune = s["held-out"], s["tune"]
    both = lambda part, key: {"held-out": held[part][key], "tune": tune[part][key]}  # noqa: E731
    title = "WER % held-out (clips held-out + tune; diff auto - full; worse/better: clips; fb auto's fallbacks; time x full / auto)"
    _group_table(f"{title}, by length class", {f"{n} s": both("length", str(n)) for n in LENGTHS}, out)
    _group_table(f"{title}, by condition", {c: both("condition", c) for c in held["condition"]}, out)
    languages = {c: both("language", c) for c in held["language"]} | {
        "all": {"held-out": held["all"], "tune": tune["all"]}
    }
    _group_table(f"{title}, by language", languages, out)
    t = table(
        "live streams (3-10 s clips): WER of finals, offline auto, full; final after end of speech",
        ("", "clips", "WER finals", "auto", "full", "p50 s", "p95 s", "fell back", "reasons", "retried"),
    )
    for split in SPLITS:
        rows = (
            {"all": s[split]["streams"]}
            | {f"{n} s": s[split]["streams_by_length"][n] for n in map(str, STREAMED_LENGTHS)}
            | s[split]["streams_by_condition"]
        )
        for key, v in rows.items():
            if not v["clips"]:
                continue
            t.add_row(
                f"{split} {key}",
                str(v["clips"]),
                _f(v["wer_stream"]),
                _f(v["wer_auto"]),
                _f(v["wer_full"]),
                _f(v["latency_p50_s"], 2),
                _f(v["latency_p95_s"], 2),
                f"{v['final_fallbacks']}/{v['finals']}",
                ", ".join(f"{k} {n}" for k, n in v["final_fallback_reasons"].items()),
                str(v.get("final_retries", "")),
            )
    out.print(t, width=max(out.width, 130))
