"""Speculative finals on live streams: final latency and WER with and without them.

python scripts/tune_speculative.py [--split tune|held-out] [--tails none,0.1,0.2:nohold] [--limit N] [--output FILE]

Every clip ``bench --accuracy`` streams (3, 5 and 10 s) of the split is played after
0.5 s of silence at real-time pace into a real :class:`~whisperpool.StreamingSession`
(its real VAD) on a real pool of the default layout (two workers, one thread each), as
``bench --accuracy`` streams it, once per ``final_tail_s`` setting, the settings
alternating in order clip by clip so that a busy moment of a shared machine falls on
both. ``none`` is the session before speculative finals: the final is sent after the
VAD's stop (0.4 s of silence) and decodes the audio to the stop time (last speech frame
+ 0.3 s). Per setting: final latency after the end of the voice (the last final of the
clip, as ``bench --accuracy`` counts it) p50/p95, WER of the finals over the references,
and the decodings sent with the final's options (speculative ones included) per final.

A setting ``T:nohold`` is ``final_tail_s=T`` with partials sent in a pause as before
they were held (a partial that fell due while the VAD heard silence after speech was
sent then, beside the speculative final); ``finals-partial-hold-tune.json`` compares
``0.2:nohold`` with ``0.2``. A flag ``:nogate`` turns the VAD's foreground gate off
(``vad_foreground_db=None``: every speech frame is the speaker's, background voices
too); ``finals-foreground-tune.json`` compares ``0.2:nogate`` with ``0.2``. A flag
``:beamN`` sets ``final_beam_size=N`` (``finals-beam-tune.json``: ``0.2:beam5`` against
``0.2:beam3``), ``:bufS`` ``max_buffer_s=S`` (``finals-buffer-tune.json``: ``0.2``
against ``0.2:buf5``). ``:nopause`` turns the room's pause off (``vad_room_pause_s=None``:
under background voices the turn waits for Silero's silence), ``:words`` decodes finals
with word times as before 2026-11-28 (``finals-room-pause-tune.json``: ``0.2:nopause:words``
against ``0.2``). All decodings are counted too (``decodes``).

Written: ``benchmarks/results/finals-speculative-<split>.json``. Decide on ``tune``;
``held-out`` is run once, to report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

from whisperpool import DecodeOptions, PoolConfig, StreamingSession, TranscriptionEngine  # noqa: E402
from whisperpool.audio import SAMPLE_RATE, load_audio  # noqa: E402
from whisperpool.bench.accuracy import EVAL, LEAD_S, STREAMED_LENGTHS, eval_set  # noqa: E402
from whisperpool.bench.common import header, median, pct  # noqa: E402
from whisperpool.results import TranscriptionResult  # noqa: E402
from whisperpool.streaming.client import play_local  # noqa: E402
from whisperpool.streaming.realtime import COMPLETED  # noqa: E402
from whisperpool.wer import normalize, word_error_rate  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


class _Counting:
    """The pool as the session sees it, counting the decodings sent with a final's options."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self.final_decodes = 0
        self.decodes = 0

    def submit(self, audio: np.ndarray, options: DecodeOptions, **kw: Any) -> Future[TranscriptionResult]:
        self.decodes += 1
        if options.window != "short":  # partials ask for the short window only
            self.final_decodes += 1
        return self._pool.submit(audio, options, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def parse_setting(setting: str) -> tuple[float | None, set[str]]:
    """``"0.2"`` -> (0.2, set()); ``"0.2:nohold:nogate"`` -> (0.2, {"nohold", "nogate"});
    ``"none"`` -> (None, set())."""
    tail, *flags = setting.split(":")
    return (None if tail == "none" else float(tail)), set(flags)


async def stream_one(engine: TranscriptionEngine, meta: dict[str, Any], audio: np.ndarray, setting: str):
    pool = _Counting(engine.pool)
    options = engine.pool.config.decode.replace(language=meta["language"])
    tail, flags = parse_setting(setting)
    extra: dict[str, Any] = {"vad_foreground_db": None} if "nogate" in flags else {}
    if "nopause" in flags:
        extra["vad_room_pause_s"] = None
    for flag in flags:
        if flag.startswith("buf"):
            extra["max_buffer_s"] = float(flag[3:])
        if flag.startswith("beam"):
            extra["final_beam_size"] = int(flag[4:])
    session = StreamingSession(pool, options, final_tail_s=tail, **extra)  # type: ignore[arg-type]
    if "nohold" in flags:
        session._pausing = lambda: False  # type: ignore[method-assign]
    if "words" in flags:  # finals with word times, as before 2026-11-28
        final_options = session._final_options
        session._final_options = lambda utt: final_options(utt).replace(word_timestamps=True)  # type: ignore[method-assign]
    played = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), audio])
    finals = [(t, e) for t, e in [x async for x in play_local(session, played)] if e["type"] == COMPLETED]
    return {
        "text": " ".join(e["transcript"] for _, e in finals),
        "finals": len(finals),
        "final_decodes": pool.final_decodes,
        "decodes": pool.decodes,
        "latency_s": round(finals[-1][0] - LEAD_S - meta["speech_end_s"], 3) if finals else None,
    }


def summarize(rows: list[dict[str, Any]], meta: dict[str, dict[str, Any]]) -> dict[str, Any]:
    words = sum(len(normalize(meta[r["name"]]["text"])) for r in rows)
    errors = sum(
        word_error_rate(meta[r["name"]]["text"], r["text"]) * len(normalize(meta[r["name"]]["text"])) for r in rows
    )
    latency = [r["latency_s"] if r["latency_s"] is not None else float("inf") for r in rows]
    finals = sum(r["finals"] for r in rows)
    return {
        "clips": len(rows),
        "finals": finals,
        "final_decodes": sum(r["final_decodes"] for r in rows),
        "decodes": sum(r["decodes"] for r in rows),
        "latency_p50_s": round(median(latency), 3),
        "latency_p95_s": round(pct(latency, 95), 3),
        "latency_max_s": round(max(latency), 3),
        "wer": round(100 * errors / max(words, 1), 2),
    }


async def run(names: list[str], meta: dict[str, dict[str, Any]], tails: list[str], log: Console):
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in tails}
    # the layout bench --accuracy streams on: two single-thread workers, no express worker
    config = PoolConfig(decode=DecodeOptions(language="en"), express_workers=0)
    async with TranscriptionEngine(config) as engine:
        for i, name in enumerate(names):
            audio = load_audio(EVAL / f"{name}.opus")
            order = tails if i % 2 == 0 else tails[::-1]
            for tail in order:
                rows[tail].append({"name": name} | await stream_one(engine, meta[name], audio, tail))
            if (i + 1) % 10 == 0:
                log.print(
                    f"[dim]  {i + 1}/{len(names)}  {[summarize(r, meta)['latency_p50_s'] for r in rows.values()]}"
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="tune", choices=("tune", "held-out"))
    parser.add_argument(
        "--tails",
        default="none,0.1",
        help="final_tail_s settings; none: no speculative final; T:nohold: partials not held in a pause; "
        "T:nogate: no foreground gate; T:beamN: final_beam_size N; T:bufS: max_buffer_s S; "
        "T:nopause: no room's pause; T:words: finals with word times",
    )
    parser.add_argument("--limit", type=int, default=None, help="the first N clips only (a smoke run)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    log = Console(stderr=True)
    tails = args.tails.split(",")
    for setting in tails:
        parse_setting(setting)  # a bad setting fails now, not after the first clip
    meta = eval_set()
    names = sorted(n for n, m in meta.items() if m["split"] == args.split and m["length_class"] in STREAMED_LENGTHS)
    names = names[: args.limit] if args.limit else names
    log.print(f"[dim]{len(names)} {args.split} clips at real-time pace, final_tail_s {tails} ...[/dim]")
    load_before = os.getloadavg()
    rows = asyncio.run(run(names, meta, tails, log))
    out: dict[str, Any] = header()
    out["settings"] = {
        "split": args.split,
        "streamed_lengths": list(STREAMED_LENGTHS),
        "lead_s": LEAD_S,
        "workers": PoolConfig().pool_size,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "note": "a 2-core machine shared with other engineers' jobs: latencies are rough",
    }
    out["tails"] = {t: {"summary": summarize(r, meta), "clips": r} for t, r in rows.items()}
    for t, r in out["tails"].items():
        log.print(f"final_tail_s={t}", r["summary"])
    output = args.output or RESULTS / f"finals-speculative-{args.split}.json"
    output.write_text(json.dumps(out, indent=1) + "\n")
    log.print(f"written {output}")


if __name__ == "__main__":
    main()
