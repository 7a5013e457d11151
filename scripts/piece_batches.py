"""A long recording's pieces in batches on a CPU: its time, and a short request's wait.

python scripts/piece_batches.py [--batches 1,2,4] [--recordings long-gb,long-us,long-midlands] [--output FILE]

One pool of the default layout (one single-thread worker per core) per ``piece_batch``
setting, all warm at once; the ``tune`` recordings of ``bench --throughput`` are
transcribed by each in turn (the order reversed every other recording, so a busy moment
of the machine falls on all), beam 1, English. After each recording, on the same pool:

* **idle**: a 3 s clip alone, three times;
* **busy**: one 120 s part of the recording per worker, then the 3 s clip 1.5, 2.5 and
  3.5 s later: its latency while every worker decodes pieces.

faster-whisper's ``BatchedInferencePipeline`` (batch 8, every core) transcribes the same
recordings in the same run, as the baseline. Written:
``benchmarks/results/piece-batches.json``.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

from whisperpool import DecodeOptions, PoolConfig, ProcessPool  # noqa: E402
from whisperpool.audio import SAMPLE_RATE, load_audio  # noqa: E402
from whisperpool.bench.common import CLIPS, header, median, table  # noqa: E402
from whisperpool.bench.throughput import recordings  # noqa: E402
from whisperpool.config import available_cores  # noqa: E402
from whisperpool.models import resolve_model  # noqa: E402
from whisperpool.wer import word_error_rate  # noqa: E402

BUSY_PART_S = 120
BUSY_AFTER_S = (1.5, 2.5, 3.5)


def through_pools(names: list[str], batches: list[int], log: Console) -> dict[int, dict[str, list[float]]]:
    recs = recordings("tune")
    decode = DecodeOptions(language="en")
    short = load_audio(CLIPS / "fox.wav")
    found: dict[int, dict[str, list[float]]] = {
        b: {"wall_s": [], "wer": [], "idle_s": [], "busy_s": []} for b in batches
    }
    pools = {b: ProcessPool(PoolConfig(decode=decode, piece_batch=b)) for b in batches}
    try:
        for pool in pools.values():
            pool.warm_up_all_workers(timeout=300)
        for i, name in enumerate(names):
            audio, reference, _ = recs[name]
            for batch in batches if i % 2 == 0 else batches[::-1]:
                pool, row = pools[batch], found[batch]
                started = time.perf_counter()
                text = pool.submit(audio, decode).result(900).text
                row["wall_s"].append(time.perf_counter() - started)
                row["wer"].append(100 * word_error_rate(reference, text))
                for _ in range(3):
                    started = time.perf_counter()
                    pool.submit(short, decode).result(60)
                    row["idle_s"].append(time.perf_counter() - started)
                for after in BUSY_AFTER_S:
                    parts = [
                        pool.submit(audio[: BUSY_PART_S * SAMPLE_RATE], decode) for _ in range(pool.config.pool_size)
                    ]
                    time.sleep(after)
                    started = time.perf_counter()
                    pool.submit(short, decode).result(300)
                    row["busy_s"].append(time.perf_counter() - started)
                    for part in parts:
                        part.result(900)
                log.print(f"[dim]  {name}, piece_batch {batch}: {row['wall_s'][-1]:.2f} s, WER {row['wer'][-1]:.2f}%")
    finally:
        for pool in pools.values():
            pool.close()
    return found


def faster_whisper_batched(names: list[str]) -> list[float]:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    recs = recordings("tune")
    model = WhisperModel(resolve_model("base").source, device="cpu", compute_type="int8", cpu_threads=available_cores())
    batched = BatchedInferencePipeline(model)
    list(batched.transcribe(load_audio(CLIPS / "fox.wav"), language="en", beam_size=1, batch_size=8)[0])
    times = []
    for name in names:
        started = time.perf_counter()
        list(batched.transcribe(recs[name][0], language="en", beam_size=1, batch_size=8)[0])
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--recordings", default="long-gb,long-us,long-midlands", help="tune recordings only")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/piece-batches.json"))
    args = parser.parse_args()
    log = Console(stderr=True)
    names = args.recordings.split(",")
    assert all(recordings("tune").get(n) for n in names), "tune recordings only"
    batches = [int(b) for b in args.batches.split(",")]
    load_before = os.getloadavg()
    pools = through_pools(names, batches, log)
    baseline = faster_whisper_batched(names)
    t = table(
        f"{len(names)} tune recordings, {PoolConfig().pool_size} workers x 1 thread",
        ("piece_batch", "time s", "/ fw batched", "/ batch 1", "WER %", "3 s clip idle p50", "busy p50", "busy / idle"),
    )
    first = sum(pools[batches[0]]["wall_s"])
    summary = {}
    for batch, row in pools.items():
        wall = sum(row["wall_s"])
        summary[batch] = {
            "wall_s": round(wall, 2),
            "vs_faster_whisper_batched": round(wall / sum(baseline), 3),
            "vs_first": round(wall / first, 3),
            "wer": round(float(np.mean(row["wer"])), 2),
            "idle_p50_s": round(median(row["idle_s"]), 3),
            "busy_p50_s": round(median(row["busy_s"]), 3),
            "busy_over_idle": round(median(row["busy_s"]) / median(row["idle_s"]), 2),
        }
        s = summary[batch]
        t.add_row(
            str(batch),
            f"{wall:.1f}",
            f"{s['vs_faster_whisper_batched']:.2f}",
            f"{s['vs_first']:.2f}",
            f"{s['wer']:.2f}",
            f"{s['idle_p50_s']:.2f}",
            f"{s['busy_p50_s']:.2f}",
            f"{s['busy_over_idle']:.1f}x",
        )
    Console().print(t)
    out = header() | {
        "settings": {
            "recordings": names,
            "workers": PoolConfig().pool_size,
            "threads": 1,
            "beam_size": 1,
            "busy_part_s": BUSY_PART_S,
            "busy_after_s": list(BUSY_AFTER_S),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "faster_whisper_batched_s": [round(x, 3) for x in baseline],
        "summary": {str(b): s for b, s in summary.items()},
        "runs": {str(b): row for b, row in pools.items()},
    }
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    log.print(f"written {args.output}")


if __name__ == "__main__":
    main()
