"""``whisperpool bench``: benchmark suites that print tables and write JSON.

Every figure is compared with a baseline measured in the same run, because shared
machines are noisy; the targets are ratios. Suites:

* ``pool`` (default, :mod:`.pool`) - what a warm pool buys: cold vs warm vs direct
  latency, start-up, throughput, memory, HTTP overhead
* ``windows`` (``--windows``, :mod:`.windows`) - the short-audio encoder window against
  the full 30 s window, by clip length: latency and word error rate
* ``streaming`` (``--streaming``, :mod:`.streaming`) - live transcription: final latency,
  first partial, WER against offline, concurrent real-time streams
* ``adaptive`` (``--adaptive``, :mod:`.adaptive`) - a bursty trace on fixed and adaptive
  pools: latency and worker-seconds; the first request after a quiet spell, re-warmed or not

Each suite has ``measure(args, log) -> dict``, ``targets(result) -> list[Target]`` and
``report(result, console)``.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .common import CLIPS, Target

SUITES = ("pool", "windows", "streaming", "adaptive")
RESULTS = Path("benchmarks/results")


def print_targets(targets: list[Target], out: Console) -> None:
    table = Table(title="targets (ratios from this run)")
    for col in ("target", "measured", "limit", "met"):
        table.add_column(col)
    for t in targets:
        op = ">=" if t.higher_is_better else "<="
        unit = "" if t.unit == "x" else f" {t.unit}"
        table.add_row(t.name, f"{t.value:.2f}{unit}", f"{op} {t.limit:.2f}{unit}", "yes" if t.met else "NO")
    out.print(table)


def run_bench(args: argparse.Namespace, out: Console) -> int:
    suite = importlib.import_module(f"{__name__}.{args.suite}")
    log = Console(stderr=True)
    results = suite.measure(args, log)
    targets = suite.targets(results)
    results["targets"] = [t.to_dict() for t in targets]
    suite.report(results, out)
    print_targets(targets, out)
    output = args.output or RESULTS / f"{args.suite}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    log.print(f"wrote {output}")
    return 0


__all__ = ["CLIPS", "SUITES", "Target", "run_bench"]
