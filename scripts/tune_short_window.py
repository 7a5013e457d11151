"""Sweep the short window's settings on the TUNE half of the accuracy dev set only.

python scripts/tune_short_window.py [--output benchmarks/results/short-window-tune.json]
    [--floors 5,6,8,10,12,30] [--tails 1,2] [--log-prob-limits -1.0,-0.8]

For every tune clip the fast path takes (up to ``short_window_max_s``, 8 s), in its
language, the packaged model (int8, beam 1, one process, all cores) decodes:

* the full 30 s window once (``window="full"``: the baseline, and what a fallback gives);
* the short window at each window size the grid asks for, once per size: the window is
  ``max(floor, ceil(seconds + tail))``, so configurations that give a clip the same
  window share one decoding. The guard runs with its log-probability rule off and the
  decoding's average log-probability is kept, so each limit of the grid is applied
  afterwards: a decoding the guard rejects for any reason is the full window's text, at
  the short attempt's time plus the full one's.

Per configuration: WER of ``full`` and ``auto`` over each length class (errors summed
over the class's reference words), their difference, the fallbacks, and the speed-up
(sum of full decode times over the sum of auto's, decode = ``backend.transcribe``,
speech gate included, as a worker's inference time). The clips where the default
configuration's ``auto`` differs from ``full`` are listed with both texts, to see what
the short window gets wrong. The held-out half is never decoded here: settings chosen
on this table are reported by ``whisperpool bench --accuracy`` on the held-out half.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

from whisperpool import DecodeOptions  # noqa: E402
from whisperpool.audio import load_audio  # noqa: E402
from whisperpool.backends import faster_whisper as fw  # noqa: E402
from whisperpool.bench.accuracy import EVAL, eval_set  # noqa: E402
from whisperpool.bench.common import header, table  # noqa: E402
from whisperpool.config import available_cores  # noqa: E402
from whisperpool.models import ensure_packaged_model  # noqa: E402
from whisperpool.wer import normalize, word_error_rate  # noqa: E402
from whisperpool.worker.protocol import BackendSpec, FakeBehavior  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "short-window-tune.json"
DEFAULT = (fw.SHORT_WINDOW_MIN_S, fw.SHORT_WINDOW_TAIL_S, fw.LOG_PROB_LIMIT)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def window_of(seconds: float, floor: float, tail: float) -> int:
    return int(max(floor, math.ceil(seconds + tail)))


def decode(backend, audio, options: DecodeOptions) -> tuple[dict, float]:
    start = time.perf_counter()
    result = backend.transcribe(audio, options)
    took = time.perf_counter() - start
    seg = result.segments[0] if result.segments else None
    return {
        "text": result.text,
        "fallback": result.fallback,
        "avg_logprob": None if seg is None else seg.avg_logprob,
        "no_speech_prob": None if seg is None else seg.no_speech_prob,
    }, took


def auto_of(clip: dict, window: int, limit: float) -> tuple[str, float, str | None]:
    """``window="auto"`` with this window and log-probability limit: text, time, fallback reason."""
    short = clip["short"][str(window)]
    reason = short["fallback"]
    lp, silence = short["avg_logprob"], (short["no_speech_prob"] or 0.0) > fw.NO_SPEECH_LIMIT
    if reason is None and lp is not None and lp < limit and not silence:
        reason = "log_probability"
    if reason is None:
        return short["text"], short["time_s"], None
    return clip["full"]["text"], short["time_s"] + clip["full"]["time_s"], reason


def errors(clips: list[dict], floor: float, tail: float, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: reference words, and auto's errors minus full's."""
    words, diff = [], []
    for c in clips:
        text = auto_of(c, window_of(c["seconds"], floor, tail), limit)[0]
        n = len(normalize(c["reference"]))
        words.append(n)
        diff.append(n * (word_error_rate(c["reference"], text) - word_error_rate(c["reference"], c["full"]["text"])))
    return np.array(words, float), np.array(diff)


def interval(words: np.ndarray, diff: np.ndarray, draws: int = 2000) -> tuple[float, float]:
    """95% interval of the points ``diff`` sums to, clips resampled with replacement (paired, seeded)."""
    picks = np.random.default_rng(0).integers(0, words.size, size=(draws, words.size))
    points = 100 * diff[picks].sum(axis=1) / np.maximum(words[picks].sum(axis=1), 1)
    low, high = np.percentile(points, [2.5, 97.5])
    return round(float(low), 2), round(float(high), 2)


def summarize(clips: list[dict], floor: float, tail: float, limit: float) -> dict:
    words = errors_full = errors_auto = 0.0
    time_full = time_auto = 0.0
    fallbacks = worse = better = 0
    for c in clips:
        text, took, reason = auto_of(c, window_of(c["seconds"], floor, tail), limit)
        n = len(normalize(c["reference"]))
        wf, wa = word_error_rate(c["reference"], c["full"]["text"]), word_error_rate(c["reference"], text)
        words, errors_full, errors_auto = words + n, errors_full + wf * n, errors_auto + wa * n
        time_full, time_auto = time_full + c["full"]["time_s"], time_auto + took
        fallbacks += reason is not None
        worse, better = worse + (wa > wf), better + (wa < wf)
    return {
        "clips": len(clips),
        "words": int(words),
        "errors_full": round(errors_full, 2),
        "errors_auto": round(errors_auto, 2),
        "wer_full": 100 * errors_full / words if words else None,
        "wer_auto": 100 * errors_auto / words if words else None,
        "auto_minus_full": 100 * (errors_auto - errors_full) / words if words else None,
        "auto_worse": worse,
        "auto_better": better,
        "fallbacks": fallbacks,
        "speedup": time_full / time_auto if time_auto else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", type=Path, default=OUT)
    ap.add_argument("--floors", type=floats, default=[5, 6, 8, 10, 12, 30])
    ap.add_argument("--tails", type=floats, default=[1, 2])
    ap.add_argument("--log-prob-limits", type=floats, default=[-1.0, -0.8])
    ap.add_argument("--max-s", type=float, default=DecodeOptions().short_window_max_s)
    ap.add_argument("--summarize", type=Path, help="report a saved run (its clips) again instead of decoding")
    args = ap.parse_args()
    configs = list(itertools.product(args.floors, args.tails, args.log_prob_limits))
    if DEFAULT not in configs:
        configs.insert(0, DEFAULT)
    if args.summarize:
        saved = json.loads(args.summarize.read_text())
        report(saved["clips"], configs, args, saved)
    else:
        report(measure(args, configs), configs, args, header())


def measure(args: argparse.Namespace, configs: list[tuple[float, float, float]]) -> list[dict]:
    out = Console(stderr=True)
    meta = eval_set()
    names = sorted(n for n, m in meta.items() if m["split"] == "tune" and m["seconds"] <= args.max_s)
    threads = available_cores()
    spec = BackendSpec("faster-whisper", str(ensure_packaged_model()), "cpu", "int8", threads, 0, FakeBehavior())
    backend = fw.FasterWhisperBackend(spec)
    backend.load()
    backend.warm_up(DecodeOptions())
    fw.LOG_PROB_LIMIT = -math.inf  # applied afterwards, per limit (see auto_of)
    fw.SHORT_WINDOW_TAIL_S = 0  # the window is given whole through SHORT_WINDOW_MIN_S

    clips: list[dict] = []
    out.print(f"[dim]{len(names)} tune clips up to {args.max_s} s, {len(configs)} configurations[/dim]")
    for i, name in enumerate(names):
        m = meta[name]
        audio = load_audio(EVAL / f"{name}.opus")
        options = DecodeOptions(language=m["language"])
        clip = {"name": name, "reference": m["text"], "seconds": m["seconds"]} | {
            k: m[k] for k in ("length_class", "condition", "language", "voice")
        }
        full, took = decode(backend, audio, options.replace(window="full"))
        clip["full"] = full | {"time_s": round(took, 4)}
        clip["short"] = {}
        for window in sorted({window_of(m["seconds"], f, t) for f, t, _ in configs}):
            fw.SHORT_WINDOW_MIN_S = window
            short, took = decode(backend, audio, options.replace(window="short"))
            clip["short"][str(window)] = short | {"time_s": round(took, 4)}
        clips.append(clip)
        if (i + 1) % 10 == 0:
            out.print(f"[dim]  {i + 1}/{len(names)}[/dim]")
    return clips


def report(clips: list[dict], configs: list[tuple[float, float, float]], args: argparse.Namespace, head: dict) -> None:
    out = Console(stderr=True)
    classes = sorted({c["length_class"] for c in clips})
    conditions = list(dict.fromkeys(c["condition"] for c in clips))
    base_words, base_diff = errors(clips, *DEFAULT)
    rows = []
    for floor, tail, limit in configs:
        row = {"floor_s": floor, "tail_s": tail, "log_prob_limit": limit, "default": (floor, tail, limit) == DEFAULT}
        row["all"] = summarize(clips, floor, tail, limit)
        row["length"] = {
            str(n): summarize([c for c in clips if c["length_class"] == n], floor, tail, limit) for n in classes
        }
        row["condition"] = {
            k: summarize([c for c in clips if c["condition"] == k], floor, tail, limit) for k in conditions
        }
        words, diff = errors(clips, floor, tail, limit)
        row["auto_minus_full_ci95"] = interval(words, diff)
        row["minus_default_ci95"] = interval(words, diff - base_diff)  # this configuration's auto against the default's
        rows.append(row)
    base = next(r for r in rows if r["default"])["all"]["speedup"]
    for r in rows:
        # the share of the default's speed advantage (speed-up - 1) this configuration keeps
        r["advantage_kept"] = (r["all"]["speedup"] - 1) / (base - 1) if base and base > 1 else None

    t = table(
        "tune half, clips up to 8 s: WER % full / auto (diff = auto - full, points); fb fallbacks; speed-up full/auto",
        (
            "floor",
            "tail",
            "lp",
            *(f"{n} s diff" for n in classes),
            "all full",
            "all auto",
            "diff",
            "w/b",
            "fb",
            "95% CI",
            "vs default",
            "speed-up",
            "kept",
        ),
    )
    for r in rows:
        a = r["all"]
        t.add_row(
            f"{r['floor_s']:g}" + (" *" if r["default"] else ""),
            f"{r['tail_s']:g}",
            f"{r['log_prob_limit']:g}",
            *(f"{r['length'][str(n)]['auto_minus_full']:+.2f}" for n in classes),
            f"{a['wer_full']:.2f}",
            f"{a['wer_auto']:.2f}",
            f"{a['auto_minus_full']:+.2f}",
            f"{a['auto_worse']}/{a['auto_better']}",
            str(a["fallbacks"]),
            "{:+.1f}..{:+.1f}".format(*r["auto_minus_full_ci95"]),
            "" if r["default"] else "{:+.1f}..{:+.1f}".format(*r["minus_default_ci95"]),
            f"{a['speedup']:.2f}x",
            f"{r['advantage_kept']:.0%}",
        )
    Console(width=190).print(t)
    d = next(r for r in rows if r["default"])
    t = table("the default, by condition", ("condition", "clips", "words", "full", "auto", "diff", "w/b", "fb"))
    for k, g in d["condition"].items():
        t.add_row(
            k,
            str(g["clips"]),
            str(g["words"]),
            f"{g['wer_full']:.1f}",
            f"{g['wer_auto']:.1f}",
            f"{g['auto_minus_full']:+.2f}",
            f"{g['auto_worse']}/{g['auto_better']}",
            str(g["fallbacks"]),
        )
    Console(width=190).print(t)

    floor, tail, limit = DEFAULT
    differ = []
    for c in clips:
        text, _, reason = auto_of(c, window_of(c["seconds"], floor, tail), limit)
        if normalize(text) != normalize(c["full"]["text"]):
            differ.append({"name": c["name"], "reference": c["reference"], "full": c["full"]["text"], "auto": text})
            print(f"{c['name']}\n  ref:  {c['reference']}\n  full: {c['full']['text']}\n  auto: {text}")

    result = {k: head[k] for k in ("date", "machine")} | {
        "settings": {
            "split": "tune",
            "max_s": args.max_s,
            "threads": head["machine"]["cores"],
            "model": "base (packaged)",
            "compute_type": "int8",
            "beam_size": DecodeOptions().beam_size,
            # at the end of the decoding: other work on the machine slows both windows
            "load_average": head.get("settings", {}).get("load_average") or os.getloadavg(),
            "default": {"floor_s": DEFAULT[0], "tail_s": DEFAULT[1], "log_prob_limit": DEFAULT[2]},
        },
        "configs": rows,
        "default_differs": differ,
        "clips": clips,
    }
    args.output.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    out.print(f"[dim]wrote {args.output}[/dim]")


if __name__ == "__main__":
    main()
