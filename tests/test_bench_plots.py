"""The benchmarks' plots: each suite's PNG drawn from its committed JSON (throughput's from a
small dict of the shape ``bench/throughput.py`` writes), and ``run_bench`` writing one beside
the JSON."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from whisperpool.bench import SUITES  # noqa: E402
from whisperpool.bench.plots import plot  # noqa: E402

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def throughput_result() -> dict:
    """A small dict shaped as ``throughput.measure`` returns it (two recordings, two layouts)."""
    names = ("alice-1", "poe-1")
    long = {
        how: {n: {"s": 40.0 * f + 5 * i, "wer": 0.05 + 0.01 * i, "text": "..."} for i, n in enumerate(names)}
        for how, f in (
            ("faster-whisper, sequential", 3.0),
            ("faster-whisper, batched", 1.5),
            ("pool, one worker", 2.5),
            ("pool, default", 1.4),
        )
    }
    return {
        "date": "2026-11-27T00:00:00+00:00",
        "machine": {"cores": 2, "processor": "x86_64", "python": "3.11.7"},
        "settings": {"cores": 2},
        "recordings": {
            n: {"seconds": 240.0 + i, "split": ("held-out", "tune")[i], "words": 600} for i, n in enumerate(names)
        },
        "long": long,
        "fairness": {"idle_s": [1.2, 1.3, 1.25], "busy_s": [2.1, 2.4, 2.2], "workers": 2},
        "batching": {
            "2 x 1, no batching": {
                "wall_s": [10.0, 11.0],
                "latency_s": [1.0, 2.0, 3.0, 4.0],
                "wer": 0.07,
                "requests": 32,
            },
            "1 x 2, max_batch 4": {
                "wall_s": [8.0, 9.0],
                "latency_s": [1.5, 2.5, 3.0, 3.5],
                "wer": 0.07,
                "requests": 32,
            },
        },
    }


def committed(suite: str) -> dict:
    path = RESULTS / f"{suite}.json"
    if suite == "throughput" and not path.is_file():
        return throughput_result()
    return json.loads(path.read_text())


def assert_png(path: Path) -> None:
    assert path.is_file(), f"no plot at {path}"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert 10_000 < len(data) < 200_000, f"{path.name}: {len(data)} bytes"


@pytest.mark.parametrize("suite", SUITES)
def test_each_suite_draws_its_plot_from_its_results(suite: str, tmp_path: Path) -> None:
    out = plot(suite, committed(suite), tmp_path / "plots" / f"{suite}.png")
    assert out == tmp_path / "plots" / f"{suite}.png"
    assert_png(out)


def test_throughput_plot_from_the_measured_shape(tmp_path: Path) -> None:
    assert_png(plot("throughput", throughput_result(), tmp_path / "throughput.png"))


def test_a_dict_with_int_keys_draws_as_its_json_does(tmp_path: Path) -> None:
    """``measure`` may key by int; the plot reads the dict as JSON has it."""
    r = committed("adaptive")
    r["traces"] = {int(k): v for k, v in r["traces"].items()}
    assert_png(plot("adaptive", r, tmp_path / "adaptive.png"))


def test_importing_bench_does_not_import_matplotlib() -> None:
    code = "import sys, whisperpool.bench, whisperpool.bench.plots; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"


def test_run_bench_writes_the_png_beside_the_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in suite (the streaming suite's measure replaced by its committed result)."""
    from rich.console import Console

    from whisperpool.bench import BenchOptions, run_bench
    from whisperpool.bench import streaming as suite

    monkeypatch.setattr(suite, "measure", lambda options, log: committed("streaming"))
    output = run_bench("streaming", BenchOptions(), Console(file=io.StringIO()), output=tmp_path / "s.json")
    assert output == tmp_path / "s.json"
    assert json.loads(output.read_text())["runs"]
    assert_png(tmp_path / "s.png")


def test_throughput_targets_compare_the_pool_and_the_sequential_pass_each_over_shifted_starts() -> None:
    """The held-out recordings after some silence, sequentially and by the pool: one more
    target, mean against mean (with the unshifted passes); a result without them has none."""
    from rich.console import Console

    from whisperpool.bench import throughput

    r = throughput_result()
    assert not [t for t in throughput.targets(r) if "starts" in t.name]
    r["shifted"] = {
        "faster-whisper, sequential": {
            "alice-1": {"0.5": {"text": "...", "wer": 0.08}, "1": {"text": "", "wer": 0.11}}
        },
        "pool, default": {"alice-1": {"0.5": {"text": "...", "wer": 0.06}, "1": {"text": "", "wer": 0.07}}},
    }
    shifted = [t for t in throughput.targets(r) if "starts" in t.name]
    assert len(shifted) == 1 and "each the mean of 3 starts" in shifted[0].name
    # the pool 0.05 (unshifted), 0.06, 0.07 against the sequential pass 0.05, 0.08, 0.11: -2 points
    assert shifted[0].value == pytest.approx(100 * ((0.05 + 0.06 + 0.07) / 3 - (0.05 + 0.08 + 0.11) / 3))
    out = io.StringIO()
    throughput.report(r, Console(file=out, width=200))
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.getvalue().splitlines() if "alice-1" in line]
    assert ["alice-1", "5.0", "8.0", "11.0", "8.0"] in rows and ["alice-1", "5.0", "6.0", "7.0", "6.0"] in rows


def test_throughput_targets_time_the_text_only_pool_and_count_its_texts_when_it_ran() -> None:
    from whisperpool.bench import throughput

    r = throughput_result()
    assert not [t for t in throughput.targets(r) if "text only" in t.name]  # runs before it
    r["long"][throughput.TEXT_ONLY] = {
        "alice-1": {"s": 45.0, "wer": 0.05, "text": "..."},  # held out: 45 s against batched's 60 s
        "poe-1": {"s": 1.0, "wer": 0.06, "text": "other"},  # tune: not counted
    }
    time, same = [t for t in throughput.targets(r) if "text only" in t.name]
    assert time.value == pytest.approx(45.0 / 60.0) and time.met
    assert (same.value, same.limit, same.met) == (1, 1, True)
    r["long"][throughput.TEXT_ONLY]["alice-1"]["text"] = "a word more"
    assert not [t for t in throughput.targets(r) if "text only" in t.name][1].met
