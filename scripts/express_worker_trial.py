"""The default pool with and without its express worker (``PoolConfig.express_workers``):
one more worker kept for requests that are not a long recording's plan or pieces.

python scripts/express_worker_trial.py

Two pools, one single-thread worker per core, with ``express_workers=0`` and ``=1``,
transcribe three tune recordings of ``bench --throughput`` in turns. Then, as
``bench --throughput`` measures fairness, a 3 s clip's latency idle, and at eight
moments spread over a job of pieces while one recording per general worker is decoded.
Written: ``benchmarks/results/express-worker-trial.json``.
"""

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
DECODE = DecodeOptions(language="en")
OUTPUT = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "express-worker-trial.json"


def main() -> None:
    cores = available_cores()
    recs = recordings("tune")
    load_before = os.getloadavg()
    pools = {
        "no express worker": ProcessPool(
            PoolConfig(decode=DECODE, pool_size=cores, threads_per_worker=1, express_workers=0)
        ),
        "one express worker": ProcessPool(
            PoolConfig(decode=DECODE, pool_size=cores, threads_per_worker=1, express_workers=1)
        ),
    }
    try:
        for pool in pools.values():
            pool.warm_up_all_workers(300)
        rows: dict[str, dict[str, list]] = {label: {"wall_s": [], "pieces": []} for label in pools}
        for i, name in enumerate(RECORDINGS):
            for label in list(pools) if i % 2 == 0 else list(pools)[::-1]:
                started = time.perf_counter()
                result = pools[label].submit(recs[name][0], DECODE).result(600)
                rows[label]["wall_s"].append(time.perf_counter() - started)
                rows[label]["pieces"].append(result.pieces)
        for label, pool in pools.items():
            row = rows[label]
            job_s = row["wall_s"][0] * cores / row["pieces"][0]
            row["idle_s"], row["busy_s"], _ = short_request_latencies(pool, recs[RECORDINGS[0]][0], job_s, cores)
            ratio = median(row["busy_s"]) / median(row["idle_s"])
            print(
                f"{label}: recordings {sum(row['wall_s']):.1f} s, 3 s clip idle p50 {median(row['idle_s']):.2f} s, "
                f"busy p50 {median(row['busy_s']):.2f} s ({ratio:.2f}x)"
            )
    finally:
        for pool in pools.values():
            pool.close()
    out = header() | {
        "settings": {
            "recordings": list(RECORDINGS),
            "piece_workers": cores,
            "threads": 1,
            "samples": FAIRNESS_SAMPLES,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "pools": rows,
    }
    OUTPUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {OUTPUT}")


if __name__ == "__main__":
    main()
