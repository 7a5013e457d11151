"""Choose bench --adaptive's policy settings on the TUNE half of the trace family only.

python scripts/tune_adaptive.py model benchmarks/results/adaptive-tune.json
    the model (bench/adaptive_model.py) over the tune traces' requests, with the service
    and warm-up times of that replay: median and worst ratios for each setting of a grid
python scripts/tune_adaptive.py replay 0.2 5 0.7 [--output PATH]
    the tune half replayed on the real model, fixed and adaptive pools, with these
    settings (scale_up_wait_s, scale_down_idle_s, target_utilization)

Neither ever reads or runs a held-out trace: the settings chosen here are then reported
on the held-out half by `whisperpool bench --adaptive`.
"""

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from whisperpool import DecodeOptions  # noqa: E402
from whisperpool.bench import BenchOptions, adaptive, adaptive_model, run_bench, traces  # noqa: E402

GRID = {
    "scale_up_wait_s": (0.1, 0.2, 0.5),
    "scale_down_idle_s": (3.0, 5.0, 8.0, 12.0),
    "target_utilization": (0.5, 0.6, 0.7, 0.8),
}


def model(path: Path) -> None:
    r = json.loads(path.read_text())
    runs = [t for t in r["traces"].values() if t["trace"]["half"] == "tune"]
    if not runs:
        raise SystemExit(f"{path} has no tune-half trace")
    fixed, name = adaptive.FIXED, adaptive.ADAPTIVE_NAME
    measured = [
        (c, s) for t in runs for c, s in zip(t["pools"][fixed]["clip_s"], t["pools"][fixed]["inference_s"], strict=True)
    ]
    warm = [w for t in runs for w in t["pools"][name]["scale_up_warm_up_s"]] or [4.0]
    warm_up_s = statistics.median(warm)
    print(f"tune traces {traces.TUNE}, {len(measured)} service times, warm-up {warm_up_s:.1f} s")
    print("wait  idle  util | p95 median  worst | ws median  worst")
    for values in itertools.product(*GRID.values()):
        settings = dict(zip(GRID, values, strict=True))
        pools = adaptive.configs(DecodeOptions(language="en"), settings)
        rows = [
            adaptive_model.ratios(pools[fixed], pools[name], traces.make(i), measured, warm_up_s) for i in traces.TUNE
        ]
        p95 = [x["p95_ratio"] for x in rows]
        ws = [x["ws_ratio"] for x in rows]
        print(
            f"{values[0]:4.1f} {values[1]:5.1f} {values[2]:5.2f} | {statistics.median(p95):10.2f} {max(p95):6.2f} "
            f"| {statistics.median(ws):9.2f} {max(ws):6.2f}"
        )


def replay(settings: list[float], output: Path) -> None:
    adaptive.ADAPTIVE = dict(zip(GRID, settings, strict=True))  # this script's run only
    run_bench("adaptive", BenchOptions(traces="tune", quiet_s=0), Console(), output=output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("model")
    m.add_argument("result", type=Path)
    p = sub.add_parser("replay")
    p.add_argument("settings", type=float, nargs=3)
    p.add_argument("--output", type=Path, default=Path("benchmarks/results/adaptive-tune.json"))
    args = parser.parse_args()
    if args.command == "model":
        model(args.result)
    else:
        replay(args.settings, args.output)


if __name__ == "__main__":
    main()
