"""A trial of a design for issue 14's fairness target: one more worker, kept for short
requests (it never takes a long recording's plan or pieces), sharing the cores with the
default workers.

python scripts/express_worker_trial.py

Nothing in the package does this yet: the trial patches, in this process, the pool's
dispatcher and the count of workers a recording's pieces are cut for. Two pools, the
default (one single-thread worker per core) and the same plus one worker kept for short
requests, transcribe three tune recordings of ``bench --throughput`` in turns. Then, as
``bench --throughput`` measures fairness, a 3 s clip's latency idle, and at
eight moments spread over a job of pieces while one recording per piece worker is
decoded. Written: ``benchmarks/results/express-worker-trial.json``.
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
from whisperpool.pool import manager, pieces  # noqa: E402

RECORDINGS = ("long-gb", "long-us", "long-midlands")  # tune recordings
DECODE = DecodeOptions(language="en")
OUTPUT = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "express-worker-trial.json"

_default_dispatch = manager.ProcessPool._dispatch
_default_workers = pieces.LongRequest._workers


def _dispatch(self) -> None:
    """The pool's dispatcher, but a plan or a piece never goes to the kept worker, which
    takes the first waiting job that is neither."""
    kept = getattr(self, "kept_for_short", None)
    if kept is None:
        return _default_dispatch(self)
    while self._queue:
        idle = [w for w in self._workers if w.is_idle()]
        if not idle:
            return None
        head = min(self._queue._heap, key=lambda entry: entry[0])[1]
        for_pieces = [w for w in idle if w.id != kept]
        if head.parent is None or for_pieces:
            job = self._queue.pop()
            idle = idle if job.parent is None else for_pieces
        else:  # only the kept worker is idle
            waiting = sorted(self._queue._heap, key=lambda entry: entry[0])
            job = next((j for _, j in waiting if j.parent is None and not j.future.done()), None)
            if job is None:
                return None
            self._queue.remove(lambda j, chosen=job: j is chosen)
        if not job.future.running() and not job.future.set_running_or_notify_cancel():
            continue
        worker = min(idle, key=lambda w: w.idle_since)
        job.dispatched = time.monotonic()
        job.attempts += 1
        worker.assign(job)
    self._queue.remove(lambda j: j.future.cancelled())
    return None


def _workers(self) -> int:
    """Pieces are cut for the workers that take them."""
    kept = getattr(self.pool, "kept_for_short", None)
    if kept is None:
        return _default_workers(self)
    return max(1, len([w for w in self.pool._capacity() if w.id != kept]))


def main() -> None:
    manager.ProcessPool._dispatch = _dispatch
    pieces.LongRequest._workers = _workers
    cores = available_cores()
    recs = recordings("tune")
    load_before = os.getloadavg()
    pools = {
        "default": ProcessPool(PoolConfig(decode=DECODE, pool_size=cores, threads_per_worker=1)),
        "default + 1 kept for short requests": ProcessPool(
            PoolConfig(decode=DECODE, pool_size=cores + 1, threads_per_worker=1)
        ),
    }
    try:
        for pool in pools.values():
            pool.warm_up_all_workers(300)
        kept = pools["default + 1 kept for short requests"]
        kept.kept_for_short = max(w.id for w in kept._workers)  # type: ignore[attr-defined]
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
