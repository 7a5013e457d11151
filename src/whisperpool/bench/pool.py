"""``whisperpool bench``: what a warm pool buys, measured in one run on this machine.

Sections:

* cold per request - a new process imports, loads the model, transcribes one clip
* direct           - faster-whisper called in-process, same settings (the floor)
* warm pool        - first request right after ready, and steady-state p50/p95
* start-up         - N workers warming in parallel vs one worker
* throughput       - pool of 2 single-thread workers vs one 2-thread model vs two
                     independent single-thread processes (the machine's practical limit)
* memory           - resident memory of each worker

Latency is measured with one worker of ``cores`` threads, so it compares with one
process using the whole machine; start-up and throughput use single-thread workers.
Requests use the full 30 s window, as direct faster-whisper does, so that the pool is
compared with it like for like; the short-audio window has its own suite
(:mod:`whisperpool.bench.windows`).
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .. import DecodeOptions, PoolConfig, ProcessPool, TranscriptionEngine
from ..audio import load_audio
from ..config import available_cores
from ..models import resolve_model
from . import BenchOptions
from .common import CLIPS, Target, header, median, pct

SHORT, LONG = "fox", "weather"  # about 3 s and 11 s of speech

# A new process that does what a CLI-per-request would: import, load, transcribe, exit.
_COLD = """
import sys
from faster_whisper import WhisperModel
model = WhisperModel(sys.argv[1], device="cpu", compute_type=sys.argv[2], cpu_threads=int(sys.argv[3]))
segments, _ = model.transcribe(sys.argv[4], language=sys.argv[5], beam_size=1)
print("".join(s.text for s in segments))
"""

# An independent process: load and warm up, say so, wait for "go", transcribe its share.
_INDEPENDENT = """
import sys, time
import numpy as np
from faster_whisper import WhisperModel
model = WhisperModel(sys.argv[1], device="cpu", compute_type=sys.argv[2], cpu_threads=1)
list(model.transcribe(np.zeros(16000, np.float32), language=sys.argv[3], beam_size=1)[0])
print("ready", flush=True)
sys.stdin.readline()
for path in sys.argv[4:]:
    list(model.transcribe(path, language=sys.argv[3], beam_size=1)[0])
print("done", flush=True)
"""


def _option_variants(decode: DecodeOptions) -> dict[str, DecodeOptions]:
    return {
        "defaults (beam 1, language set)": decode,
        "beam_size=5": decode.replace(beam_size=5),
        "language=None (detect)": decode.replace(language=None),
        "word_timestamps=True": decode.replace(word_timestamps=True),
        "vad_filter=True": decode.replace(vad_filter=True),
    }


def _rss_mib(pid: int) -> dict[str, float]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(rest.split()[0]) / 1024
    return {"rss_mib": round(fields.get("VmRSS", 0.0), 1), "peak_rss_mib": round(fields.get("VmHWM", 0.0), 1)}


def _clip(name: str) -> Path:
    return CLIPS / f"{name}.wav"


def _cold(model: str, compute: str, threads: int, clip: Path, language: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", _COLD, model, compute, str(threads), str(clip), language],
            check=True,
            capture_output=True,
            timeout=300,
        )
        times.append(time.perf_counter() - started)
    return times


def _direct(model: str, compute: str, threads: int, decode: DecodeOptions):
    """Load faster-whisper in this process, warm it up as a worker would; return a timer."""
    from faster_whisper import WhisperModel

    started = time.perf_counter()
    fw = WhisperModel(model, device="cpu", compute_type=compute, cpu_threads=threads)
    load_s = time.perf_counter() - started
    kwargs = decode.to_faster_whisper()
    list(fw.transcribe(np.zeros(16000, np.float32), **kwargs)[0])

    def once(samples: np.ndarray) -> float:
        t = time.perf_counter()
        list(fw.transcribe(samples, **kwargs)[0])
        return time.perf_counter() - t

    return load_s, once


def _pool(config: PoolConfig) -> tuple[ProcessPool, float]:
    pool = ProcessPool(config)
    started = time.perf_counter()
    pool.warm_up_all_workers(timeout=600)
    return pool, time.perf_counter() - started


def _batch(pool: ProcessPool, batch: list[np.ndarray]) -> float:
    started = time.perf_counter()
    futures = [pool.submit(samples) for samples in batch]
    for fut in futures:
        fut.result(timeout=600)
    return time.perf_counter() - started


def _independent(model: str, compute: str, language: str, paths: list[str]) -> float:
    halves = [paths[0::2], paths[1::2]]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _INDEPENDENT, model, compute, language, *half],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for half in halves
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        started = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "done"
        return time.perf_counter() - started
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)


def measure(options: BenchOptions, log: Console) -> dict[str, Any]:
    cores = available_cores()
    compute = "int8"
    language = options.language or "en"  # the cold and independent processes are told one
    decode = DecodeOptions(language=language, window="full")
    model = resolve_model("base").source
    audio = {name: load_audio(_clip(name)) for name in (SHORT, LONG)}
    durations = {name: round(len(a) / 16000, 2) for name, a in audio.items()}
    out: dict[str, Any] = header()
    out |= {
        "settings": {
            "model": "base (packaged)",
            "compute_type": compute,
            "beam_size": 1,
            "language": language,
            "window": "full",
            "runs": options.runs,
            "cold_runs": options.cold_runs,
            "batch": options.batch,
            "clip_seconds": durations,
        },
    }

    log.print(f"[dim]cold per request: {options.cold_runs} new processes per clip ...[/dim]")
    out["cold_s"] = {n: _cold(model, compute, cores, _clip(n), language, options.cold_runs) for n in audio}

    # Each fresh pool serves its first request and then three more, so every first
    # request is compared with later ones measured moments after it.
    log.print("[dim]warm pool: first request right after ready, on fresh pools ...[/dim]")
    latency_cfg = PoolConfig(pool_size=1, threads_per_worker=cores, express_workers=0, decode=decode)
    first, later = [], []
    for _ in range(5):
        pool, _ = _pool(latency_cfg)
        first.append(pool.transcribe(audio[LONG], timeout=600).timings.total_s)
        later.append([pool.transcribe(audio[LONG], timeout=600).timings.total_s for _ in range(3)])
        pool.close()
    out["warm_first_s"] = first
    out["warm_after_first_s"] = later

    # Direct and pooled runs alternate, so the machine's noise falls on both alike.
    log.print("[dim]steady state: warm pool and direct faster-whisper, alternating ...[/dim]")
    load_s, once = _direct(model, compute, cores, decode)
    out["direct_load_s"] = load_s
    pool, _ = _pool(latency_cfg)
    direct: dict[str, list[float]] = {n: [] for n in audio}
    steady: dict[str, list[float]] = {n: [] for n in audio}
    for _ in range(options.runs):
        for name, samples in audio.items():
            direct[name].append(once(samples))
            steady[name].append(pool.transcribe(samples, timeout=600).timings.total_s)
    out["direct_s"] = direct
    out["warm_steady_s"] = steady
    del once
    gc.collect()

    log.print("[dim]decoding options: what each costs on the warm pool, round-robin ...[/dim]")
    variants = _option_variants(decode)
    for opts in variants.values():
        pool.transcribe(audio[LONG], opts, timeout=600)  # the first use of a path (e.g. VAD) is not timed
    out["options_s"] = {label: [] for label in variants}
    for _ in range(options.runs):
        for label, opts in variants.items():
            out["options_s"][label].append(pool.transcribe(audio[LONG], opts, timeout=600).timings.total_s)
    pool.close()

    log.print("[dim]start-up: one vs two single-thread workers ...[/dim]")
    startup: dict[str, list[float]] = {"1": [], "2": []}
    for _ in range(3):
        for size in ("1", "2"):
            pool, ready_s = _pool(
                PoolConfig(pool_size=int(size), threads_per_worker=1, express_workers=0, decode=decode)
            )
            startup[size].append(ready_s)
            pool.close()
    out["startup_s"] = startup

    log.print(f"[dim]throughput: {options.batch} clips, three ways ...[/dim]")
    names = [SHORT if i % 2 == 0 else LONG for i in range(options.batch)]
    batch = [audio[n] for n in names]
    pool, _ = _pool(PoolConfig(pool_size=2, threads_per_worker=1, express_workers=0, decode=decode))
    _batch(pool, batch[:2])  # both workers have served once: no first-request effects
    pool_s = _batch(pool, batch)
    memory = [_rss_mib(w.pid) for w in pool.get_status().workers if w.pid]
    pool.close()
    _, once = _direct(model, compute, cores, decode)
    started = time.perf_counter()
    for samples in batch:
        once(samples)
    single_s = time.perf_counter() - started
    del once
    gc.collect()
    independent_s = _independent(model, compute, language, [str(_clip(n)) for n in names])
    out["throughput_clips_per_s"] = {
        "pool_2x1": options.batch / pool_s,
        "one_model_2_threads": options.batch / single_s,
        "two_processes_1_thread": options.batch / independent_s,
    }
    out["worker_memory"] = memory

    log.print("[dim]server: HTTP round trip vs the in-process engine, alternating ...[/dim]")
    out["server_s"] = _server_round_trip(cores, decode, options.runs * 2)
    return out


def _server_timing(header: str) -> dict[str, float]:
    parts = (item.strip().split(";dur=") for item in header.split(","))
    return {name: float(value) for name, value in parts}


def _server_round_trip(cores: int, decode: DecodeOptions, runs: int) -> dict[str, list[float]]:
    """The same clip as bytes, to a real server on loopback and to an in-process engine."""
    import httpx

    from ..loadtest import start_server  # here: loadtest imports this module

    server, url = start_server(1, cores, decode.language, extra=["--express-workers", "0"])
    data = _clip(SHORT).read_bytes()
    # Overhead = wall time minus the worker's inference time, per request, so the model's
    # own run-to-run noise cancels out.
    timings: dict[str, list[float]] = {"http": [], "engine": [], "http_overhead": [], "engine_overhead": []}
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # bounded wait for readiness
                try:
                    if client.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            else:
                raise RuntimeError("the benchmark server did not become ready")
            files = {"file": ("clip.wav", data, "audio/wav")}
            with TranscriptionEngine(
                PoolConfig(pool_size=1, threads_per_worker=cores, express_workers=0, decode=decode)
            ) as engine:
                for i in range(runs + 1):
                    t = time.perf_counter()
                    response = client.post("/v1/audio/transcriptions", files=files)
                    http_s = time.perf_counter() - t
                    response.raise_for_status()
                    inference = _server_timing(response.headers["server-timing"])["inference"] / 1000
                    t = time.perf_counter()
                    result = engine.transcribe_sync(data)
                    engine_s = time.perf_counter() - t
                    if i:  # the first pair warms the connection and both paths
                        timings["http"].append(http_s)
                        timings["engine"].append(engine_s)
                        timings["http_overhead"].append(http_s - inference)
                        timings["engine_overhead"].append(engine_s - result.timings.inference_s)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return timings


def targets(r: dict[str, Any]) -> list[Target]:
    steady_long = median(r["warm_steady_s"][LONG])
    tp = r["throughput_clips_per_s"]
    server_ms = 1000 * (median(r["server_s"]["http_overhead"]) - median(r["server_s"]["engine_overhead"]))
    return [
        Target("HTTP overhead beyond the in-process engine, median (3 s clip)", server_ms, 15.0, False, "ms"),
        Target(
            "first request after ready / the next three, median of 5 pools (10 s clip)",
            median([f / median(rest) for f, rest in zip(r["warm_first_s"], r["warm_after_first_s"], strict=True)]),
            1.10,
            False,
        ),
        Target("warm pool p50 / direct p50 (10 s clip)", steady_long / median(r["direct_s"][LONG]), 1.05, False),
        Target(
            "cold per request / warm first request (10 s clip)",
            median(r["cold_s"][LONG]) / median(r["warm_first_s"]),
            1.6,
            True,
        ),
        Target(
            "start-up of 2 workers / 1 worker", median(r["startup_s"]["2"]) / median(r["startup_s"]["1"]), 1.5, False
        ),
        Target(
            "pool throughput / two independent processes", tp["pool_2x1"] / tp["two_processes_1_thread"], 0.90, True
        ),
    ]


def report(r: dict[str, Any], out: Console) -> None:
    lat = Table(title=f"latency, seconds (clips {r['settings']['clip_seconds']})")
    for col in ("measure", SHORT, LONG):
        lat.add_column(col, justify="right" if col != "measure" else "left")

    def row(label: str, key: str, q: float | None = None) -> None:
        cells = []
        for n in (SHORT, LONG):
            values = r[key][n]
            cells.append(f"{(median(values) if q is None else pct(values, q)):.3f}")
        lat.add_row(label, *cells)

    row("cold per request (new process), median", "cold_s")
    row("direct faster-whisper, p50", "direct_s")
    row("warm pool, steady p50", "warm_steady_s")
    row("warm pool, steady p95", "warm_steady_s", 95)
    lat.add_row("warm pool, first request after ready, median", "", f"{median(r['warm_first_s']):.3f}")
    out.print(lat)

    opt = Table(title=f"decoding options on the warm pool ({LONG} clip), seconds")
    for col in ("options", "p50", "vs defaults"):
        opt.add_column(col, justify="left" if col == "options" else "right")
    base = median(next(iter(r["options_s"].values())))
    for label, values in r["options_s"].items():
        opt.add_row(label, f"{median(values):.3f}", f"{median(values) - base:+.3f}")
    out.print(opt)

    other = Table(title="start-up, throughput, memory")
    other.add_column("measure")
    other.add_column("value", justify="right")
    other.add_row("start-up, 1 worker (1 thread), median s", f"{median(r['startup_s']['1']):.2f}")
    other.add_row("start-up, 2 workers in parallel, median s", f"{median(r['startup_s']['2']):.2f}")
    for key, value in r["throughput_clips_per_s"].items():
        other.add_row(f"throughput {key}, clips/s", f"{value:.2f}")
    srv = r["server_s"]
    other.add_row("HTTP round trip (3 s clip as bytes), median s", f"{median(srv['http']):.3f}")
    other.add_row("in-process engine, same bytes, median s", f"{median(srv['engine']):.3f}")
    other.add_row("HTTP round trip minus inference, median ms", f"{1000 * median(srv['http_overhead']):.1f}")
    other.add_row("engine call minus inference, median ms", f"{1000 * median(srv['engine_overhead']):.1f}")
    for i, m in enumerate(r["worker_memory"]):
        other.add_row(f"worker {i} resident memory (peak), MiB", f"{m['rss_mib']:.0f} ({m['peak_rss_mib']:.0f})")
    out.print(other)
