"""``whisperpool bench``: benchmark suites that print tables and write JSON.

Every figure is compared with a baseline measured in the same run, because shared
machines are noisy; the targets are ratios. Suites:

* ``pool`` (default, :mod:`.pool`) - what a warm pool buys: cold vs warm vs direct
  latency, start-up, throughput, memory, HTTP overhead
* ``windows`` (``--windows``, :mod:`.windows`) - the short-audio encoder window against
  the full 30 s window, by clip length: latency and word error rate
* ``streaming`` (``--streaming``, :mod:`.streaming`) - live transcription: final latency,
  first partial, WER against offline, concurrent real-time streams
* ``adaptive`` (``--adaptive``, :mod:`.adaptive`) - a family of traces (:mod:`.traces`:
  bursts, ramps, steady, sine; 2-30 s clips and live streams), its held-out half replayed
  on fixed and adaptive pools (:mod:`.replay`): latency and worker-seconds ratios, the
  first request of a burst after quiet
* ``throughput`` (``--throughput``, :mod:`.throughput`) - long recordings in pieces on
  all the workers against faster-whisper's sequential and batched modes (time, WER),
  and a short request's latency while every worker decodes a long one
* ``accuracy`` (``--accuracy``, :mod:`.accuracy`) - word error rate on a varied dev set
  (voices, lengths, noise, music, babble, languages; a tune half and a held-out half):
  ``auto`` against ``full``, and streaming finals against offline, with their latency
  and fallbacks
* ``ray_serve`` (``--ray-serve``, :mod:`.ray_serve`) - the HTTP API on Ray Serve (2 replicas
  x 1 worker) against ``whisperpool serve`` (2 workers): latency overhead and throughput
* ``ray_batch`` (``--ray-batch``, :mod:`.ray_batch`) - a folder of clips through
  ``whisperpool ray transcribe`` (Ray Data, needs the ``ray`` extra) against
  ``whisperpool transcribe`` on the same cores: throughput and time to the first result
* ``engines`` (``--engines``, :mod:`.engines`) - faster-whisper against whisper.cpp
  (float16, q8_0, q5_0) on the same packaged model: latency by clip length, warm-up,
  throughput and memory of 2 workers, WER on the held-out evaluation clips

Each suite writes ``SUITE.json`` and, with the ``bench`` extra (matplotlib), a plot of its
main comparison beside it (``SUITE.png``, :mod:`.plots`). Each suite has
``measure(options, log) -> dict`` (``options`` a :class:`BenchOptions`),
``targets(result) -> list[Target]`` and ``report(result, console)``. The suites use the
public API only (the engine, the pool, the options and results) and the example clips
shipped as package data (:data:`CLIPS`), so they run wherever whisperpool is installed::

    from whisperpool.bench import BenchOptions, run_bench

    run_bench("windows", BenchOptions(runs=1), Console())
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.table import Table

from ..errors import ConfigError
from .common import CLIPS, Target

SUITES = (
    "pool",
    "windows",
    "streaming",
    "adaptive",
    "throughput",
    "accuracy",
    "ray_serve",
    "ray_batch",
    "engines",
)
RESULTS = Path("benchmarks/results")


@dataclass(frozen=True, kw_only=True, slots=True)
class BenchOptions:
    """What a suite is told. Each suite reads the fields it uses and ignores the rest.

    ``runs``: timed runs per steady-state measure (``pool``, ``windows``);
    ``cold_runs``: new processes for the cold measure and ``batch``: clips in the
    throughput batch (``pool``); ``quiet_s``: seconds of quiet before the re-warm test
    (``adaptive``); ``language``: the decoding language of every suite (``accuracy``
    uses each clip's own); ``quick``: a few clips only, for tests (``accuracy``);
    ``splits``: the halves of the dev set transcribed, both by default, and
    ``stream_splits``: those whose 3-10 s clips are also streamed (``accuracy``);
    ``traces``: which traces to replay, ``held-out``, ``tune``, ``all`` or ids like
    ``6,7`` (``adaptive``; ``quick``: one trace); ``files``: files in the folder
    transcribed (``ray_batch``: the example clips repeated to that many, so the fixed
    start-up is spread over a folder as a real archive spreads it; ``quick``: 31, one round);
    ``model``, ``device``, ``compute_type``: where the models of ``throughput`` run (``None``
    compute type: ``int8`` on the CPU, ``float16`` on a GPU), and ``splits`` chooses its
    long recordings too.
    """

    language: str | None = "en"
    runs: int = 7
    cold_runs: int = 3
    batch: int = 8
    quiet_s: float = 120.0
    quick: bool = False
    splits: tuple[Literal["held-out", "tune"], ...] = ("held-out", "tune")
    stream_splits: tuple[Literal["held-out", "tune"], ...] = ("held-out",)
    traces: str = "held-out"
    files: int = 600
    model: str = "base"
    device: Literal["cpu", "cuda"] = "cpu"
    compute_type: str | None = None

    @property
    def compute(self) -> str:
        """The CTranslate2 compute type: the one asked for, else this device's usual one."""
        if self.compute_type is not None:
            return self.compute_type
        return "float16" if self.device == "cuda" else "int8"

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"BenchOptions.device must be 'cpu' or 'cuda', got {self.device!r}")
        for name in ("runs", "cold_runs", "batch", "files"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"BenchOptions.{name} must be an integer >= 1, got {value!r}")
        if not self.quiet_s >= 0:
            raise ConfigError(f"BenchOptions.quiet_s must be >= 0, got {self.quiet_s!r}")
        if not isinstance(self.quick, bool):
            raise ConfigError(f"BenchOptions.quick must be a bool, got {self.quick!r}")
        for name in ("splits", "stream_splits"):
            splits = getattr(self, name)
            if (
                not isinstance(splits, tuple)
                or not splits
                or not set(splits) <= {"held-out", "tune"}
                or len(set(splits)) != len(splits)
            ):
                raise ConfigError(f"BenchOptions.{name} must be a tuple of 'held-out' and/or 'tune', got {splits!r}")


def print_targets(targets: list[Target], out: Console) -> None:
    table = Table(title="targets (ratios from this run)")
    for col in ("target", "measured", "limit", "met"):
        table.add_column(col)
    for t in targets:
        op = ">=" if t.higher_is_better else "<="
        unit = "" if t.unit == "x" else f" {t.unit}"
        table.add_row(t.name, f"{t.value:.2f}{unit}", f"{op} {t.limit:.2f}{unit}", "yes" if t.met else "NO")
    out.print(table)


def run_bench(suite: str, options: BenchOptions, out: Console, *, output: Path | None = None) -> Path:
    """Run one suite, print its tables and targets to ``out``; return the JSON file written.

    ``output`` defaults to ``benchmarks/results/SUITE.json`` under the current directory.
    Beside it goes ``SUITE.png``, the suite's main comparison (:mod:`.plots`), where
    matplotlib is installed (the ``bench`` extra).
    """
    if suite not in SUITES:
        raise ConfigError(f"unknown benchmark suite {suite!r}: one of {', '.join(SUITES)}")
    module = importlib.import_module(f"{__name__}.{suite}")
    log = Console(stderr=True)
    results = module.measure(options, log)
    targets = module.targets(results)
    results["targets"] = [t.to_dict() for t in targets]
    module.report(results, out)
    print_targets(targets, out)
    output = output or RESULTS / f"{suite}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    log.print(f"wrote {output}")
    from .plots import plot  # matplotlib is imported only here, and only if installed

    png = plot(suite, results, output.with_suffix(".png"))
    log.print(f"wrote {png}" if png else "no plot: matplotlib is not installed (pip install 'whisperpool[bench]')")
    return output


__all__ = ["CLIPS", "SUITES", "BenchOptions", "Target", "run_bench"]
