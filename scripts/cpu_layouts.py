"""Workers x threads on this machine's CPU: which layout to pick for a bigger CPU.

python scripts/cpu_layouts.py [--model base] [--output benchmarks/results/cpu-layouts.json]

For each way of sharing the cores (workers x threads per worker = cores), a pool of
the packaged model (int8, beam 1, English) transcribes the first held-out long
recording of ``bench --throughput`` (in pieces, one by one) and answers 16 concurrent
3-10 s requests, two rounds, with batching off and with batches of 4. faster-whisper
with every core, sequential and batched (batch 8), is timed on the same recording in
the same run as the baseline.
"""

import argparse
import io
import json
import sys
import time
from concurrent.futures import wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from whisperpool import DecodeOptions, PoolConfig, ProcessPool  # noqa: E402
from whisperpool.audio import SAMPLE_RATE, load_audio  # noqa: E402
from whisperpool.bench.common import header  # noqa: E402
from whisperpool.bench.throughput import _short_clips, recordings  # noqa: E402
from whisperpool.config import available_cores  # noqa: E402
from whisperpool.models import resolve_model  # noqa: E402

REQUESTS, ROUNDS = 16, 2


def layouts(cores: int) -> list[tuple[int, int]]:
    return [(w, cores // w) for w in (1, 2, 4, 8, 16, 32) if w <= cores and cores % w == 0]


def baseline(model_name: str, audio, cores: int) -> dict:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(resolve_model(model_name).source, device="cpu", compute_type="int8", cpu_threads=cores)
    batched = BatchedInferencePipeline(model)
    list(model.transcribe(audio[: 5 * SAMPLE_RATE], language="en", beam_size=1)[0])
    started = time.perf_counter()
    list(model.transcribe(audio, language="en", beam_size=1)[0])
    sequential = time.perf_counter() - started
    started = time.perf_counter()
    list(batched.transcribe(audio, language="en", beam_size=1, batch_size=8)[0])
    return {"sequential_s": sequential, "batched_s": time.perf_counter() - started}


def one_layout(model: str, workers: int, threads: int, max_batch: int, audio, clips, long: bool) -> dict:
    config = PoolConfig(
        model=model,
        pool_size=workers,
        threads_per_worker=threads,
        max_batch=max_batch,
        decode=DecodeOptions(language="en"),
    )
    out = {}
    with ProcessPool(config) as pool:
        pool.transcribe(clips[0], timeout=300)
        if long:
            started = time.perf_counter()
            pool.transcribe(audio, timeout=1800)
            out["long_s"] = time.perf_counter() - started
        started = time.perf_counter()
        for k in range(ROUNDS):
            futures = [pool.submit(clips[(k * REQUESTS + i) % len(clips)]) for i in range(REQUESTS)]
            wait(futures, timeout=600)
            [f.result(0) for f in futures]
        out["requests_per_s"] = ROUNDS * REQUESTS / (time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/cpu-layouts.json"))
    args = parser.parse_args()
    cores = available_cores()
    name, (audio, _, _) = next(iter(recordings("held-out").items()))
    clips = [load_audio(io.BytesIO(data)) for data, _ in _short_clips()]
    out: dict = {**header(), "recording": name, "seconds": audio.size / SAMPLE_RATE, "layouts": {}}
    out["faster_whisper"] = baseline(args.model, audio, cores)
    print(f"{cores} cores, {name}: faster-whisper {out['faster_whisper']}", flush=True)
    for workers, threads in layouts(cores):
        row = one_layout(args.model, workers, threads, 1, audio, clips, long=True)
        row["batched_requests_per_s"] = one_layout(args.model, workers, threads, 4, audio, clips, long=False)[
            "requests_per_s"
        ]
        out["layouts"][f"{workers} x {threads}"] = row
        print(f"{workers} workers x {threads} threads: {row}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
