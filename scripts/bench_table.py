"""Print the README's benchmark tables (markdown) from benchmarks/results/pool.json.

python scripts/bench_table.py [path] > /tmp/table.md
"""

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from whisperpool.bench.pool import LONG, SHORT, targets  # noqa: E402


def med(values):
    return statistics.median(values)


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/pool.json")
    r = json.loads(path.read_text())
    secs = r["settings"]["clip_seconds"]
    s = r["settings"]
    print(
        f"Measured {r['date'][:10]} on a {r['machine']['cores']}-core machine, {s['cold_runs']} cold runs, "
        f"{s['runs']} timed runs per steady measure, a batch of {s['batch']} clips (`{path}`):\n"
    )
    print(f"| latency, seconds | {secs[SHORT]} s clip | {secs[LONG]} s clip |\n|---|---:|---:|")
    rows = [
        ("cold per request (new process: import, load, transcribe), median", "cold_s", None),
        ("direct faster-whisper in-process, p50 (the floor)", "direct_s", None),
        ("warm pool, steady p50", "warm_steady_s", None),
        ("warm pool, steady p95", "warm_steady_s", 95),
    ]
    for label, key, q in rows:
        cells = [med(r[key][n]) if q is None else statistics.quantiles(r[key][n], n=100)[q - 1] for n in (SHORT, LONG)]
        print(f"| {label} | {cells[0]:.3f} | {cells[1]:.3f} |")
    print(f"| warm pool, first request right after ready, median of 5 fresh pools | | {med(r['warm_first_s']):.3f} |\n")
    tp = r["throughput_clips_per_s"]
    srv = r["server_s"]
    print("| start-up, throughput, memory, server | value |\n|---|---:|")
    print(f"| start-up to warm, 1 worker (1 thread), median | {med(r['startup_s']['1']):.2f} s |")
    print(f"| start-up to warm, 2 workers in parallel (1 thread each), median | {med(r['startup_s']['2']):.2f} s |")
    print(f"| throughput, pool of 2 single-thread workers | {tp['pool_2x1']:.2f} clips/s |")
    print(f"| throughput, one 2-thread model in-process | {tp['one_model_2_threads']:.2f} clips/s |")
    print(
        f"| throughput, two independent single-thread processes (the practical limit) | {tp['two_processes_1_thread']:.2f} clips/s |"
    )
    m = r["worker_memory"][0]
    print(
        f"| resident memory per worker after the batch (peak) | {m['rss_mib']:.0f} MiB ({m['peak_rss_mib']:.0f} MiB) |"
    )
    print(f"| HTTP round trip, {secs[SHORT]} s clip as bytes, median | {med(srv['http']):.3f} s |")
    print(f"| in-process engine, same bytes, median | {med(srv['engine']):.3f} s |")
    print(f"| HTTP round trip minus inference, median | {1000 * med(srv['http_overhead']):.1f} ms |")
    print(f"| engine call minus inference, median | {1000 * med(srv['engine_overhead']):.1f} ms |\n")
    print("| target (ratio in the same run) | measured | limit |\n|---|---:|---:|")
    for t in targets(r):
        unit = "" if t.unit == "x" else f" {t.unit}"
        op = ">=" if t.higher_is_better else "<="
        print(f"| {t.name} | {t.value:.2f}{unit} | {op} {t.limit:.2f}{unit} |")
    print(f"\nWhat the decoding options cost, on the warm pool with the {secs[LONG]} s clip (p50, runs")
    print("interleaved round-robin; the same run):\n")
    print("| options | p50 s | vs defaults |\n|---|---:|---:|")
    base = med(next(iter(r["options_s"].values())))
    for label, values in r["options_s"].items():
        delta = "" if label.startswith("defaults") else f"{med(values) - base:+.3f}"
        print(f"| {label} | {med(values):.3f} | {delta} |")


if __name__ == "__main__":
    main()
