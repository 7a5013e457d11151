"""The default pool with and without its express worker (``PoolConfig.express_workers``):
one more worker kept for requests that are not a long recording's plan or pieces.

python scripts/express_worker_trial.py [--device cuda] [--model PATH] [--compute-type T] [--output F]

Two pools, with ``express_workers=0`` and ``=1``, transcribe three tune recordings of
``bench --throughput`` in turns. On a CPU each pool has one single-thread worker per
core; on a GPU it is the default pool there (two workers, pieces batched by 8). Then, as
``bench --throughput`` measures fairness, a 3 s clip's latency idle, and at eight
moments spread over a job of pieces while one recording per general worker is decoded:
on the first tune recording (what the default was chosen on) and on the first held-out
one (what is reported). Written: ``benchmarks/results/express-worker-trial.json``, or
``--output``.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from whisperpool import DecodeOptions, PoolConfig, ProcessPool  # noqa: E402
from whisperpool.bench.common import header, median  # noqa: E402
from whisperpool.bench.throughput import FAIRNESS_SAMPLES, recordings, short_request_latencies  # noqa: E402
from whisperpool.config import available_cores  # noqa: E402

RECORDINGS = ("long-gb", "long-us", "long-midlands")  # tune recordings
HELD_OUT = "long-caribbean"  # the held-out recording bench --throughput measures fairness on
DECODE = DecodeOptions(language="en")
OUTPUT = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "express-worker-trial.json"


def _config(args: argparse.Namespace, express: int) -> PoolConfig:
    engine = {"model": args.model, "device": args.device, "compute_type": args.compute_type}
    if args.device == "cuda":
        return PoolConfig(decode=DECODE, express_workers=express, **engine)
    cores = available_cores()
    return PoolConfig(decode=DECODE, pool_size=cores, threads_per_worker=1, express_workers=express, **engine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", default="base")
    parser.add_argument("--compute-type", default=None, help="default: float16 on cuda, int8 on a CPU")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    args.compute_type = args.compute_type or ("float16" if args.device == "cuda" else "int8")
    recs = recordings("tune") | {HELD_OUT: recordings("held-out")[HELD_OUT]}
    load_before = os.getloadavg()
    configs = {"no express worker": _config(args, 0), "one express worker": _config(args, 1)}
    pools = {label: ProcessPool(config) for label, config in configs.items()}
    try:
        for pool in pools.values():
            pool.warm_up_all_workers(300)
        rows: dict[str, dict] = {label: {"wall_s": [], "pieces": []} for label in pools}
        for i, name in enumerate((*RECORDINGS, HELD_OUT)):
            for label in list(pools) if i % 2 == 0 else list(pools)[::-1]:
                started = time.perf_counter()
                result = pools[label].submit(recs[name][0], DECODE).result(600)
                rows[label]["wall_s"].append(time.perf_counter() - started)
                rows[label]["pieces"].append(result.pieces)
        for label, pool in pools.items():
            row, config = rows[label], configs[label]
            for key, name in (("", RECORDINGS[0]), ("held_out_", HELD_OUT)):
                idle, busy, offsets, job_s = short_request_latencies(pool, recs[name][0], config.pool_size)
                row[f"{key}idle_s"], row[f"{key}busy_s"] = idle, busy
                row[f"{key}sent_after_s"], row[f"{key}job_s"] = offsets, job_s
                print(
                    f"{label}, {name}: 3 s clip idle p50 {median(idle):.2f} s, "
                    f"busy p50 {median(busy):.2f} s ({median(busy) / median(idle):.2f}x)"
                )
            print(f"{label}: tune recordings {sum(row['wall_s'][:-1]):.1f} s")
    finally:
        for pool in pools.values():
            pool.close()
    config = configs["no express worker"]
    out = header() | {
        "settings": {
            "recordings": list(RECORDINGS),
            "held_out": HELD_OUT,
            "device": args.device,
            "compute_type": args.compute_type,
            "piece_workers": config.pool_size,
            "threads": config.cpu_threads,
            "piece_batch": config.pieces_per_batch,
            "samples": FAIRNESS_SAMPLES,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "pools": rows,
    }
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
