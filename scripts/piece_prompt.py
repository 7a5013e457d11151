"""Should a long recording's piece be prompted with the text of the piece before it?

python scripts/piece_prompt.py [--output benchmarks/results/piece-prompt.json]

Faster-whisper's sequential pass conditions each 30 s window on the text before it
(``condition_on_previous_text``). The pool decodes a recording's pieces in parallel, so
a piece can only be prompted with its predecessor's text if it waits for it. This
measures whether that would pay: every long recording of the evaluation set is cut into
pieces as the default pool cuts it (its VAD, two workers), and the pieces are decoded in
order by one model, once alone and once with ``initial_prompt`` set to the text of the
piece before. Word error rates per recording and per split; the decision is taken on
the ``tune`` recordings, the ``held-out`` ones are reported.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from rich.console import Console  # noqa: E402

from whisperpool.audio import SAMPLE_RATE  # noqa: E402
from whisperpool.backends.faster_whisper import speech_regions  # noqa: E402
from whisperpool.bench.common import header, table  # noqa: E402
from whisperpool.bench.throughput import recordings  # noqa: E402
from whisperpool.config import PoolConfig, available_cores  # noqa: E402
from whisperpool.models import resolve_model  # noqa: E402
from whisperpool.pool.pieces import MAX_GAP_S, balanced_pieces  # noqa: E402
from whisperpool.wer import word_error_rate  # noqa: E402

WORKERS = 2  # the default pool's on this machine: the pieces are cut for it


def decode(model, audio, pieces, prompted: bool) -> str:
    texts, before = [], None
    for start, end in pieces:
        segments, _ = model.transcribe(
            audio[start:end], language="en", beam_size=1, vad_filter=False, initial_prompt=before if prompted else None
        )
        text = "".join(s.text for s in segments).strip()
        texts.append(text)
        before = text or None
    return " ".join(t for t in texts if t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/piece-prompt.json"))
    args = parser.parse_args()
    from faster_whisper import WhisperModel

    model = WhisperModel(resolve_model("base").source, device="cpu", compute_type="int8", cpu_threads=available_cores())
    piece_s = PoolConfig().piece_s
    out = Console()
    runs = {}
    for name, (audio, reference, split) in recordings().items():
        regions = list(speech_regions(audio, piece_s))
        pieces = balanced_pieces(regions, int(piece_s * SAMPLE_RATE), int(MAX_GAP_S * SAMPLE_RATE), WORKERS)
        runs[name] = {"split": split, "words": len(reference.split()), "pieces": len(pieces)}
        for label, prompted in (("alone", False), ("prompted", True)):
            runs[name][label] = 100 * word_error_rate(reference, decode(model, audio, pieces, prompted))
        out.print(f"{name} ({split}): alone {runs[name]['alone']:.2f}%, prompted {runs[name]['prompted']:.2f}%")
    splits = {}
    for split in ("tune", "held-out"):
        names = [n for n, r in runs.items() if r["split"] == split]
        words = sum(runs[n]["words"] for n in names)
        splits[split] = {
            label: sum(runs[n][label] * runs[n]["words"] for n in names) / words for label in ("alone", "prompted")
        }
    t = table("Pieces alone or prompted with the piece before: WER (%)", ("recording", "split", "alone", "prompted"))
    for name, r in runs.items():
        t.add_row(name, r["split"], f"{r['alone']:.2f}", f"{r['prompted']:.2f}")
    for split, r in splits.items():
        t.add_row(f"all {split}", split, f"{r['alone']:.2f}", f"{r['prompted']:.2f}")
    out.print(t)
    args.output.write_text(json.dumps({**header(), "recordings": runs, "splits": splits}, indent=1) + "\n")


if __name__ == "__main__":
    main()
