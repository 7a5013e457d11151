"""The README's benchmark tables (markdown) from benchmarks/results/*.json.

python scripts/bench_table.py [pool.json] > /tmp/table.md     # the pool suite, printed
python scripts/bench_table.py --write README.md                # windows, streaming, ... in place (where marked)
"""

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from whisperpool.bench import accuracy, adaptive, engines, streaming, windows  # noqa: E402
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


def _targets(ts) -> list[str]:
    lines = ["| target (same run) | measured | limit | met |", "|---|---:|---:|---|"]
    for t in ts:
        unit = "" if t.unit == "x" else f" {t.unit}"
        op = ">=" if t.higher_is_better else "<="
        lines.append(f"| {t.name} | {t.value:.2f}{unit} | {op} {t.limit:.2f}{unit} | {'yes' if t.met else 'NO'} |")
    return lines


def windows_md(path: Path) -> str:
    r = json.loads(path.read_text())
    st = r["settings"]
    lines = [
        f"Measured {r['date'][:10]} on a {r['machine']['cores']}-core machine (`{path}`): "
        f"{st.get('timed', 'one warm in-process backend')}, {st['threads']} threads, beam {st['beam_size']}, "
        f"language set, {st['runs']} runs per clip "
        "and window, alternating; WER in % against the texts the clips were rendered from.",
        "",
        "| length | clips | mean s | full p50 s | auto p50 s | full / auto | WER full | WER auto | auto took | fallbacks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for length, row in windows.summary(r).items():
        lines.append(
            f"| {length} s | {row['clips']} | {row['mean_seconds']:.1f} | {row['full_s']:.3f} | {row['auto_s']:.3f} | "
            f"{row['speedup']:.2f} | {row['wer_full']:.1f} | {row['wer_auto']:.1f} | {row['auto_window']} | {row['fallbacks']} |"
        )
    lines += ["", *_targets(windows.targets(r))]
    return "\n".join(lines)


def streaming_md(path: Path) -> str:
    r = json.loads(path.read_text())
    st, s = r["settings"], streaming.summary(r)
    lines = [
        f"Measured {r['date'][:10]} on a {r['machine']['cores']}-core machine (`{path}`): {st['sentences']} sentences "
        f"({st['stream_seconds']} s with {st['pause_s']:.0f} s pauses) played at real-time pace in 100 ms chunks into "
        f"sessions on {st['workers']} single-thread workers; updates every {st['update_interval_s']} s of new audio, "
        f"an utterance ends after {st['vad_min_silence_s']} s of silence.",
        "",
        "| one stream | value |",
        "|---|---:|",
        f"| final text after the end of speech, median | {s['final_p50_s']:.2f} s |",
        f"| final text after the end of speech, p95 | {s['final_p95_s']:.2f} s |",
        f"| first partial text after the start of speech, median | {s['first_partial_p50_s']:.2f} s |",
        f"| WER of the joined finals | {s['wer_streaming']:.1f} % |",
        f"| WER of an offline transcription of the same audio (full window) | {s['wer_offline']:.1f} % |",
        "",
        "| concurrent streams | final latency p50 s | p95 s |",
        "|---:|---:|---:|",
    ]
    for count, v in s["by_count"].items():
        lines.append(f"| {count} | {v['p50']:.2f} | {v['p95']:.2f} |")
    lines += ["", *_targets(streaming.targets(r))]
    return "\n".join(lines)


def adaptive_md(path: Path) -> str:
    r = json.loads(path.read_text())
    st, s = r["settings"], adaptive.summary(r)
    a = st["adaptive"]
    load = r.get("load_before"), r.get("load_after")
    lines = [
        f"Measured {r['date'][:10]} on a {r['machine']['cores']}-core machine (`{path}`; load average "
        f"{load[0][0] if load[0] else '?'} before, {load[1][0] if load[1] else '?'} after: "
        f"{'shared with other work' if max(load[0][0] if load[0] else 0, load[1][0] if load[1] else 0) > 1.5 else 'quiet'}). "
        f"Traces {', '.join(s['rows'])} of the family ({s['over']} half), each replayed on a fixed pool of "
        f"{adaptive.MAX} and the adaptive pool of {adaptive.MIN}-{adaptive.MAX} in the same run, same arrivals and "
        f"audio, {st['threads_per_worker']} thread(s) per worker; adaptive settings (chosen on the tune half): "
        f"scale_up_wait_s={a['scale_up_wait_s']}, scale_down_idle_s={a['scale_down_idle_s']}, "
        f"target_utilization={a['target_utilization']}.",
        "",
        "| trace | half | requests / streams | fixed p50 / p95 s | adaptive p50 / p95 s | p95 ratio "
        "| worker-s ratio | a burst's first request: fixed / adaptive s | stream finals p95: fixed / adaptive s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(x):
        return "-" if x is None else f"{x:.2f}"

    for k, row in s["rows"].items():
        tr = r["traces"][k]["trace"]
        firsts = ", ".join(
            f"{x:.2f} / {y:.2f}" for x, y in zip(row["burst_first_fixed_s"], row["burst_first_adaptive_s"], strict=True)
        )
        lines.append(
            f"| {k} {tr['shape']} | {tr['half']} | {len(tr['requests'])} / {len(tr['streams'])} "
            f"| {row['fixed_p50']:.2f} / {row['fixed_p95']:.2f} | {row['adaptive_p50']:.2f} / {row['adaptive_p95']:.2f} "
            f"| {row['p95_ratio']:.2f} | {row['ws_ratio']:.2f} | {firsts or '-'} "
            f"| {f(row['stream_p95_fixed'])} / {f(row['stream_p95_adaptive'])} |"
        )
    lines += [
        "",
        f"| {s['over']} half, {len(s['traces'])} traces | p95 ratio | worker-seconds ratio |",
        "|---|---:|---:|",
        f"| median trace | {s['p95_ratio_median']:.2f} | {s['ws_ratio_median']:.2f} |",
        f"| worst trace | {s['p95_ratio_worst']:.2f} | {s['ws_ratio_worst']:.2f} |",
        "",
        *_targets(adaptive.targets(r)),
        "",
    ]
    m = r.get("model")
    if m:
        lines += [
            f"| the model (requests only, measured service times, warm-up {m['warm_up_s']:.1f} s) | p95 ratio "
            "| worker-seconds ratio |",
            "|---|---:|---:|",
        ]
        lines += [f"| trace {k} | {v['p95_ratio']:.2f} | {v['ws_ratio']:.2f} |" for k, v in m["traces"].items()]
        lines.append("")
    if "quiet" in r:
        lines += [
            f"| first request after {st['quiet_s']:.0f} s of quiet (3 s clip, 2 threads) | before the quiet, median s "
            "| first after, s | ratio |",
            "|---|---:|---:|---:|",
        ]
        for name, v in r["quiet"].items():
            ratio = v["after_quiet_s"] / v["before_s"]
            lines.append(f"| {name} | {v['before_s']:.3f} | {v['after_quiet_s']:.3f} | {ratio:.2f} |")
    return "\n".join(lines).rstrip()


def _wer_rows(title: str, rows: dict) -> list[str]:
    lines = [
        f"| {title} | clips | WER full | WER auto | auto - full | clips worse / better under auto "
        "| auto fell back | full / auto time | tune: WER full | WER auto | auto - full |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, (h, t) in rows.items():
        if not h["clips"]:
            continue
        lines.append(
            f"| {key} | {h['clips']} | {h['wer_full']:.1f} | {h['wer_auto']:.1f} | {h['auto_minus_full']:+.2f} "
            f"| {h['auto_worse']} / {h['auto_better']} | {h['auto_fallbacks']} | {h['full_over_auto']:.2f} "
            f"| {t['wer_full']:.1f} | {t['wer_auto']:.1f} | {t['auto_minus_full']:+.2f} |"
        )
    return lines


def accuracy_md(path: Path) -> str:
    r = json.loads(path.read_text())
    st, s = r["settings"], accuracy.summary(r)
    h, t = s["held-out"], s["tune"]
    lines = [
        f"Measured {r['date'][:10]} on a {r['machine']['cores']}-core machine (`{path}`): {len(r['clips'])} clips, "
        f"one warm worker ({st['threads']} threads, int8, beam {st['beam_size']}), each clip's language set; "
        "WER in % over the words of each group; the held-out half first, the tune half's WER for comparison.",
        "",
        *_wer_rows("length", {f"{n} s": (h["length"][str(n)], t["length"][str(n)]) for n in accuracy.LENGTHS}),
        "",
        *_wer_rows("condition", {c: (h["condition"][c], t["condition"][c]) for c in h["condition"]}),
        "",
        *_wer_rows(
            "language", {c: (h["language"][c], t["language"][c]) for c in h["language"]} | {"all": (h["all"], t["all"])}
        ),
        "",
        "| live streams, 3-10 s clips | clips | WER finals | WER offline auto | WER offline full "
        "| final after end of speech p50 s | p95 s | finals fell back | why | finals retried |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for split in accuracy.SPLITS:
        rows = (
            {"all": s[split]["streams"]}
            | {f"{n} s": s[split]["streams_by_length"][str(n)] for n in accuracy.STREAMED_LENGTHS}
            | s[split]["streams_by_condition"]
        )
        for key, v in rows.items():
            if not v["clips"]:
                continue
            why = ", ".join(f"{k} {n}" for k, n in v["final_fallback_reasons"].items())
            lines.append(
                f"| {split}, {key} | {v['clips']} | {v['wer_stream']:.1f} | {v['wer_auto']:.1f} | {v['wer_full']:.1f} "
                f"| {v['latency_p50_s']:.2f} | {v['latency_p95_s']:.2f} | {v['final_fallbacks']}/{v['finals']} | {why} "
                f"| {v.get('final_retries', '')} |"
            )
    low, high = h["all"]["auto_minus_full_ci95"]
    lines += [
        "",
        f"Held-out, all clips: auto - full = {h['all']['auto_minus_full']:+.2f} points, 95% interval "
        f"{low:+.2f} to {high:+.2f} (clips resampled, paired).",
        "",
        *_targets(accuracy.targets(r)),
    ]
    return "\n".join(lines)


def engines_md(path: Path) -> str:
    r = json.loads(path.read_text())
    st, m, rows = r["settings"], r["machine"], engines.summary(r)
    load = m.get("load_average_at_start"), m.get("load_average_at_end")
    shared = "shared with other work" if m.get("shared") else "quiet"
    lines = [
        f"Measured {r['date'][:10]} on a {m['cores']}-core machine, {shared} (1-minute load average "
        f"{load[0][0]:.1f} at the start, {load[1][0]:.1f} at the end; `{path}`). Latency: {st['latency']}, median "
        f"of {st['latency_clips_per_length']} clips x {st['latency_runs']} runs per length, engines taking turns; in brackets the ratio to {st['baseline']} in the same "
        f"run. Pool: {st['throughput']} ({st['eval_clips']} clips); WER in % against the clips' texts.",
        "",
        "| engine | " + " | ".join(f"{n} s" for n in engines.LENGTHS) + " |",
        "|---|" + "---:|" * len(engines.LENGTHS),
    ]
    for label, row in rows.items():
        cells = " | ".join(
            f"{row['latency_s'][str(n)]:.2f} ({row['latency_ratio'][str(n)]:.2f}x)" for n in engines.LENGTHS
        )
        lines.append(f"| {label} | {cells} |")
    lines += [
        "",
        "| engine | pool warm s | load s | RSS per worker MiB | clips/s | audio x real time | WER all | WER clean |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in rows.items():
        lines.append(
            f"| {label} | {row['warm_s']:.1f} | {row['load_s']:.2f} | {row['rss_mb']:.0f} | {row['clips_per_s']:.2f} "
            f"| {row['audio_x_realtime']:.1f} | {row['wer']:.1f} | {row['wer_clean']:.1f} |"
        )
    lines += ["", *_targets(engines.targets(r))]
    return "\n".join(lines)


def write(readme: Path) -> None:
    text = readme.read_text()
    renders = (
        ("windows", windows_md),
        ("streaming", streaming_md),
        ("adaptive", adaptive_md),
        ("accuracy", accuracy_md),
        ("engines", engines_md),
    )
    for name, render in renders:
        source = Path(f"benchmarks/results/{name}.json")
        start, end = f"<!-- bench-{name}:start -->", f"<!-- bench-{name}:end -->"
        if not source.is_file() or start not in text:
            continue
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{render(source)}\n{end}{tail}"
    readme.write_text(text)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        write(Path(sys.argv[2]))
    else:
        main()
