"""``whisperpool bench --engines``: faster-whisper against whisper.cpp, in one run.

The engines (:data:`ENGINES`): faster-whisper on the packaged model at int8 (the
baseline), and whisper.cpp on the same model converted to ggml at float16, q8_0 and q5_0
(:mod:`whisperpool.ggml`). For each:

* **latency by clip length** (about 1, 3, 5, 10 and 30 s; the short fixtures, longer ones
  joined from 5 s sentences, the 30 s one cut at 29.5 s so it is one window): one warm
  worker with all the machine's cores, the worker's own inference time; the engines take
  turns clip by clip, so the machine's noise falls on all alike;
* **warm-up**: a pool of two single-thread workers from start to both warm (load and
  dummy inference, in parallel), and each worker's load and warm-up seconds;
* **throughput and word error rate**: that pool transcribes the held-out half of the
  evaluation set's first batch (``bench/clips/eval``, as ``bench --accuracy``; 69 clips), every clip submitted at
  once, each in its own language: clips and audio seconds per second, and the WER
  against the texts the clips were rendered from (all, clean only, and by condition);
* **memory**: each worker's resident memory after that batch.

Defaults of each engine: ``window="auto"`` (the short window for short audio), greedy.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from rich.console import Console

from .. import DecodeOptions, PoolConfig, ProcessPool
from ..config import available_cores
from ..wer import normalize, word_error_rate
from . import BenchOptions
from .accuracy import EVAL, eval_set
from .common import Target, header, median, table
from .windows import SAMPLE_RATE, _join, clips_by_length

ENGINES: dict[str, tuple[str, str]] = {  # label: (backend, model)
    "faster-whisper int8": ("faster-whisper", "base"),
    "whisper.cpp f16": ("whispercpp", "base"),
    "whisper.cpp q8_0": ("whispercpp", "base-q8_0"),
    "whisper.cpp q5_0": ("whispercpp", "base-q5_0"),
}
BASELINE = "faster-whisper int8"
LENGTHS = (1, 3, 5, 10, 30)
LONGEST_S = 29.5  # the "30 s" clip: one window, not split into pieces
QUICK_EVAL = ("en-01s-clean-1", "en-05s-clean-0", "en-03s-pink-10db-1", "de-03s-clean-1")


def _clips(quick: bool) -> dict[int, list[tuple[np.ndarray, str]]]:
    by_length = clips_by_length()
    fives = by_length[5]
    n = len(fives)
    joined = [_join([fives[(i + k) % n] for k in range(6)]) for i in range(0, n, 3)]
    by_length[30] = [(audio[: int(LONGEST_S * SAMPLE_RATE)], text) for audio, text in joined]
    del by_length[20]
    per_length = 1 if quick else 2
    return {length: by_length[length][:per_length] for length in LENGTHS}


def _latency(options: BenchOptions, log: Console) -> dict[str, Any]:
    threads = available_cores()
    decode = DecodeOptions(language=options.language)
    clips = _clips(options.quick)
    runs = 1 if options.quick else min(options.runs, 3)
    pools = {
        label: ProcessPool(
            PoolConfig(pool_size=1, threads_per_worker=threads, express_workers=0, backend=b, model=m, decode=decode)
        )
        for label, (b, m) in ENGINES.items()
    }
    out: dict[str, Any] = {label: {} for label in ENGINES}
    try:
        for pool in pools.values():
            pool.warm_up_all_workers(timeout=600)
        for length, group in clips.items():
            log.print(f"[dim]latency, {length} s: {len(group)} clips x {runs} runs x {len(pools)} engines ...[/dim]")
            for label in ENGINES:
                out[label][str(length)] = {"seconds": [], "windows": [], "texts": []}
            for i, (audio, _) in enumerate(group):
                for run in range(runs):
                    order = list(pools) if (i + run) % 2 == 0 else list(reversed(pools))
                    for label in order:
                        result = pools[label].transcribe(audio, timeout=600)
                        entry = out[label][str(length)]
                        entry["seconds"].append(result.timings.inference_s)
                        if run == 0:
                            entry["windows"].append(result.window)
                            entry["texts"].append(result.text)
    finally:
        for pool in pools.values():
            pool.close(timeout=10)
    return out


def _pool_run(backend: str, model: str, names: list[str], clips: dict[str, dict[str, Any]], log: Console):
    audio = {n: _load(n) for n in names}
    config = PoolConfig(
        pool_size=2, threads_per_worker=1, express_workers=0, backend=backend, model=model, decode=DecodeOptions()
    )
    started = time.perf_counter()
    with ProcessPool(config) as pool:
        pool.warm_up_all_workers(timeout=600)
        warm_s = time.perf_counter() - started
        log.print(f"[dim]  warm in {warm_s:.1f} s; {len(names)} clips ...[/dim]")
        started = time.perf_counter()
        futures = {n: pool.submit(audio[n], DecodeOptions(language=clips[n]["language"])) for n in names}
        texts = {n: f.result(timeout=1800).text for n, f in futures.items()}
        batch_s = time.perf_counter() - started
        workers = pool.get_status().workers
    return {
        "warm_s": warm_s,
        "workers": [{"load_s": w.load_s, "warm_up_s": w.warm_up_s, "rss_mb": w.rss_mb} for w in workers],
        "batch_s": batch_s,
        "clips": len(names),
        "audio_s": sum(a.size for a in audio.values()) / SAMPLE_RATE,
        "texts": texts,
    }


def _load(name: str) -> np.ndarray:
    from ..audio import load_audio

    return load_audio(EVAL / f"{name}.opus")


def measure(options: BenchOptions, log: Console) -> dict[str, Any]:
    clips = eval_set()
    # The first batch's held-out clips (69): the second batch doubled the set for the
    # accuracy suite's 0.3-point target, which this suite's throughput and WER do not need.
    names = (
        list(QUICK_EVAL)
        if options.quick
        else sorted(n for n, c in clips.items() if c["split"] == "held-out" and c["batch"] == 1)
    )
    out: dict[str, Any] = header()
    load = os.getloadavg()
    out["machine"]["load_average_at_start"] = [round(x, 2) for x in load]
    out["machine"]["shared"] = load[0] > 0.5 * available_cores()
    out["settings"] = {
        "engines": {label: {"backend": b, "model": m} for label, (b, m) in ENGINES.items()},
        "baseline": BASELINE,
        "latency": f"one warm worker, {available_cores()} threads, its inference time, window auto",
        "throughput": "2 workers x 1 thread, the held-out eval clips of batch 1 submitted at once",
        "language": options.language,
        "eval_clips": len(names),
        "latency_clips_per_length": 1 if options.quick else 2,
        "latency_runs": 1 if options.quick else min(options.runs, 3),
    }
    out["latency"] = _latency(options, log)
    out["pools"] = {}
    for label, (backend, model) in ENGINES.items():
        log.print(f"[dim]{label}: a pool of 2 ...[/dim]")
        run = _pool_run(backend, model, names, clips, log)
        run["references"] = {n: clips[n]["text"] for n in names}
        run["conditions"] = {n: clips[n]["condition"] for n in names}
        out["pools"][label] = run
    load = os.getloadavg()
    out["machine"]["load_average_at_end"] = [round(x, 2) for x in load]
    out["machine"]["shared"] = out["machine"]["shared"] or load[0] > 0.5 * available_cores()
    return out


def _wer(run: dict[str, Any], names: list[str]) -> float | None:
    words = sum(len(normalize(run["references"][n])) for n in names)
    if not words:
        return None
    errors = sum(
        word_error_rate(run["references"][n], run["texts"][n]) * len(normalize(run["references"][n])) for n in names
    )
    return 100.0 * errors / words


def summary(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per engine: latency medians by length and their ratio to the baseline; warm-up,
    throughput, memory and WER."""
    rows: dict[str, dict[str, Any]] = {}
    for label, run in r["pools"].items():
        names = sorted(run["texts"])
        latency = {length: median(e["seconds"]) for length, e in r["latency"][label].items()}
        base = {length: median(e["seconds"]) for length, e in r["latency"][BASELINE].items()}
        conditions = sorted(set(run["conditions"].values()))
        rows[label] = {
            "latency_s": latency,
            "latency_ratio": {length: latency[length] / base[length] for length in latency},
            "warm_s": run["warm_s"],
            "load_s": median([w["load_s"] for w in run["workers"] if w["load_s"] is not None] or [float("nan")]),
            "rss_mb": median([w["rss_mb"] for w in run["workers"] if w["rss_mb"] is not None] or [float("nan")]),
            "clips_per_s": run["clips"] / run["batch_s"],
            "audio_x_realtime": run["audio_s"] / run["batch_s"],
            "wer": _wer(run, names),
            "wer_clean": _wer(run, [n for n in names if run["conditions"][n] == "clean"]),
            "wer_by_condition": {c: _wer(run, [n for n in names if run["conditions"][n] == c]) for c in conditions},
        }
    return rows


def targets(r: dict[str, Any]) -> list[Target]:
    """Recorded, not required: whisper.cpp at float16 within 2 points of WER of the
    baseline on clean speech (the conversion keeps the model), and its 1 s latency."""
    rows = summary(r)
    cpp, base = rows["whisper.cpp f16"], rows[BASELINE]
    return [
        Target(
            "whisper.cpp f16 clean WER - faster-whisper's", cpp["wer_clean"] - base["wer_clean"], 2.0, False, "points"
        ),
        Target("whisper.cpp f16 / faster-whisper latency, 1 s clip", cpp["latency_ratio"]["1"], 3.0, False),
    ]


def report(r: dict[str, Any], out: Console) -> None:
    rows = summary(r)
    shared = "shared machine" if r["machine"].get("shared") else "quiet machine"
    lat = table(f"latency, seconds (ratio to {BASELINE}), {shared}", ("engine", *(f"{n} s" for n in LENGTHS)))
    for label, row in rows.items():
        lat.add_row(label, *(f"{row['latency_s'][str(n)]:.2f} ({row['latency_ratio'][str(n)]:.2f}x)" for n in LENGTHS))
    out.print(lat)
    t = table(
        "2 workers x 1 thread",
        ("engine", "warm-up s", "load s", "RSS MiB", "clips/s", "x realtime", "WER %", "clean WER %"),
    )
    for label, row in rows.items():
        t.add_row(
            label,
            f"{row['warm_s']:.1f}",
            f"{row['load_s']:.2f}",
            f"{row['rss_mb']:.0f}",
            f"{row['clips_per_s']:.2f}",
            f"{row['audio_x_realtime']:.1f}",
            f"{row['wer']:.1f}",
            f"{row['wer_clean']:.1f}",
        )
    out.print(t)
