"""Where does a long recording decoded in pieces lose words against one sequential pass?

python scripts/piece_wer.py [--split tune] [--variants 30,30t,20,20t] [--output benchmarks/results/piece-wer.json]
python scripts/piece_wer.py --pool [--split held-out]

Each recording of the split is cut into pieces exactly as the default pool cuts it (its
plan spans, faster-whisper's Silero VAD per span, :func:`balanced_pieces` for two
workers) and every piece is decoded by ``FasterWhisperBackend.transcribe_pieces``, as a
worker decodes it, in this process. WER is deterministic at temperature 0, so this gives
the pool's text without the pool's processes (``bench --throughput`` measures the pool
itself). A variant is ``<piece_s>``, plus ``t`` to decode every piece with timestamp
tokens (the default decodes pieces longer than the short window without them), plus
``p<seconds>`` to put that much silence before and after each piece (``f<seconds>``:
as much of it as fits one window with the piece), plus ``w<n>`` to
cut for ``n`` workers rather than two (other cuts: another sample of piece boundaries).

Besides the WER, each variant's errors are located: the hypothesis is aligned to the
reference word by word (Levenshtein, the same normaliser as the WER), each error is
given to the piece its hypothesis word came from, and counted as at a piece's edge (its
first or last ``EDGE`` words) or inside it; runs of ``DROPPED`` or more deleted
reference words in a row count as dropped sentences. The sequential pass is analysed
alike (its 30 s windows are not known, so only its runs). Results already in the
output file are kept, so variants can be added run by run. Decisions are taken on the
``tune`` recordings; the ``held-out`` ones are measured once, for the chosen variant.

With ``--pool`` the split goes through real pools instead (the default one and one
worker alone, as ``bench --throughput`` runs it), for WER and wall time in one run:
``pools`` and ``pool_splits`` in the JSON.
"""

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

import whisperpool.backends.faster_whisper as fw  # noqa: E402
from whisperpool.audio import SAMPLE_RATE  # noqa: E402
from whisperpool.bench.common import header, table  # noqa: E402
from whisperpool.bench.throughput import recordings  # noqa: E402
from whisperpool.config import DecodeOptions, PoolConfig, available_cores  # noqa: E402
from whisperpool.models import resolve_model  # noqa: E402
from whisperpool.pool.pieces import MAX_GAP_S, balanced_pieces, plan_spans  # noqa: E402
from whisperpool.testing import FakeBehavior  # noqa: E402
from whisperpool.wer import normalize, word_error_rate  # noqa: E402
from whisperpool.worker.protocol import BackendSpec  # noqa: E402

WORKERS = 2  # the default pool's on this machine: the pieces are cut for it
NOTE = "WER is deterministic for the pieces (temperature 0); times are only indicative: check the load average"
EDGE = 2  # words at each end of a piece that count as its edge
WINDOW_S = 30.0  # Whisper's window: a padded piece fits one
DROPPED = 4  # this many deleted reference words in a row: a dropped sentence, not a slip


def parse(variant: str) -> tuple[float, bool | str, float, int, bool]:
    """``<piece_s>[t|s][p|f<pad_s>][w<workers>]`` as (piece_s, timestamps, pad_s, workers,
    fit): ``f`` pads only as much as fits one window (up to ``pad_s``); ``s`` (timestamps
    ``"seek"``) decodes each piece the sequential way instead, faster-whisper's own
    loop over windows with timestamps and the previous text as prompt, within the piece
    (its temperature ladder runs inside, so it reports no piece re-decoded)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([ts]?)(?:([pf])(\d+(?:\.\d+)?))?(?:w(\d+))?", variant)
    if match is None:
        raise SystemExit(f"not a variant: {variant!r}")
    timestamps = "seek" if match[2] == "s" else match[2] == "t"
    return float(match[1]), timestamps, float(match[4] or 0), int(match[5] or WORKERS), match[3] == "f"


def cut(backend, audio, piece_s: float, workers: int = WORKERS) -> tuple[tuple[int, int], ...]:
    """The pieces a pool of ``workers`` makes of ``audio`` (see ``LongRequest``)."""
    span = PoolConfig().plan_span_s
    parts = max(1, min(workers, int(audio.size / SAMPLE_RATE // span)))
    regions = []
    for start, end in plan_spans(audio, parts):
        regions += [(s + start, e + start) for s, e in fw.speech_regions(audio[start:end], piece_s)]
    return balanced_pieces(regions, int(piece_s * SAMPLE_RATE), int(MAX_GAP_S * SAMPLE_RATE), workers)


def align(ref: list[str], hyp: list[str]) -> list[tuple[str, int | None, int | None]]:
    """Levenshtein alignment as (op, ref index, hyp index), op in ok/sub/del/ins."""
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    ops, i, j = [], n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            ops.append(("ok" if ref[i - 1] == hyp[j - 1] else "sub", i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            ops.append(("del", i - 1, j if j < m else None))
            i -= 1
        else:
            ops.append(("ins", None, j - 1))
            j -= 1
    return ops[::-1]


def errors(reference: str, piece_texts: list[str]) -> dict:
    """Errors by kind, at piece edges or inside, and dropped runs (see the module)."""
    ref = normalize(reference)
    hyp, owner = [], []
    for k, text in enumerate(piece_texts):
        words = normalize(text)
        hyp += words
        owner += [k] * len(words)
    edge = set()
    for k in range(len(piece_texts)):
        where = [j for j, o in enumerate(owner) if o == k]
        edge.update(where[:EDGE] + where[-EDGE:])
    out = {"sub": 0, "del": 0, "ins": 0, "at_edge": 0, "inside": 0, "dropped_runs": 0, "dropped_words": 0}
    run = 0
    ops = align(ref, hyp)
    for op, _, j in ops + [("end", None, None)]:
        if op == "del":
            run += 1
        else:
            if run >= DROPPED:
                out["dropped_runs"] += 1
                out["dropped_words"] += run
            run = 0
        if op in ("sub", "del", "ins"):
            out[op] += 1
            near = j is not None and (j in edge or (op == "del" and j - 1 in edge))
            out["at_edge" if near and len(piece_texts) > 1 else "inside"] += 1
    return out


def boundary_split(reference: str, sequential: str, piece_texts: list[str]) -> dict:
    """Errors of the pieces and of the sequential pass on the same reference words: those
    within ``EDGE`` words of a piece boundary, and the rest. A gap that sits at the
    boundaries is the cut's fault; one spread inside is the decoding's."""
    ref = normalize(reference)
    hyp, first = [], []
    for text in piece_texts:
        first.append(len(hyp))
        hyp += normalize(text)
    pool_ops = align(ref, hyp)
    starts = set(first[1:])
    near = set()
    for _, i, j in pool_ops:  # the reference word where each piece after the first begins
        if j in starts and i is not None:
            near.update(range(i - EDGE, i + EDGE))
            starts.discard(j)

    def count(ops) -> dict:
        out, last = {"edge": 0, "inside": 0}, 0
        for op, i, _ in ops:
            at = i if i is not None else last  # an insertion counts where it sits
            last = at if i is None else i + 1
            if op != "ok":
                out["edge" if at in near else "inside"] += 1
        return out

    return {"edge_words": len(near), "pieces": count(pool_ops), "sequential": count(align(ref, normalize(sequential)))}


POOLS = {  # label -> PoolConfig changes, for --pool
    "pool, default": {},
    "pool, one worker": {"pool_size": 1, "threads_per_worker": None, "split_above_s": None},
}


def through_pools(split: str, output: Path, out: Console) -> None:
    """The default pool (as ``bench --throughput`` runs it) and one worker alone, in the
    same run: WER and wall time."""
    from whisperpool.pool import ProcessPool

    sets = recordings(split)
    saved = json.loads(output.read_text()) if output.exists() else {}
    runs = saved.get("pools", {})
    decode = DecodeOptions(language="en")
    model = None
    for label, changes in POOLS.items():
        threads = available_cores() if changes.get("pool_size") == 1 else None
        config = PoolConfig(decode=decode, **{**changes, "threads_per_worker": threads})
        with ProcessPool(config) as pool:
            for name, (audio, reference, _) in sets.items():
                started = time.perf_counter()
                result = pool.transcribe(audio, timeout=1800)
                row = {"s": time.perf_counter() - started, "wer": 100 * word_error_rate(reference, result.text)}
                runs.setdefault(name, {"split": split})[label] = {**row, "pieces": result.pieces}
                out.print(f"{label}, {name}: {row['wer']:.2f}% in {row['s']:.1f} s ({result.pieces} pieces)")
    for name, (audio, reference, _) in sets.items():
        if "sequential" not in runs[name]:
            if model is None:
                from faster_whisper import WhisperModel

                model = WhisperModel(
                    resolve_model("base").source, "cpu", compute_type="int8", cpu_threads=available_cores()
                )
            raw, _ = model.transcribe(audio, language="en", beam_size=1)
            runs[name]["sequential"] = {"wer": 100 * word_error_rate(reference, "".join(s.text for s in raw))}
    names = [n for n, r in runs.items() if r["split"] == split]
    summary = {label: sum(runs[n][label]["wer"] for n in names) / len(names) for label in (*POOLS, "sequential")}
    seconds = {label: sum(runs[n][label]["s"] for n in names) for label in POOLS}
    saved.setdefault("pool_splits", {})[split] = {
        "wer": summary,
        "minus_sequential": {label: summary[label] - summary["sequential"] for label in POOLS},
        "s": seconds,
        "default / one worker (time)": seconds["pool, default"] / seconds["pool, one worker"],
        "load_average": os.getloadavg(),
    }
    out.print(json.dumps(saved["pool_splits"][split], indent=1))
    output.write_text(json.dumps({**saved, "note": NOTE, "pools": runs}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="tune", choices=("tune", "held-out"))
    parser.add_argument("--variants", default="30,30t,25,25t,20,20t,15,15t")
    parser.add_argument("--pool", action="store_true", help="measure the chosen variant through the real pool")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/piece-wer.json"))
    args = parser.parse_args()
    if args.pool:
        through_pools(args.split, args.output, Console())
        return
    spec = BackendSpec(
        "faster-whisper", resolve_model("base").source, "cpu", "int8", available_cores(), 0, FakeBehavior()
    )
    backend = fw.FasterWhisperBackend(spec)
    backend.load()
    options = DecodeOptions(language="en").replace(vad_filter=False, speech_gate=False)
    out = Console()
    saved = json.loads(args.output.read_text()) if args.output.exists() else {}
    runs = saved.get("recordings", {})
    sets = recordings(args.split)
    for name, (audio, reference, split) in sets.items():
        run = runs.setdefault(name, {"split": split, "words": len(reference.split()), "variants": {}})
        if "sequential" not in run:
            started = time.perf_counter()
            raw, _ = backend.model.transcribe(audio, language="en", beam_size=1)
            text = "".join(s.text for s in raw).strip()
            run["sequential"] = {"wer": 100 * word_error_rate(reference, text), "s": time.perf_counter() - started}
            run["sequential"]["errors"] = errors(reference, [text])
            run["sequential"]["text"] = text
        for variant in args.variants.split(","):
            if variant in run["variants"]:
                continue
            piece_s, timestamps, pad_s, workers, fit = parse(variant)
            fw.PIECE_TIMESTAMPS = timestamps is True
            pieces = cut(backend, audio, piece_s, workers)
            started, texts, redone = time.perf_counter(), [], 0
            for start, end in pieces:
                room = (WINDOW_S * SAMPLE_RATE - (end - start)) // 2 if fit else pad_s * SAMPLE_RATE
                pad = np.zeros(int(min(pad_s * SAMPLE_RATE, room)), np.float32)
                piece = np.concatenate([pad, audio[start:end], pad])
                if timestamps == "seek":
                    result = backend.transcribe(piece, options.replace(window="full"))
                else:
                    result = backend.transcribe_pieces(piece, ((0, piece.size),), options)
                texts.append(result.text)
                redone += result.fallback is not None
            run["variants"][variant] = {
                "wer": 100 * word_error_rate(reference, " ".join(texts)),
                "s": time.perf_counter() - started,
                "pieces": [[round(s / SAMPLE_RATE, 2), round(e / SAMPLE_RATE, 2)] for s, e in pieces],
                "redecoded": redone,
                "errors": errors(reference, texts),
                "texts": texts,
            }
            out.print(
                f"{name} ({split}) {variant}: {run['variants'][variant]['wer']:.2f}% "
                f"(sequential {run['sequential']['wer']:.2f}%), {len(pieces)} pieces, {redone} re-decoded, "
                f"{run['variants'][variant]['s']:.0f} s"
            )
            args.output.write_text(json.dumps({**saved, **header(), "recordings": runs}, indent=1) + "\n")
    for name, (_, reference, _) in sets.items():
        for v in runs[name]["variants"].values():
            v["boundaries"] = boundary_split(reference, runs[name]["sequential"]["text"], v["texts"])
    variants = sorted({v for r in runs.values() for v in r["variants"]}, key=lambda v: (-parse(v)[0], v))
    splits = {}
    for split in ("tune", "held-out"):
        names = [n for n, r in runs.items() if r["split"] == split]
        if not names:
            continue
        mean = {
            v: sum(runs[n]["variants"][v]["wer"] for n in names) / len(names)
            for v in variants
            if all(v in runs[n]["variants"] for n in names)
        }
        seq = sum(runs[n]["sequential"]["wer"] for n in names) / len(names)
        splits[split] = {"sequential": seq, **{v: {"wer": w, "minus_sequential": w - seq} for v, w in mean.items()}}
    t = table("Long recordings in pieces: WER (%) per variant", ("recording", "split", "sequential", *variants))
    for name, r in runs.items():
        t.add_row(
            name,
            r["split"],
            f"{r['sequential']['wer']:.2f}",
            *(f"{r['variants'][v]['wer']:.2f}" if v in r["variants"] else "-" for v in variants),
        )
    for split, s in splits.items():
        t.add_row(
            f"mean {split}",
            split,
            f"{s['sequential']:.2f}",
            *(f"{s[v]['wer']:.2f}" if v in s else "-" for v in variants),
        )
    out.print(t)
    summary = {**saved, **header(), "note": NOTE, "recordings": runs, "splits": splits}
    args.output.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
