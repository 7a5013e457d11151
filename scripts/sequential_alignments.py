"""How far one sequential pass's word error rate moves with where its windows fall.

python scripts/sequential_alignments.py [--split tune|held-out] [--output FILE]

faster-whisper's sequential pass (the reference of ``bench --throughput``'s WER target)
decodes a recording in 30 s windows from its start. Each long recording of the split is
transcribed by it (the packaged model, int8, every core, beam 1, English) as it is and
after 0.5, 1 and 1.5 s of silence: the same speech, its windows falling elsewhere. The
sampling of the temperature ladder is seeded (``ctranslate2.set_random_seed(0)`` before
each pass), so the spread is the windows', not the dice's. ``bench --throughput``
measures the same for the held-out recordings in every run (unseeded, as users call
it). Written: ``benchmarks/results/sequential-alignments-<split>.json``.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import numpy as np  # noqa: E402

from whisperpool.audio import SAMPLE_RATE  # noqa: E402
from whisperpool.bench.common import header  # noqa: E402
from whisperpool.bench.throughput import ALIGNMENTS_S, recordings  # noqa: E402
from whisperpool.config import available_cores  # noqa: E402
from whisperpool.models import resolve_model  # noqa: E402
from whisperpool.wer import word_error_rate  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="tune", choices=("tune", "held-out"))
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    import ctranslate2
    from faster_whisper import WhisperModel

    model = WhisperModel(resolve_model("base").source, compute_type="int8", cpu_threads=available_cores())
    out = header() | {"settings": {"split": args.split, "leads_s": [0.0, *ALIGNMENTS_S], "seed": 0}, "wer": {}}
    for name, (audio, reference, _) in recordings(args.split).items():
        row = {}
        for lead in (0.0, *ALIGNMENTS_S):
            shifted = np.concatenate([np.zeros(round(lead * SAMPLE_RATE), np.float32), audio])
            ctranslate2.set_random_seed(0)
            text = "".join(s.text for s in model.transcribe(shifted, language="en", beam_size=1)[0])
            row[f"{lead:g}"] = round(100 * word_error_rate(reference, text), 2)
        out["wer"][name] = row
        print(name, row, flush=True)
    leads = list(next(iter(out["wer"].values())))
    out["mean"] = {lead: round(float(np.mean([r[lead] for r in out["wer"].values()])), 2) for lead in leads}
    print("mean", out["mean"])
    output = args.output or RESULTS / f"sequential-alignments-{args.split}.json"
    output.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
