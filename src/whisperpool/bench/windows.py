"""``whisperpool bench --windows``: the short-audio encoder window against the full 30 s.

For clips of about 1, 3, 5, 10 and 20 s (the short fixtures in ``bench/clips/short``,
the longer ones joined from them with half a second of silence between), one warm
worker (a pool of one, with all the machine's cores) transcribes each clip with
``window="full"`` and ``window="auto"``, alternating, so that the machine's noise falls
on both alike; the time is the worker's own inference time (``Timings.inference_s``),
so the pipe between the processes is not counted. Reported per length: the median
latency of both, their ratio, the word error rate of both against the texts the clips
were rendered from, and how many short-window decodings the guard sent to the full
window. Where ``auto`` takes the full window (above ``DecodeOptions.short_window_max_s``),
the short window is also timed on its own (``short_window_max_s=30``), which is how the
default limit was chosen.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .. import DecodeOptions, PoolConfig, ProcessPool
from ..audio import load_audio
from ..backends import faster_whisper as fw  # the window's documented constants, for the record
from ..config import available_cores
from ..wer import normalize, word_error_rate
from . import BenchOptions
from .common import CLIPS, Target, header, median

SAMPLE_RATE = 16_000
GAP_S = 0.5  # silence between joined sentences
LENGTHS = (1, 3, 5, 10, 20)


def _fixtures() -> dict[str, tuple[np.ndarray, str]]:
    folder = CLIPS / "short"
    texts = json.loads((folder / "texts.json").read_text())
    return {name: (load_audio(folder / f"{name}.wav"), text) for name, text in texts.items()}


def _join(parts: list[tuple[np.ndarray, str]]) -> tuple[np.ndarray, str]:
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    audio = np.concatenate([x for a, _ in parts for x in (a, gap)][:-1])
    return audio, " ".join(t for _, t in parts)


def clips_by_length() -> dict[int, list[tuple[np.ndarray, str]]]:
    """About 1, 3 and 5 s: the fixtures as they are; 10 and 20 s: 5 s sentences joined."""
    fixtures = _fixtures()
    by_class = {c: [fixtures[n] for n in sorted(fixtures) if n.startswith(f"s{c}-")] for c in (1, 3, 5)}
    fives = by_class[5]
    n = len(fives)
    return {
        1: by_class[1],
        3: by_class[3],
        5: fives,
        10: [_join([fives[i], fives[(i + 1) % n]]) for i in range(0, n, 2)],
        20: [_join([fives[(i + k) % n] for k in range(4)]) for i in range(0, n, 2)],
    }


def measure(options: BenchOptions, log: Console) -> dict[str, Any]:
    threads = available_cores()
    decode = DecodeOptions(language=options.language)
    modes = {
        "full": decode.replace(window="full"),
        "auto": decode,
        "short": decode.replace(short_window_max_s=30.0),  # timed only where auto takes the full window
    }
    clips = clips_by_length()
    out: dict[str, Any] = header()
    out["settings"] = {
        "model": "base (packaged)",
        "timed": "one warm worker, its inference time",
        "compute_type": "int8",
        "threads": threads,
        "beam_size": decode.beam_size,
        "language": decode.language,
        "runs": options.runs,
        "short_window_max_s": decode.short_window_max_s,
        "short_window_min_s": fw.SHORT_WINDOW_MIN_S,
        "short_window_tail_s": fw.SHORT_WINDOW_TAIL_S,
    }
    out["lengths"] = {}
    with ProcessPool(PoolConfig(pool_size=1, threads_per_worker=threads, express_workers=0, decode=decode)) as pool:
        pool.warm_up_all_workers(timeout=600)
        for length, group in clips.items():
            log.print(f"[dim]{length} s: {len(group)} clips x {options.runs} runs ...[/dim]")
            # Above the limit ``auto`` means the full window; time the short one too.
            forced = max(len(a) for a, _ in group) / SAMPLE_RATE > decode.short_window_max_s
            entries = []
            for audio, text in group:
                entry: dict[str, Any] = {"seconds": round(len(audio) / SAMPLE_RATE, 2), "reference": text}
                timings: dict[str, list[float]] = {m: [] for m in ("full", "auto", *(("short",) if forced else ()))}
                for run in range(options.runs):
                    for mode in timings:
                        result = pool.transcribe(audio, modes[mode], timeout=600)
                        timings[mode].append(result.timings.inference_s)
                        if run == 0:
                            entry[f"{mode}_text"] = result.text
                            entry[f"{mode}_window"] = result.window
                            entry[f"{mode}_fallback"] = result.fallback
                entry["seconds_by_mode"] = timings
                entries.append(entry)
            out["lengths"][str(length)] = entries
    # Warm-up covers the short window: on fresh pools, the first short request right
    # after ready against the next three.
    log.print("[dim]first requests on fresh pools ...[/dim]")
    first_short, later_short = [], []
    short_clip = clips[3][0][0]
    for _ in range(3):
        with ProcessPool(PoolConfig(pool_size=1, threads_per_worker=threads, express_workers=0, decode=decode)) as pool:
            first_short.append(pool.transcribe(short_clip, timeout=600).timings.total_s)
            later_short.append([pool.transcribe(short_clip, timeout=600).timings.total_s for _ in range(3)])
    out["first_short_s"], out["later_short_s"] = first_short, later_short
    return out


def _corpus_wer(entries: list[dict[str, Any]], mode: str) -> float:
    """Errors over reference words, summed over the clips."""
    words = sum(len(normalize(e["reference"])) for e in entries)
    errors = sum(word_error_rate(e["reference"], e[f"{mode}_text"]) * len(normalize(e["reference"])) for e in entries)
    return 100.0 * errors / words


def summary(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per length: medians, speed-up, WER and fallbacks."""
    rows = {}
    for length, entries in r["lengths"].items():
        row: dict[str, Any] = {
            "clips": len(entries),
            "mean_seconds": sum(e["seconds"] for e in entries) / len(entries),
            "full_s": median([median(e["seconds_by_mode"]["full"]) for e in entries]),
            "auto_s": median([median(e["seconds_by_mode"]["auto"]) for e in entries]),
            # per clip and run, full over auto measured moments apart, then the median
            "speedup": median(
                [
                    f / a
                    for e in entries
                    for f, a in zip(e["seconds_by_mode"]["full"], e["seconds_by_mode"]["auto"], strict=True)
                ]
            ),
            "wer_full": _corpus_wer(entries, "full"),
            "wer_auto": _corpus_wer(entries, "auto"),
            "auto_window": ",".join(sorted({e["auto_window"] for e in entries})),
            "fallbacks": sum(e["auto_fallback"] is not None for e in entries),
        }
        if "short" in entries[0]["seconds_by_mode"]:
            row["short_s"] = median([median(e["seconds_by_mode"]["short"]) for e in entries])
            row["wer_short"] = _corpus_wer(entries, "short")
        rows[length] = row
    return rows


def _overall_wer(r: dict[str, Any], mode: str) -> float:
    return _corpus_wer([e for entries in r["lengths"].values() for e in entries], mode)


def targets(r: dict[str, Any]) -> list[Target]:
    s = summary(r)
    return [
        Target("auto vs full at 5 s: full / auto latency", s["5"]["speedup"], 3.0, True),
        Target("auto vs full at 10 s: full / auto latency", s["10"]["speedup"], 2.0, True),
        Target(
            "first short request after ready / the next three, median of 3 pools",
            median([f / median(rest) for f, rest in zip(r["first_short_s"], r["later_short_s"], strict=True)]),
            1.10,
            False,
        ),
        Target(
            "WER of auto minus WER of full, all clips",
            _overall_wer(r, "auto") - _overall_wer(r, "full"),
            1.0,
            False,
            "points",
        ),
    ]


def report(r: dict[str, Any], out: Console) -> None:
    table = Table(title=f"short-audio window vs full 30 s window ({r['settings']['threads']} threads, beam 1)")
    for col in ("length", "clips", "mean s", "full p50", "auto p50", "full/auto", "WER full", "WER auto"):
        table.add_column(col, justify="right")
    table.add_column("auto took", justify="left")
    table.add_column("fallbacks", justify="right")
    table.add_column("short only p50", justify="right")
    for length, row in summary(r).items():
        table.add_row(
            f"{length} s",
            str(row["clips"]),
            f"{row['mean_seconds']:.1f}",
            f"{row['full_s']:.3f}",
            f"{row['auto_s']:.3f}",
            f"{row['speedup']:.2f}",
            f"{row['wer_full']:.1f}",
            f"{row['wer_auto']:.1f}",
            row["auto_window"],
            str(row["fallbacks"]),
            f"{row['short_s']:.3f}" if "short_s" in row else "",
        )
    out.print(table, width=max(out.width, 120))
