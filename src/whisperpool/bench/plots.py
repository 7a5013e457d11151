"""One PNG per benchmark suite: its main comparison, drawn from the suite's result dict.

``run_bench`` calls :func:`plot` after it writes ``SUITE.json`` and puts ``SUITE.png``
beside it; ``scripts/bench_plots.py`` redraws every PNG from the committed JSON. The
plots read only the result dicts (exactly as the suites write them, so a dict read back
from JSON draws the same as the one ``measure`` returned), never the suites' code::

    result dict --(JSON round trip)--> _SUITE(result, figure) --> Figure.savefig(path)

matplotlib comes with the ``bench`` extra (``pip install 'whisperpool[bench]'``) and is
imported here only when a plot is drawn, so ``import whisperpool.bench`` stays light;
without it :func:`plot` draws nothing and returns ``None``. Figures are built with
``matplotlib.figure.Figure`` (no pyplot state, no window), on the Agg backend.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..wer import normalize, word_error_rate

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SIZE = (9.0, 3.6)  # inches; at DPI a figure is 900 x 360 px and its PNG well under 150 KB
DPI = 100
STREAM_LATENCY_LIMIT_S = 2.0  # the streaming suite's target: streams served with p95 final latency below this


def plot(suite: str, result: dict[str, Any], path: Path) -> Path | None:
    """Draw ``suite``'s main comparison from ``result`` into the PNG ``path``; return it.

    Returns ``None`` (and writes nothing) when matplotlib is not installed. Raises
    ``KeyError`` for a suite that has no plot.
    """
    draw = _DRAWERS[suite]
    try:
        import matplotlib
    except ImportError:
        return None
    if "matplotlib.pyplot" not in sys.modules:  # leave an interactive session's backend alone
        matplotlib.use("Agg")
    from matplotlib.figure import Figure

    result = json.loads(json.dumps(result))  # as written to SUITE.json: string keys, lists
    figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    draw(result, figure)
    when = f"measured {result['date'][:10]}, " if "date" in result else ""
    cores = result.get("machine", {}).get("cores")
    figure.suptitle(
        f"whisperpool bench {suite} ({when}{cores}-core machine)" if cores else f"whisperpool bench {suite}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    return path


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.array(values, dtype=float), q))


def _label_bars(ax: Any, bars: Any, fmt: str = "{:.2f}") -> None:
    ax.bar_label(bars, labels=[fmt.format(b.get_height()) for b in bars], fontsize=7, padding=1)


def _pool(r: dict[str, Any], fig: Figure) -> None:
    """Latency per clip: cold process, direct faster-whisper, warm pool; and throughput."""
    lat, tp = fig.subplots(1, 2, width_ratios=(3, 2))
    clips = list(r["settings"]["clip_seconds"].items())
    series = [
        ("cold (new process), median", [_median(r["cold_s"][n]) for n, _ in clips]),
        ("direct faster-whisper, p50", [_median(r["direct_s"][n]) for n, _ in clips]),
        ("warm pool, p50", [_median(r["warm_steady_s"][n]) for n, _ in clips]),
        # p95 as docs/benchmarks.md's table computes it for this suite (statistics' exclusive method)
        ("warm pool, p95", [statistics.quantiles(r["warm_steady_s"][n], n=100)[94] for n, _ in clips]),
    ]
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        xs = [c + (i - (len(series) - 1) / 2) * width for c in range(len(clips))]
        _label_bars(lat, lat.bar(xs, values, width, label=label))
    lat.set_xticks(range(len(clips)), [f"{n} ({s} s clip)" for n, s in clips])
    lat.set_ylabel("latency, s")
    lat.set_title("one request, by clip", fontsize=10)
    lat.legend(fontsize=7, loc="upper center", ncols=2)
    lat.set_ylim(0, 1.4 * max(max(values) for _, values in series))
    labels = {
        "pool_2x1": "pool, 2 workers\nx 1 thread",
        "one_model_2_threads": "one model,\n2 threads",
        "two_processes_1_thread": "2 processes\nx 1 thread",
    }
    rates = r["throughput_clips_per_s"]
    bars = tp.bar([labels.get(k, k) for k in rates], list(rates.values()), color=["C2", "C1", "C7"][: len(rates)])
    _label_bars(tp, bars)
    tp.set_ylabel("clips / s")
    tp.set_title(f"throughput, a batch of {r['settings']['batch']} clips", fontsize=10)
    tp.tick_params(axis="x", labelsize=8)
    tp.margins(y=0.15)


def _windows(r: dict[str, Any], fig: Figure) -> None:
    """p50 latency and WER by clip length, full 30 s window against the short window."""
    lat, wer = fig.subplots(1, 2)
    lengths = sorted(r["lengths"], key=float)
    modes = [m for m in ("full", "auto", "short") if m in r["lengths"][lengths[0]][0]["seconds_by_mode"]]
    names = {"full": "full 30 s window", "auto": "window=auto (short)", "short": "short window, forced"}
    for mode in modes:
        xs, p50, errors = [], [], []
        for length in lengths:
            entries = r["lengths"][length]
            xs.append(sum(e["seconds"] for e in entries) / len(entries))
            p50.append(_median([_median(e["seconds_by_mode"][mode]) for e in entries]))
            words = sum(len(normalize(e["reference"])) for e in entries)
            wrong = sum(
                word_error_rate(e["reference"], e[f"{mode}_text"]) * len(normalize(e["reference"])) for e in entries
            )
            errors.append(100 * wrong / words)
        lat.plot(xs, p50, marker="o", label=names[mode])
        wer.plot(xs, errors, marker="o", label=names[mode])
    for ax in (lat, wer):
        ax.set_xlabel("clip length, s (mean of the clips in each group)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    lat.set_ylabel("latency p50, s")
    lat.set_ylim(bottom=0)
    lat.set_title("latency by clip length", fontsize=10)
    wer.set_ylabel("word error rate, %")
    wer.set_ylim(bottom=0)
    wer.set_title("word error rate by clip length", fontsize=10)


def _streaming(r: dict[str, Any], fig: Figure) -> None:
    """Final-text latency (p50, p95) by number of concurrent real-time streams."""
    ax = fig.subplots()
    counts = sorted(r["runs"], key=int)
    lat = {
        c: [
            row["final_latency_s"] if row["final_latency_s"] is not None else float("inf")
            for run in r["runs"][c]
            for row in run
        ]
        for c in counts
    }
    xs = [int(c) for c in counts]
    ax.plot(xs, [_median(lat[c]) for c in counts], marker="o", label="final latency p50")
    ax.plot(xs, [_pct(lat[c], 95) for c in counts], marker="s", label="final latency p95")
    for c, x in zip(counts, xs, strict=True):
        ax.scatter([x] * len(lat[c]), lat[c], s=6, color="C7", alpha=0.35, zorder=0)
    ax.axhline(STREAM_LATENCY_LIMIT_S, color="C3", linestyle="--", linewidth=1, label="target: p95 < 2 s")
    s = r["settings"]
    ax.set_title(
        f"{s['sentences']} sentences ({s['stream_seconds']} s) per stream at real-time pace, "
        f"{s['workers']} workers x {s['threads_per_worker']} thread; grey: each utterance",
        fontsize=9,
    )
    ax.set_xticks(xs)
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("end of speech to final text, s")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def _adaptive(r: dict[str, Any], fig: Figure) -> None:
    """Per replayed trace: request latency over time on each pool, and the workers each holds."""
    from matplotlib.ticker import FormatStrFormatter

    ids = list(r["traces"])
    fig.set_size_inches(max(SIZE[0], 3.2 * len(ids)), SIZE[1] * 1.6)
    axes = fig.subplots(2, len(ids), sharex="col", squeeze=False, height_ratios=(3, 2))
    names = list(next(iter(r["traces"].values()))["pools"])
    colors = {name: f"C{i}" for i, name in enumerate(names)}
    for col, key in enumerate(ids):
        lat_ax, workers_ax = axes[0][col], axes[1][col]
        trace = r["traces"][key]["trace"]
        arrivals = [at for at, _ in trace["requests"]]
        for name, run in r["traces"][key]["pools"].items():
            lat_ax.scatter(arrivals, run["latencies_s"], s=6, color=colors[name], label=name, alpha=0.7)
            times, counts = _workers_over_time(run)
            workers_ax.step(times, counts, where="post", color=colors[name], label=name, linewidth=1.2)
        for i in trace["burst_starts"]:
            lat_ax.axvline(arrivals[i], color="C7", linewidth=0.8, linestyle=":")
        for at, seconds in trace["streams"]:
            workers_ax.axvspan(at, at + seconds, color="C2", alpha=0.08)
        lat_ax.set_title(f"{key} {trace['shape']} ({trace['half']})", fontsize=9)
        lat_ax.set_yscale("log")
        lat_ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        lat_ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        lat_ax.tick_params(axis="y", which="minor", labelsize=7)
        lat_ax.grid(alpha=0.3)
        rate = workers_ax.twinx()
        bins = list(range(0, int(max(arrivals)) + 6, 5))
        rate.hist(arrivals, bins=bins, weights=[1 / 5] * len(arrivals), color="C7", alpha=0.25)
        if col == len(ids) - 1:
            rate.set_ylabel("arrivals / s (grey)", fontsize=8)
        workers_ax.set_zorder(rate.get_zorder() + 1)
        workers_ax.patch.set_visible(False)
        workers_ax.set_xlabel("time in the trace, s")
        most = max(max(_workers_over_time(p)[1]) for p in r["traces"][key]["pools"].values())
        workers_ax.set_yticks(range(0, most + 1))
        workers_ax.set_ylim(-0.1, most + 0.4)
        workers_ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("latency, s (log); dotted: a burst's first")
    axes[1][0].set_ylabel("workers (green: a stream)")
    axes[0][0].legend(fontsize=7, loc="upper left", markerscale=2)
    axes[1][0].legend(fontsize=7, loc="upper left")


def _workers_over_time(run: dict[str, Any]) -> tuple[list[float], list[int]]:
    """The pool's workers as a step function, from its scale events and worker-seconds.

    The starting count is what makes the events' steps add up to the measured
    worker-seconds over the run's duration (for a fixed pool: worker-seconds / duration).
    """
    duration = run["duration_s"]
    deltas = [(e["t"], len(e["workers"]) * (1 if e["direction"] == "up" else -1)) for e in run["scale_events"]]
    start = round((run["worker_seconds"] - sum(d * (duration - t) for t, d in deltas)) / duration)
    times, counts = [0.0], [start]
    for t, d in sorted(deltas):
        times.append(t)
        counts.append(counts[-1] + d)
    times.append(duration)
    counts.append(counts[-1])
    return times, counts


def _throughput(r: dict[str, Any], fig: Figure) -> None:
    """Long recordings' wall time by way of decoding; a short request on a busy pool; batching layouts."""
    long_ax, fair_ax, batch_ax = fig.subplots(1, 3, width_ratios=(3, 1.2, 2.2))
    hows = list(r["long"])
    recordings = list(r["long"][hows[0]])
    width = 0.8 / len(hows)
    for i, how in enumerate(hows):
        xs = [k + (i - (len(hows) - 1) / 2) * width for k in range(len(recordings))]
        mean_wer = 100 * sum(r["long"][how][n]["wer"] for n in recordings) / len(recordings)
        long_ax.bar(xs, [r["long"][how][n]["s"] for n in recordings], width, label=f"{how} (WER {mean_wer:.1f}%)")
    meta = r.get("recordings", {})
    long_ax.set_xticks(
        range(len(recordings)),
        [f"{n.removeprefix('long-')} ({meta[n]['split']})" if n in meta else n for n in recordings],
        fontsize=7,
        rotation=35 if len(recordings) > 4 else 0,
        ha="right" if len(recordings) > 4 else "center",
    )
    long_ax.set_ylabel("wall time, s")
    long_ax.set_title("long recordings", fontsize=10)
    long_ax.legend(fontsize=6, loc="upper left")
    long_ax.set_ylim(0, 1.6 * max(row["s"] for per in r["long"].values() for row in per.values()))

    fair = r["fairness"]
    busy = f"{fair['workers']} workers\nbusy" if "workers" in fair else "every worker\nbusy"
    bars = fair_ax.bar(["idle", busy], [_median(fair["idle_s"]), _median(fair["busy_s"])], color=["C2", "C3"])
    _label_bars(fair_ax, bars)
    for x, key in enumerate(("idle_s", "busy_s")):
        fair_ax.scatter([x + 0.3] * len(fair[key]), fair[key], s=8, color="k", zorder=3)
    fair_ax.set_ylabel("short request, s (bar: p50, dots: runs)", fontsize=8)
    fair_ax.set_title("fairness", fontsize=10)
    fair_ax.tick_params(axis="x", labelsize=8)
    fair_ax.margins(y=0.15)

    layouts = list(r["batching"])
    rates = [r["batching"][k]["requests"] / sum(r["batching"][k]["wall_s"]) for k in layouts]
    bars = batch_ax.bar(range(len(layouts)), rates, color="C0")
    batch_ax.bar_label(
        bars,
        labels=[f"p95 {_pct(r['batching'][k]['latency_s'], 95):.2f} s" for k in layouts],
        fontsize=7,
        padding=1,
    )
    batch_ax.set_xticks(range(len(layouts)), layouts, fontsize=7, rotation=15, ha="right")
    batch_ax.set_ylabel("requests / s")
    batch_ax.set_title("concurrent requests over HTTP", fontsize=10)
    batch_ax.margins(y=0.2)


def _accuracy(r: dict[str, Any], fig: Figure) -> None:
    """Held-out WER by length class, full window against auto (clips, not a suite's summary)."""
    from ..wer import word_error_rate

    split = "held-out" if any(c["split"] == "held-out" for c in r["clips"]) else "tune"  # --split tune
    held = [c for c in r["clips"] if c["split"] == split]
    classes = sorted({c["length_class"] for c in held})
    ax = fig.add_subplot(1, 1, 1)
    width = 0.38
    for i, mode in enumerate(("full", "auto")):
        values = []
        for k in classes:
            clips = [c for c in held if c["length_class"] == k]
            values.append(100 * sum(word_error_rate(c["text"], c[mode]["text"]) for c in clips) / len(clips))
        bars = ax.bar([x + (i - 0.5) * width for x in range(len(classes))], values, width, label=f"window={mode}")
        _label_bars(ax, bars, "{:.0f}")
    ax.set_xticks(range(len(classes)), [f"{k} s" for k in classes])
    ax.set_ylabel(f"WER % ({split} half)")
    ax.set_title("accuracy dev set: word error rate by clip length")
    ax.legend()


def _ray_serve(r: dict[str, Any], figure: Figure) -> None:
    """Latency (wall and overhead) and throughput: whisperpool serve against Ray Serve."""
    lat, tp = r["latency"], r["throughput_clips_per_s"]
    paths, colors = ("serve", "ray"), ("tab:blue", "tab:orange")
    left, right = figure.subplots(1, 2)
    x = range(2)
    width = 0.38
    for i, (path, color) in enumerate(zip(paths, colors, strict=True)):
        values = [_median(lat[path]["wall_s"]) * 1000, _median(lat[path]["overhead_s"]) * 1000]
        left.bar([v + (i - 0.5) * width for v in x], values, width, label=path, color=color)
    left.set_xticks(list(x), ["p50 latency, 3 s clip", "p50 wall minus inference"])
    left.set_ylabel("ms")
    left.legend()
    right.bar(list(paths), [_median(tp[p]) for p in paths], color=colors)
    right.set_ylabel("clips per second (median round)")
    right.set_title("throughput, 4 in flight")


def _ray_batch(r: dict[str, Any], fig: Figure) -> None:
    """Files a second (whole run, steady) and time to the first result: the local CLI against Ray."""
    rate, first = fig.subplots(1, 2, width_ratios=(3, 2))
    hows = ("local", "ray")
    labels = ("whisperpool transcribe", "ray transcribe")
    for i, (key, name) in enumerate((("files_per_s", "whole run"), ("steady_files_per_s", "steady"))):
        values = [r["summary"][how][key] for how in hows]
        rate.bar([x + 0.4 * i for x in range(len(hows))], values, width=0.4, label=name)
    rate.set_xticks([x + 0.2 for x in range(len(hows))], labels)
    rate.set_ylabel("files / s")
    rate.legend()
    first.bar(labels, [r["summary"][how]["first_s"] for how in hows], color="tab:gray")
    first.set_ylabel("s from start to the first result")
    if r.get("shared_machine"):
        rate.set_title("a shared machine: compare the ratios", fontsize=9)


def _engines(r: dict[str, Any], fig: Figure) -> None:
    """Median latency by clip length, one bar per engine; WER on the held-out clips beside."""
    from .engines import LENGTHS, summary

    rows = summary(r)
    lat_ax, wer_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    width = 0.8 / len(rows)
    for i, (label, row) in enumerate(rows.items()):
        xs = [x + (i - (len(rows) - 1) / 2) * width for x in range(len(LENGTHS))]
        lat_ax.bar(xs, [row["latency_s"][str(n)] for n in LENGTHS], width, label=label)
    lat_ax.set_xticks(range(len(LENGTHS)), [f"{n} s" for n in LENGTHS])
    lat_ax.set_ylabel("seconds (median inference)")
    lat_ax.set_title("latency by clip length, one warm worker", fontsize=10)
    lat_ax.legend(fontsize=7)
    bars = wer_ax.bar(range(len(rows)), [row["wer"] for row in rows.values()])
    _label_bars(wer_ax, bars, "{:.1f}")
    wer_ax.set_xticks(range(len(rows)), list(rows), fontsize=7, rotation=15, ha="right")
    wer_ax.set_ylabel("WER % (held-out eval clips)")
    wer_ax.set_title("accuracy", fontsize=10)
    wer_ax.margins(y=0.2)


_DRAWERS: dict[str, Callable[[dict[str, Any], Figure], None]] = {
    "accuracy": _accuracy,
    "engines": _engines,
    "pool": _pool,
    "ray_batch": _ray_batch,
    "windows": _windows,
    "streaming": _streaming,
    "adaptive": _adaptive,
    "throughput": _throughput,
    "ray_serve": _ray_serve,
}

__all__ = ["plot"]
