"""``whisperpool bench --throughput``: long recordings spread over the workers, and fairness.

Long audio. Each long recording of the evaluation set (``clips/long``: several minutes
of read prose in one voice; the ``held-out`` ones are reported, the ``tune`` ones were
the only ones settings were chosen on) is transcribed, in the same run, by:

* ``faster-whisper, sequential`` - one ``WhisperModel`` with every core, ``transcribe``
  as faster-whisper users call it: the reference pass for the word error rate;
* ``faster-whisper, batched`` - its ``BatchedInferencePipeline`` (batch 8, every core);
* ``pool, one worker`` - a pool of one worker with every core, splitting off: the way a
  long file went through whisperpool before it was split;
* ``pool, default`` - the default pool (one worker per core, split into pieces);
* ``pool, default, text only`` - the same with ``segment_timestamps=False``, as the
  server asks for a ``json`` or ``text`` response and the CLI for its text output: each
  piece one segment, without the word alignment that cuts it into sentences. That is
  what faster-whisper's batched mode gives (one segment per chunk), so the time target
  is reported on both; the text must be the same as the default's.

All with beam 1 and the language set; every model is loaded and warm before it is
timed. Reported: wall time, the ratios, and the word error rate against the text.

The sequential pass is one of many: its 30 s windows fall where the recording's start
puts them, and where they fall moves its word error rate by up to 10 points on one
recording. So each ``held-out`` recording is also transcribed after :data:`ALIGNMENTS_S`
seconds of silence (the same speech, started a little earlier; untimed), sequentially
and by the default pool (whose pieces and plan move with the start too), and the two are
also compared mean against mean (``"shifted"``: way -> recording -> lead -> text, WER).

Fairness. Every worker of the default pool is busy with a long recording; a short
request's latency is compared with its latency on the idle pool. It waits for the rest
of a job of pieces, so it is sent at moments spread over one job's decoding, timed first
with the plan left out (see :func:`short_request_latencies`).

Batching. 16 concurrent requests of 3-10 s clips, sent through the HTTP API of a real
server on loopback, in rounds, with workers x threads x ``max_batch`` layouts of this
machine's cores: throughput, latency p50/p95 and word error rate, against the same
pool with batching off.

On a GPU (``--device cuda``, float16 unless ``--compute-type`` says otherwise) every model
of the run decodes there, and the long recordings and the requests also run on layouts
that batch on the one card (:data:`GPU_LONG`, :data:`GPU_LAYOUTS`).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
from rich.console import Console

from .. import DecodeOptions, PoolConfig, ProcessPool
from ..audio import SAMPLE_RATE, load_audio
from ..config import available_cores
from ..models import resolve_model
from ..pool.pieces import batch_sizes
from ..wer import word_error_rate
from . import BenchOptions
from .common import CLIPS, Target, header, median, table

LONG = CLIPS / "long"
BATCH = 8
ALIGNMENTS_S = (0.5, 1.0, 1.5)  # silence before the held-out recordings' further sequential passes
SHORT_CLIP = "fox"  # about 3 s
TEXT_ONLY = "pool, default, text only"


def recordings(split: str | None = None) -> dict[str, tuple[np.ndarray, str, str]]:
    """name -> (audio, reference text, split), the held-out ones first."""
    texts = json.loads((LONG / "texts.json").read_text())
    chosen = {n: t for n, t in texts.items() if split is None or t["split"] == split}
    order = sorted(chosen, key=lambda n: (chosen[n]["split"] != "held-out", n))
    return {n: (load_audio(LONG / f"{n}.opus"), chosen[n]["text"], chosen[n]["split"]) for n in order}


def _engine(options: BenchOptions) -> dict[str, str]:
    """The PoolConfig fields that say which model runs where."""
    return {"model": options.model, "device": options.device, "compute_type": options.compute}


def _faster_whisper(
    audio_by_name: dict[str, np.ndarray], options: BenchOptions, log: Console, aligned: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Both faster-whisper baselines, in this process, with every core (or the GPU); and,
    for the recordings named in ``aligned``, sequential passes after each of
    :data:`ALIGNMENTS_S` seconds of silence (``"shifted"``: name -> lead -> text)."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    language = options.language
    model = WhisperModel(
        resolve_model(options.model).source,
        device=options.device,
        compute_type=options.compute,
        cpu_threads=available_cores(),
    )
    batched = BatchedInferencePipeline(model)
    warm = np.zeros(SAMPLE_RATE, np.float32)
    list(model.transcribe(warm, language=language, beam_size=1)[0])
    list(batched.transcribe(warm, language=language, beam_size=1, batch_size=BATCH)[0])
    out: dict[str, Any] = {"sequential": {}, "batched": {}, "shifted": {}}

    def sequential(audio: np.ndarray) -> str:
        return "".join(s.text for s in model.transcribe(audio, language=language, beam_size=1)[0]).strip()

    for name, audio in audio_by_name.items():
        started = time.perf_counter()
        text = sequential(audio)
        out["sequential"][name] = {"s": time.perf_counter() - started, "text": text}
        log.print(f"  faster-whisper sequential, {name}: {out['sequential'][name]['s']:.1f} s")
        if name in aligned:
            out["shifted"][name] = {f"{lead:g}": sequential(_after_silence(audio, lead)) for lead in ALIGNMENTS_S}
            log.print(f"  faster-whisper sequential, {name}, after {', '.join(out['shifted'][name])} s of silence")
        started = time.perf_counter()
        segments, _ = batched.transcribe(audio, language=language, beam_size=1, batch_size=BATCH)
        text = "".join(s.text for s in segments).strip()
        out["batched"][name] = {"s": time.perf_counter() - started, "text": text}
        log.print(f"  faster-whisper batched, {name}: {out['batched'][name]['s']:.1f} s")
    return out


def _after_silence(audio: np.ndarray, lead_s: float) -> np.ndarray:
    return np.concatenate([np.zeros(round(lead_s * SAMPLE_RATE), np.float32), audio])


def _pool(
    config: PoolConfig,
    audio_by_name: dict[str, np.ndarray],
    label: str,
    log: Console,
    aligned: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Each recording through a pool of ``config``, timed; those named in ``aligned`` also
    after each of :data:`ALIGNMENTS_S` seconds of silence, untimed (a row's ``"shifted"``)."""
    out = {}
    with ProcessPool(config) as pool:
        for name, audio in audio_by_name.items():
            started = time.perf_counter()
            result = pool.transcribe(audio, timeout=1800)
            out[name] = {"s": time.perf_counter() - started, "text": result.text, "pieces": result.pieces}
            log.print(f"  {label}, {name}: {out[name]['s']:.1f} s ({result.pieces} piece(s))")
            if name in aligned:
                out[name]["shifted"] = {
                    f"{lead:g}": pool.transcribe(_after_silence(audio, lead), timeout=1800).text
                    for lead in ALIGNMENTS_S
                }
                log.print(f"  {label}, {name}, after {', '.join(out[name]['shifted'])} s of silence")
    return out


FAIRNESS_SAMPLES = 8  # short requests, each at its own moment of a piece's decoding


def _planned(pool: ProcessPool, recordings_: int) -> list[int] | None:
    """Each recording's pieces once every one of them is planned (queued or decoding), else None."""
    requests = pool.get_status().requests
    if len(requests) < recordings_ or any(r.pieces_total == 0 for r in requests):
        return None
    return [r.pieces_total for r in requests]


def _submit_planned(pool: ProcessPool, long_audio: np.ndarray, recordings_: int) -> tuple[list, list[int]]:
    """``recordings_`` copies of ``long_audio`` submitted, once every one is planned
    (bounded wait): their futures and pieces."""
    futures = [pool.submit(long_audio) for _ in range(recordings_)]
    deadline = time.monotonic() + 60
    while (pieces := _planned(pool, recordings_)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{recordings_} recording(s) not planned within 60 s: no fairness to measure")
        time.sleep(0.01)  # the plan is short; polled, bounded
    return futures, pieces


def job_seconds(pool: ProcessPool, long_audio: np.ndarray, recordings_: int) -> float:
    """One job of pieces' decoding time on ``pool``: from the moment ``recordings_``
    copies of ``long_audio`` are planned to the last result, over the jobs each general
    worker ran. The plan is left out: on a GPU it is half a recording's wall time."""
    futures, pieces = _submit_planned(pool, long_audio, recordings_)
    started = time.perf_counter()
    for f in futures:
        f.result(1800)
    jobs = sum(len(batch_sizes(n, pool.config.pieces_per_batch, pool.config.pool_size)) for n in pieces)
    return (time.perf_counter() - started) * pool.config.pool_size / max(jobs, 1)


def short_request_latencies(
    pool: ProcessPool, long_audio: np.ndarray, recordings_: int
) -> tuple[list[float], list[float], list[float], float]:
    """A short clip's latency on ``pool`` idle (three times), and while ``recordings_``
    copies of ``long_audio`` are decoded in pieces: (idle, busy, when each busy one was
    sent after the recordings were planned, one job's seconds).

    What it waits for is the rest of a job of pieces, so it is sent at moments spread
    evenly over one job's decoding (:func:`job_seconds`, timed first): the k-th of
    ``FAIRNESS_SAMPLES`` that far into the pieces, once every recording is planned (the
    plan, which is short, is not what it waits for). The recordings are then cancelled:
    their queued pieces leave the queue. Always ``FAIRNESS_SAMPLES`` samples: a median
    of fewer says little."""
    short = load_audio(CLIPS / f"{SHORT_CLIP}.wav")
    idle = [pool.transcribe(short, timeout=300).timings.total_s for _ in range(3)]
    job_s = job_seconds(pool, long_audio, recordings_)
    busy, offsets = [], []
    for k in range(FAIRNESS_SAMPLES):
        long, _ = _submit_planned(pool, long_audio, recordings_)
        offsets.append((k + 0.5) / FAIRNESS_SAMPLES * job_s)
        time.sleep(offsets[-1])
        busy.append(pool.transcribe(short, timeout=600).timings.total_s)
        for f in long:
            f.cancel()
        deadline = time.monotonic() + 120
        while pool.get_status().busy_workers and time.monotonic() < deadline:
            time.sleep(0.05)  # the pieces in flight finish (bounded)
    return idle, busy, offsets, job_s


def _fairness(config: PoolConfig, long_audio: np.ndarray, log: Console) -> dict[str, Any]:
    """:func:`short_request_latencies` on the default pool, one recording per worker."""
    with ProcessPool(config) as pool:
        idle, busy, offsets, job_s = short_request_latencies(pool, long_audio, pool.config.pool_size)
    log.print(f"  fairness: idle p50 {median(idle):.2f} s, every worker busy {median(busy):.2f} s")
    return {
        "idle_s": idle,
        "busy_s": busy,
        "sent_after_s": offsets,
        "job_s": job_s,
        "workers": config.pool_size,
    }


CONCURRENT = 16
LAYOUTS = {  # label -> (workers, threads per worker, max_batch), for 2 cores
    "2 workers x 1 thread, no batching": (2, 1, 1),
    "2 workers x 1 thread, batches of 4": (2, 1, 4),
    "1 worker x 2 threads, batches of 8": (1, 2, 8),
}
# On one GPU threads matter little and batches are where its throughput is.
GPU_LAYOUTS = {
    "2 workers, no batching": (2, None, 1),
    "2 workers, batches of 4": (2, None, 4),
    "1 worker, batches of 8": (1, None, 8),
    "1 worker, batches of 16": (1, None, 16),
}
GPU_LONG = {  # label -> (workers, pieces per batch); the default there is 2 x 8
    "pool, 2 workers, pieces one by one": (2, 1),
    "pool, 1 worker, pieces in batches of 16": (1, 16),
    "pool, 4 workers, pieces in batches of 4": (4, 4),
}


def _short_clips() -> list[tuple[bytes, str]]:
    """3-10 s clips, as the files a client would send: the short fixtures and the sentences."""
    texts = json.loads((CLIPS / "short" / "texts.json").read_text())
    clips = [
        ((CLIPS / "short" / f"{n}.wav").read_bytes(), t) for n, t in sorted(texts.items()) if n[:2] in ("s3", "s5")
    ]
    sentences = json.loads((CLIPS / "texts.json").read_text())
    clips += [((CLIPS / f"{n}.wav").read_bytes(), sentences[n]) for n in ("fox", "groceries", "weather")]
    return clips


async def _concurrent(url: str, clips: list[tuple[bytes, str]], rounds: int) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # bounded wait for the first warm worker
            try:
                if (await client.get("/health/ready")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)

        async def one(data: bytes) -> tuple[float, str]:
            started = time.perf_counter()
            r = await client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", data)})
            r.raise_for_status()
            return time.perf_counter() - started, r.json()["text"]

        await one(clips[0][0])  # the first request of a pool warms what warm-up did not
        latencies, errors, walls = [], [], []
        for k in range(rounds):
            batch = [clips[(k * CONCURRENT + i) % len(clips)] for i in range(CONCURRENT)]
            started = time.perf_counter()
            answers = await asyncio.gather(*(one(data) for data, _ in batch))
            walls.append(time.perf_counter() - started)
            latencies += [s for s, _ in answers]
            errors += [word_error_rate(text, said) for (_, text), (_, said) in zip(batch, answers, strict=True)]
    return {"wall_s": walls, "latency_s": latencies, "wer": float(np.mean(errors)), "requests": rounds * CONCURRENT}


def _batching(options: BenchOptions, log: Console) -> dict[str, Any]:
    from ..loadtest import start_server

    clips = _short_clips()
    out = {}
    engine = ["--model", options.model, "--device", options.device, "--compute-type", options.compute]
    layouts = GPU_LAYOUTS if options.device == "cuda" else LAYOUTS
    for label, (workers, threads, batch) in layouts.items():
        proc, url = start_server(workers, threads, options.language, extra=["--max-batch", str(batch), *engine])
        try:
            out[label] = asyncio.run(_concurrent(url, clips, max(2, min(options.runs, 4))))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        row = out[label]
        log.print(
            f"  {label}: {row['requests'] / sum(row['wall_s']):.2f} requests/s, "
            f"p95 {np.percentile(row['latency_s'], 95):.2f} s, WER {100 * row['wer']:.1f}%"
        )
    return out


def measure(options: BenchOptions, log: Console) -> dict[str, Any]:
    decode = DecodeOptions(language=options.language)
    engine = _engine(options)
    sets = {n: rec for n, rec in recordings().items() if rec[2] in options.splits}
    audio = {n: a for n, (a, _, _) in sets.items()}
    out: dict[str, Any] = header()
    cores = available_cores()
    out["settings"] = {
        "model": options.model,
        "device": options.device,
        "compute_type": options.compute,
        "beam_size": 1,
        "language": options.language,
        "cores": cores,
        "batched_batch_size": BATCH,
        "default_pool": {
            "workers": PoolConfig().pool_size,
            "express_workers": PoolConfig(**engine).express_size,
            "threads": PoolConfig().cpu_threads,
        },
    }
    out["recordings"] = {
        n: {"seconds": round(a.size / SAMPLE_RATE, 1), "split": s, "words": len(t.split())}
        for n, (a, t, s) in sets.items()
    }
    log.print("faster-whisper baselines ...")
    held_out = frozenset(n for n, (_, _, split) in sets.items() if split == "held-out")
    fw = _faster_whisper(audio, options, log, aligned=held_out)
    log.print("whisperpool ...")
    one = _pool(
        PoolConfig(pool_size=1, threads_per_worker=cores, split_above_s=None, decode=decode, **engine),
        audio,
        "pool, one worker",
        log,
    )
    default = _pool(PoolConfig(decode=decode, **engine), audio, "pool, default", log, aligned=held_out)
    text_only = _pool(PoolConfig(decode=decode.replace(segment_timestamps=False), **engine), audio, TEXT_ONLY, log)
    runs = {"faster-whisper, sequential": fw["sequential"], "faster-whisper, batched": fw["batched"]}
    runs.update({"pool, one worker": one, "pool, default": default, TEXT_ONLY: text_only})
    if options.device == "cuda":
        for label, (workers, piece_batch) in GPU_LONG.items():
            config = PoolConfig(pool_size=workers, piece_batch=piece_batch, decode=decode, **engine)
            runs[label] = _pool(config, audio, label, log)
    for per_name in runs.values():
        for name, row in per_name.items():
            row["wer"] = word_error_rate(sets[name][1], row["text"])
    out["long"] = runs
    shifted = {"faster-whisper, sequential": fw["shifted"]}
    shifted["pool, default"] = {n: row.pop("shifted") for n, row in default.items() if "shifted" in row}
    out["shifted"] = {
        how: {
            name: {lead: {"text": text, "wer": word_error_rate(sets[name][1], text)} for lead, text in by_lead.items()}
            for name, by_lead in per_name.items()
        }
        for how, per_name in shifted.items()
    }
    log.print("fairness ...")
    first = next(iter(audio))  # a held-out one, if the run has any
    out["fairness"] = _fairness(PoolConfig(decode=decode, **engine), audio[first], log)
    log.print(f"batching: {CONCURRENT} concurrent 3-10 s requests over HTTP ...")
    out["batching"] = _batching(options, log)
    return out


def _total(run: dict[str, Any], names: list[str], key: str = "s") -> float:
    return sum(run[n][key] for n in names)


def _passes(r: dict[str, Any], how: str, name: str) -> list[float]:
    """The WERs of ``how`` on recording ``name``: as it is, then after each lead of silence."""
    return [r["long"][how][name]["wer"], *(row["wer"] for row in r["shifted"][how][name].values())]


def _held_out(r: dict[str, Any]) -> list[str]:
    return [n for n, meta in r["recordings"].items() if meta["split"] == "held-out"]


def targets(r: dict[str, Any]) -> list[Target]:
    names = _held_out(r)
    long = r["long"]
    default = _total(long["pool, default"], names)
    mean_wer = {k: float(np.mean([long[k][n]["wer"] for n in names])) for k in long}
    passes = {how: [_passes(r, how, n) for n in names] for how in r.get("shifted", {})}  # none: runs before
    fair = r["fairness"]
    rates = {k: v["requests"] / sum(v["wall_s"]) for k, v in r["batching"].items()}
    base = next(iter(r["batching"]))
    base_rate = rates[base]
    best_label = max((k for k in rates if k != base), key=rates.__getitem__)
    best = rates[best_label]
    best_p95 = float(np.percentile(r["batching"][best_label]["latency_s"], 95))
    base_p95 = float(np.percentile(r["batching"][base]["latency_s"], 95))
    return [
        Target(
            "default pool / faster-whisper batched (time)",
            default / _total(long["faster-whisper, batched"], names),
            0.8,
            False,
        ),
        *(
            [
                Target(
                    "default pool, text only / faster-whisper batched (time)",
                    _total(long[TEXT_ONLY], names) / _total(long["faster-whisper, batched"], names),
                    0.8,
                    False,
                ),
                Target(
                    "default pool, text only: recordings with the default's text",
                    sum(long[TEXT_ONLY][n]["text"] == long["pool, default"][n]["text"] for n in names),
                    len(names),
                    True,
                    unit="recordings",
                ),
            ]
            if TEXT_ONLY in long  # not in runs before it
            else []
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
        *(
            [
                Target(
                    f"WER, default pool - sequential pass, each the mean of {len(passes['pool, default'][0])} "
                    "starts (points)",
                    100
                    * (float(np.mean(passes["pool, default"])) - float(np.mean(passes["faster-whisper, sequential"]))),
                    0.5,
                    False,
                    unit="points",
                )
            ]
            if len(passes) == 2 and all(passes.values())
            else []
        ),
        Target(
            "short request, every worker busy / idle (p50)", median(fair["busy_s"]) / median(fair["idle_s"]), 3.0, False
        ),
        Target("batching: best batched layout / no batching (throughput)", best / base_rate, 1.3, True),
        Target("batching: that layout's p95 / no batching's p95", best_p95 / base_p95, 1.0, False),
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
    for how, per_name in r.get("shifted", {}).items():
        leads = ["0", *next(iter(per_name.values()))]
        a = table(f"{how}: WER % after s of silence", ("recording", *(f"{lead} s" for lead in leads), "mean"))
        for name in per_name:
            wers = _passes(r, how, name)
            a.add_row(name, *(f"{100 * w:.1f}" for w in (*wers, float(np.mean(wers)))))
        out.print(a)
    fair = r["fairness"]
    f = table("a short request while every worker decodes a long recording", ("pool", "p50 s", "runs"))
    f.add_row("idle", f"{median(fair['idle_s']):.2f}", str(len(fair["idle_s"])))
    f.add_row(f"{fair['workers']} workers busy", f"{median(fair['busy_s']):.2f}", str(len(fair["busy_s"])))
    out.print(f)
    b = table(f"{CONCURRENT} concurrent 3-10 s requests over HTTP", ("layout", "requests/s", "p50 s", "p95 s", "WER %"))
    for label, row in r["batching"].items():
        lat = row["latency_s"]
        b.add_row(
            label,
            f"{row['requests'] / sum(row['wall_s']):.2f}",
            f"{np.percentile(lat, 50):.2f}",
            f"{np.percentile(lat, 95):.2f}",
            f"{100 * row['wer']:.1f}",
        )
    out.print(b)
