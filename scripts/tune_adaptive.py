"""Choose bench --adaptive's policy settings on the TUNE half of the trace family only.

python scripts/tune_adaptive.py model benchmarks/results/adaptive-tune.json
    the model (bench/adaptive_model.py) over the tune traces' requests, with the service
    and warm-up times of that replay: median and worst ratios for each setting of a grid
python scripts/tune_adaptive.py replay 0.2,5,0.7 0.2,3,0.8 [--output PATH]
    the tune half replayed on the real model, on the fixed pool and on the adaptive pool
    with each setting (scale_up_wait_s,scale_down_idle_s,target_utilization), trace by
    trace in one run; the ratios of each

Neither ever reads or runs a held-out trace: the settings chosen here are then reported
on the held-out half by `whisperpool bench --adaptive`.
"""

import argparse
import itertools
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from whisperpool import DecodeOptions  # noqa: E402
from whisperpool.bench import adaptive, adaptive_model, traces  # noqa: E402
from whisperpool.bench import replay as replay_one  # noqa: E402

GRID = {
    "scale_up_wait_s": (0.2, 0.5),
    "scale_down_idle_s": (2.0, 3.0, 5.0, 8.0, 12.0),
    "target_utilization": (0.5, 0.6, 0.7, 0.8),
}


def model(path: Path, scales: list[float]) -> None:
    r = json.loads(path.read_text())
    runs = [
        t
        for t in r["traces"].values()
        if t["trace"]["half"] == "tune" and t["trace"] == traces.make(t["trace"]["id"]).to_dict()
    ]
    if not runs:  # a held-out trace, or one of an older family
        raise SystemExit(f"{path} has no tune-half trace")
    fixed, name = adaptive.FIXED, adaptive.ADAPTIVE_NAME
    measured = [
        (c, s) for t in runs for c, s in zip(t["pools"][fixed]["clip_s"], t["pools"][fixed]["inference_s"], strict=True)
    ]
    warm = statistics.median(
        [w for t in runs for n, pool in t["pools"].items() if n != fixed for w in pool["scale_up_warm_up_s"]] or [4.0]
    )
    # A shared machine's service times move with others' work: each setting is judged
    # with the times measured and scaled (0.33: about a quiet machine's, when measured
    # under load), warm-ups scaled alike.
    for scale in scales:
        times = [(c, s * scale) for c, s in measured]
        print(f"tune traces {traces.TUNE}, {len(times)} service times x {scale:g}, warm-up {warm * scale:.1f} s")
        print("wait  idle  util | p95 median  worst | ws median  worst")
        for values in itertools.product(*GRID.values()):
            settings = dict(zip(GRID, values, strict=True))
            pools = adaptive.configs(DecodeOptions(language="en"), settings)
            rows = [
                adaptive_model.ratios(pools[fixed], pools[name], traces.make(i), times, warm * scale)
                for i in traces.TUNE
            ]
            p95 = [x["p95_ratio"] for x in rows]
            ws = [x["ws_ratio"] for x in rows]
            print(
                f"{values[0]:4.1f} {values[1]:5.1f} {values[2]:5.2f} | {statistics.median(p95):10.2f} {max(p95):6.2f} "
                f"| {statistics.median(ws):9.2f} {max(ws):6.2f}"
            )


def replay(settings: list[str], output: Path) -> None:
    """Each tune trace on the fixed pool, then on the adaptive pool with each setting."""
    decode = DecodeOptions(language="en")
    candidates = {f"adaptive {x}": dict(zip(GRID, map(float, x.split(",")), strict=True)) for x in settings}
    fixed = adaptive.configs(decode)[adaptive.FIXED]
    pools = {adaptive.FIXED: fixed} | {
        n: adaptive.configs(decode, c)[adaptive.ADAPTIVE_NAME] for n, c in candidates.items()
    }
    out = {"load_before": os.getloadavg(), "candidates": candidates, "traces": {}}
    for i in traces.TUNE:
        trace = traces.make(i)
        runs = {}
        for name, config in pools.items():
            print(f"{name}: trace {i} ({trace.shape}) ...", flush=True)
            runs[name] = replay_one.run(config, trace, decode)
        out["traces"][str(i)] = {"trace": trace.to_dict(), "pools": runs}
        output.write_text(json.dumps(out, indent=1) + "\n")
    out["load_after"] = os.getloadavg()
    output.write_text(json.dumps(out, indent=1) + "\n")
    for name in candidates:
        one = {
            "traces": {
                k: {
                    "trace": t["trace"],
                    "pools": {adaptive.FIXED: t["pools"][adaptive.FIXED], adaptive.ADAPTIVE_NAME: t["pools"][name]},
                }
                for k, t in out["traces"].items()
            }
        }
        s = adaptive.summary(one)
        print(
            f"{name}: p95 ratio median {s['p95_ratio_median']:.2f} worst {s['p95_ratio_worst']:.2f}, "
            f"worker-s median {s['ws_ratio_median']:.2f} worst {s['ws_ratio_worst']:.2f}, "
            f"burst first {s['burst_first_ratio']:.2f} ({s['burst_first_requests']}); per trace "
            + " ".join(f"{k}:{r['p95_ratio']:.2f}/{r['ws_ratio']:.2f}" for k, r in s["rows"].items())
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("model")
    m.add_argument("result", type=Path)
    m.add_argument("--scales", default="1,0.6,0.33", help="service-time factors, comma-separated (default: 1,0.6,0.33)")
    p = sub.add_parser("replay")
    p.add_argument("settings", nargs="+", help="wait,idle,utilization (several to compare in one run)")
    p.add_argument("--output", type=Path, default=Path("benchmarks/results/adaptive-tune.json"))
    args = parser.parse_args()
    if args.command == "model":
        model(args.result, [float(x) for x in args.scales.split(",")])
    else:
        replay(args.settings, args.output)


if __name__ == "__main__":
    main()
