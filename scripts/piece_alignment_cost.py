"""What the sentence alignment costs a long recording's pieces, on one CPU thread.

python scripts/piece_alignment_cost.py [--recordings long-gb,long-gb-f] [--output benchmarks/results/piece-alignment.json]

Each tune recording is cut into pieces as the default pool cuts it (``scripts/piece_wer.py``'s
``cut``) and every piece is decoded by ``FasterWhisperBackend.transcribe_pieces``, one
piece a job as a worker decodes it, with ``segment_timestamps`` on (word alignment, then
sentence segments: the default) and off (one segment per piece, no alignment), the
two in alternating order piece by piece so that the machine's load falls on both
alike. Reported: seconds each way, their ratio, and whether the text is the same.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from piece_wer import cut  # noqa: E402
from rich.console import Console  # noqa: E402

import whisperpool.backends.faster_whisper as fw  # noqa: E402
from whisperpool.audio import SAMPLE_RATE  # noqa: E402
from whisperpool.bench.common import header, table  # noqa: E402
from whisperpool.bench.throughput import recordings  # noqa: E402
from whisperpool.config import DecodeOptions  # noqa: E402
from whisperpool.models import resolve_model  # noqa: E402
from whisperpool.testing import FakeBehavior  # noqa: E402
from whisperpool.worker.protocol import BackendSpec  # noqa: E402

WAYS = {"sentences (aligned)": True, "one segment a piece": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", default="long-gb,long-gb-f", help="tune recordings, comma-separated")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/piece-alignment.json"))
    args = parser.parse_args()
    tune = recordings("tune")
    names = args.recordings.split(",")
    if unknown := [n for n in names if n not in tune]:
        raise SystemExit(f"not tune recordings: {', '.join(unknown)}")
    spec = BackendSpec("faster-whisper", resolve_model("base").source, "cpu", "int8", 1, 0, FakeBehavior())
    backend = fw.FasterWhisperBackend(spec)
    backend.load()
    options = DecodeOptions(language="en", speech_gate=False)
    pieces = {name: cut(backend, tune[name][0], 30.0) for name in names}
    for wanted in WAYS.values():  # warm both ways on a piece's window, the aligner included
        first = pieces[names[0]][0]
        backend.transcribe_pieces(tune[names[0]][0], [first], options.replace(segment_timestamps=wanted))
    out = {**header(), "recordings": {}}
    for name in names:
        audio = tune[name][0]
        rows, texts = [], {way: [] for way in WAYS}
        for k, piece in enumerate(pieces[name]):
            row = {"seconds": (piece[1] - piece[0]) / SAMPLE_RATE}
            order = list(WAYS) if k % 2 == 0 else list(reversed(WAYS))
            for way in order:
                started = time.perf_counter()
                result = backend.transcribe_pieces(audio, [piece], options.replace(segment_timestamps=WAYS[way]))
                row[way] = time.perf_counter() - started
                texts[way].append(result.text)
            rows.append(row)
        out["recordings"][name] = {
            "pieces": rows,
            "same_text": texts["sentences (aligned)"] == texts["one segment a piece"],
        }
    console = Console()
    t = table("a long recording's pieces on one thread: seconds", ("recording", "pieces", *WAYS, "ratio", "same text"))
    totals = dict.fromkeys(WAYS, 0.0)
    for name, rec in out["recordings"].items():
        sums = {way: sum(r[way] for r in rec["pieces"]) for way in WAYS}
        for way in WAYS:
            totals[way] += sums[way]
        ratio = sums["one segment a piece"] / sums["sentences (aligned)"]
        t.add_row(
            name, str(len(rec["pieces"])), *(f"{sums[w]:.1f}" for w in WAYS), f"{ratio:.3f}", str(rec["same_text"])
        )
    out["ratio"] = totals["one segment a piece"] / totals["sentences (aligned)"]
    t.add_row("all", "", *(f"{totals[w]:.1f}" for w in WAYS), f"{out['ratio']:.3f}", "")
    console.print(t)
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
