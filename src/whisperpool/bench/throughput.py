"""``whisperpool bench --throughput``: long recordings spread over the workers, and fairness.

Long audio. Each long recording of the evaluation set (``clips/long``: several minutes
of read prose in one voice; the ``held-out`` ones are reported, the ``tune`` ones were
the only ones settings were chosen on) is transcribed, in the same run, by:

* ``faster-whisper, sequential`` - one ``WhisperModel`` with every core, ``transcribe``
  as faster-whisper users call it: the reference pass for the word error rate;
* ``faster-whisper, batched`` - its ``BatchedInferencePipeline`` (batch 8, every core);
* ``pool, one worker`` - a pool of one worker with every core, splitting off: the way a
  long file went through whisperpool before it was split;
* ``pool, default`` - the default pool (one worker per core, split into pieces).

All with beam 1 and the language set; every model is loaded and warm before it is
timed. Reported: wall time, the ratios, and the word error rate against the text.

Fairness. Every worker of the default pool is busy with a long recording; a short
request's latency is compared with its latency on the idle pool.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from rich.console import Console

from .. import DecodeOptions, PoolConfig, ProcessPool
from ..audio import SAMPLE_RATE, load_audio
from ..config import available_cores
from ..models import resolve_model
from ..wer import word_error_rate
from . import BenchOptions
from .common import CLIPS, Target, header, median, table

LONG = CLIPS / "long"
BATCH = 8
SHORT_CLIP = "fox"  # about 3 s


def recordings(split: str | None = None) -> dict[str, tuple[np.ndarray, str, str]]:
    """name -> (audio, reference text, split), the held-out ones first."""
    texts = json.loads((LONG / "texts.json").read_text())
    chosen = {n: t for n, t in texts.items() if split is None or t["split"] == split}
    order = sorted(chosen, key=lambda n: (chosen[n]["split"] != "held-out", n))
    return {n: (load_audio(LONG / f"{n}.opus"), chosen[n]["text"], chosen[n]["split"]) for n in order}


def _faster_whisper(audio_by_name: dict[str, np.ndarray], language: str | None, log: Console) -> dict[str, Any]:
    """Both faster-whisper baselines, in this process, with every core."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(resolve_model("base").source, device="cpu", compute_type="int8", cpu_threads=available_cores())
    batched = BatchedInferencePipeline(model)
    warm = np.zeros(SAMPLE_RATE, np.float32)
    list(model.transcribe(warm, language=language, beam_size=1)[0])
    out: dict[str, Any] = {"sequential": {}, "batched": {}}
    for name, audio in audio_by_name.items():
        started = time.perf_counter()
        text = "".join(s.text for s in model.transcribe(audio, language=language, beam_size=1)[0]).strip()
        out["sequential"][name] = {"s": time.perf_counter() - started, "text": text}
        log.print(f"  faster-whisper sequential, {name}: {out['sequential'][name]['s']:.1f} s")
        started = time.perf_counter()
        segments, _ = batched.transcribe(audio, language=language, beam_size=1, batch_size=BATCH)
        text = "".join(s.text for s in segments).strip()
        out["batched"][name] = {"s": time.perf_counter() - started, "text": text}
        log.print(f"  faster-whisper batched, {name}: {out['batched'][name]['s']:.1f} s")
    return out


def _pool(config: PoolConfig, audio_by_name: dict[str, np.ndarray], label: str, log: Console) -> dict[str, Any]:
    out = {}
    with ProcessPool(config) as pool:
        for name, audio in audio_by_name.items():
            started = time.perf_counter()
            result = pool.transcribe(audio, timeout=1800)
            out[name] = {"s": time.perf_counter() - started, "text": result.text, "pieces": result.pieces}
            log.print(f"  {label}, {name}: {out[name]['s']:.1f} s ({result.pieces} piece(s))")
    return out


def _fairness(decode: DecodeOptions, long_audio: np.ndarray, runs: int, log: Console) -> dict[str, Any]:
    short = load_audio(CLIPS / f"{SHORT_CLIP}.wav")
    with ProcessPool(PoolConfig(decode=decode)) as pool:
        idle = [pool.transcribe(short, timeout=300).timings.total_s for _ in range(runs)]
        busy = []
        for _ in range(runs):
            recordings_ = [pool.submit(long_audio) for _ in range(pool.config.pool_size)]
            deadline = time.monotonic() + 60
            while pool.get_status().busy_workers < pool.config.pool_size and time.monotonic() < deadline:
                time.sleep(0.05)  # until every worker holds a piece (bounded)
            busy.append(pool.transcribe(short, timeout=600).timings.total_s)
            for f in recordings_:
                f.result(timeout=1800)
    log.print(f"  fairness: idle p50 {median(idle):.2f} s, every worker busy {median(busy):.2f} s")
    return {"idle_s": idle, "busy_s": busy, "workers": pool.config.pool_size}


def measure(options: BenchOptions, log: Console) -> dict[str, Any]:
    decode = DecodeOptions(language=options.language)
    sets = recordings()
    audio = {n: a for n, (a, _, _) in sets.items()}
    out: dict[str, Any] = header()
    cores = available_cores()
    out["settings"] = {
        "model": "base (packaged), int8",
        "beam_size": 1,
        "language": options.language,
        "cores": cores,
        "batched_batch_size": BATCH,
        "default_pool": {"workers": PoolConfig().pool_size, "threads": PoolConfig().cpu_threads},
    }
    out["recordings"] = {
        n: {"seconds": round(a.size / SAMPLE_RATE, 1), "split": s, "words": len(t.split())}
        for n, (a, t, s) in sets.items()
    }
    log.print("faster-whisper baselines ...")
    fw = _faster_whisper(audio, options.language, log)
    log.print("whisperpool ...")
    one = _pool(
        PoolConfig(pool_size=1, threads_per_worker=cores, split_above_s=None, decode=decode),
        audio,
        "pool, one worker",
        log,
    )
    default = _pool(PoolConfig(decode=decode), audio, "pool, default", log)
    runs = {"faster-whisper, sequential": fw["sequential"], "faster-whisper, batched": fw["batched"]}
    runs.update({"pool, one worker": one, "pool, default": default})
    for per_name in runs.values():
        for name, row in per_name.items():
            row["wer"] = word_error_rate(sets[name][1], row["text"])
    out["long"] = runs
    log.print("fairness ...")
    held_out = next(n for n, (_, _, s) in sets.items() if s == "held-out")
    out["fairness"] = _fairness(decode, audio[held_out], max(1, min(options.runs, 3)), log)
    return out


def _total(run: dict[str, Any], names: list[str], key: str = "s") -> float:
    return sum(run[n][key] for n in names)


def _held_out(r: dict[str, Any]) -> list[str]:
    return [n for n, meta in r["recordings"].items() if meta["split"] == "held-out"]


def targets(r: dict[str, Any]) -> list[Target]:
    names = _held_out(r)
    long = r["long"]
    default = _total(long["pool, default"], names)
    mean_wer = {k: float(np.mean([long[k][n]["wer"] for n in names])) for k in long}
    fair = r["fairness"]
    return [
        Target(
            "default pool / faster-whisper batched (time)",
            default / _total(long["faster-whisper, batched"], names),
            0.8,
            False,
        ),
        Target(
            "default pool / pool of one worker (time)", default / _total(long["pool, one worker"], names), 0.6, False
        ),
        Target(
            "WER, default pool - sequential pass (points)",
            100 * (mean_wer["pool, default"] - mean_wer["faster-whisper, sequential"]),
            0.5,
            False,
            unit="points",
        ),
        Target(
            "short request, every worker busy / idle (p50)", median(fair["busy_s"]) / median(fair["idle_s"]), 3.0, False
        ),
    ]


def report(r: dict[str, Any], out: Console) -> None:
    names = list(r["recordings"])
    t = table(
        f"long recordings ({r['settings']['cores']} cores, beam 1): wall seconds and WER %",
        ("how", *(f"{n} ({r['recordings'][n]['seconds']:.0f} s, {r['recordings'][n]['split']})" for n in names)),
    )
    for how, per_name in r["long"].items():
        t.add_row(how, *(f"{per_name[n]['s']:.1f} s / {100 * per_name[n]['wer']:.1f}%" for n in names))
    out.print(t, width=max(out.width, 140))
    fair = r["fairness"]
    f = table("a short request while every worker decodes a long recording", ("pool", "p50 s", "runs"))
    f.add_row("idle", f"{median(fair['idle_s']):.2f}", str(len(fair["idle_s"])))
    f.add_row(f"{fair['workers']} workers busy", f"{median(fair['busy_s']):.2f}", str(len(fair["busy_s"])))
    out.print(f)
