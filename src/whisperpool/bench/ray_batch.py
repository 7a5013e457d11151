"""``whisperpool bench --ray-batch``: a folder of clips on Ray Data against the local CLI.

The same folder (the example clips and the 1-5 s commands, repeated to ``--files`` files,
default 600: the fixed start-up of each command is then spread over a folder as an archive
spreads it; the suite takes about 10 minutes on 2 cores) is
transcribed, in the same run and on the same cores, by the two commands as a user runs
them, each a new process from start to exit:

* ``whisperpool transcribe FOLDER --json --workers C --threads 1`` - the baseline;
* ``whisperpool ray transcribe FOLDER --output F --actors C --threads 1 --num-cpus C`` -
  a new local Ray cluster of the C cores, C actors each a warm engine of one worker.

Both outputs are watched as they grow (every :data:`POLL_S`): the time from start to the
first result, to the last, and to the exit. Throughput is reported two ways: the whole
run (files over the time to exit: start-up included, what a user waits for this folder)
and the steady rate (the middle half of the results over the time they took: what a
large archive sees once both are warm). The rounds alternate (local, Ray; Ray, local) so
drift in a shared machine's load falls on both. The load average before and after is
recorded: on a shared machine the figures are noisy, and the ratios are what count.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ..config import available_cores
from . import BenchOptions
from .common import CLIPS, Target, header, median, table

POLL_S = 0.05
ROUNDS = 2
QUICK_FILES = 31  # --quick: the clips once, one round
LIMIT_S = 900.0  # one command may take this long before the suite gives up on it


def _folder(root: Path, files: int) -> list[Path]:
    """The example clips, repeated in turn, as ``files`` files in ``root``."""
    clips = sorted(CLIPS.glob("*.wav")) + sorted((CLIPS / "short").glob("*.wav"))
    made = []
    for i in range(files):
        path = clips[i % len(clips)]
        made.append(root / f"c{i // len(clips)}-{path.name}")
        shutil.copy(path, made[-1])
    return made


def _watch(command: list[str], output: Path, files: int, *, stdout: Path | None = None) -> dict[str, Any]:
    """Run ``command``; the times at which ``output`` held each count of lines, and the exit's."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # Ray: a new local cluster
    sink = stdout.open("w") if stdout else subprocess.DEVNULL
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL, env=env)
    times: list[float] = []
    try:
        while proc.poll() is None and time.perf_counter() - started < LIMIT_S:
            lines = output.read_bytes().count(b"\n") if output.exists() else 0
            times += [time.perf_counter() - started] * (lines - len(times))
            time.sleep(POLL_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        if stdout:
            sink.close()
    wall = time.perf_counter() - started
    lines = output.read_bytes().count(b"\n") if output.exists() else 0
    times += [wall] * (lines - len(times))  # lines written between the last look and the exit
    if proc.returncode not in (0, 1) or len(times) != files:
        raise RuntimeError(f"{command[3:5]} exited {proc.returncode} with {len(times)} of {files} results")
    quarter, three = times[files // 4], times[3 * files // 4]
    return {
        "first_s": times[0],
        "last_s": times[-1],
        "wall_s": wall,
        "files_per_s": files / wall,
        "steady_files_per_s": (3 * files // 4 - files // 4) / (three - quarter),
    }


def measure(options: BenchOptions, log: Console) -> dict[str, Any]:
    cores = available_cores()
    language = ["--language", options.language] if options.language else []
    cli = [sys.executable, "-m", "whisperpool.cli"]
    load_start = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="whisperpool-bench-") as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        files = len(_folder(folder, QUICK_FILES if options.quick else options.files))
        rounds = 1 if options.quick else ROUNDS
        log.print(f"ray batch: {files} files, {cores} cores, {rounds} round(s)")
        for round_ in range(rounds):
            order = ("local", "ray") if round_ % 2 == 0 else ("ray", "local")
            for how in order:
                out = Path(tmp) / f"{how}-{round_}.jsonl"
                if how == "local":
                    command = [*cli, "transcribe", str(folder), "--json", "--no-progress"]
                    command += ["--workers", str(cores), "--threads", "1", *language]
                    run = _watch(command, out, files, stdout=out)
                else:
                    command = [*cli, "ray", "transcribe", str(folder), "--output", str(out), "--no-progress"]
                    command += ["--actors", str(cores), "--threads", "1", "--num-cpus", str(cores), *language]
                    run = _watch(command, out, files)
                runs[how].append(run)
                log.print(
                    f"  {how}: first result {run['first_s']:.1f} s, exit {run['wall_s']:.1f} s, "
                    f"steady {run['steady_files_per_s']:.2f} files/s"
                )
    load_end = os.getloadavg()
    summary = {how: {k: median([r[k] for r in rs]) for k in rs[0]} for how, rs in runs.items()}
    return {
        **header(),
        "settings": {"files": files, "cores": cores, "rounds": rounds, "language": options.language},
        "load_average": {"start": list(load_start), "end": list(load_end)},
        # more runnable work than cores at either end: other work shared the machine
        "shared_machine": max(load_start[0], load_end[0]) > cores,
        "runs": runs,
        "summary": summary,
        "ratios": {
            "files_per_s": summary["ray"]["files_per_s"] / summary["local"]["files_per_s"],
            "steady_files_per_s": summary["ray"]["steady_files_per_s"] / summary["local"]["steady_files_per_s"],
            "first_s": summary["ray"]["first_s"] / summary["local"]["first_s"],
        },
    }


def targets(r: dict[str, Any]) -> list[Target]:
    return [
        Target("Ray throughput, steady (x local)", r["ratios"]["steady_files_per_s"], 0.9, True),
        Target("Ray throughput, whole run (x local)", r["ratios"]["files_per_s"], 0.9, True),
    ]


def report(r: dict[str, Any], out: Console) -> None:
    s = r["settings"]
    load = r["load_average"]
    t = table(
        f"{s['files']} clips on {s['cores']} cores, median of {s['rounds']} rounds "
        f"(load average {load['start'][0]:.1f} -> {load['end'][0]:.1f}"
        f"{': a shared machine' if r['shared_machine'] else ''})",
        ("command", "first result s", "last result s", "exit s", "files/s whole run", "files/s steady"),
    )
    names = {"local": "whisperpool transcribe", "ray": "whisperpool ray transcribe"}
    for how, row in r["summary"].items():
        t.add_row(
            names[how],
            f"{row['first_s']:.1f}",
            f"{row['last_s']:.1f}",
            f"{row['wall_s']:.1f}",
            f"{row['files_per_s']:.2f}",
            f"{row['steady_files_per_s']:.2f}",
        )
    ratios = r["ratios"]
    t.add_row(
        "ratio Ray / local",
        f"{ratios['first_s']:.2f}x",
        "",
        "",
        f"{ratios['files_per_s']:.2f}x",
        f"{ratios['steady_files_per_s']:.2f}x",
    )
    out.print(t)
