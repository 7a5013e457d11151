"""How far one sequential pass's word error rate moves with where its windows fall.

python scripts/sequential_alignments.py [--split tune|held-out] [--pool] [--output FILE]

faster-whisper's sequential pass (the reference of ``bench --throughput``'s WER target)
decodes a recording in 30 s windows from its start. Each long recording of the split is
transcribed by it (the packaged model, int8, every core, beam 1, English) as it is and
after 0.5, 1 and 1.5 s of silence: the same speech, its windows falling elsewhere. The
sampling of the temperature ladder is seeded (``ctranslate2.set_random_seed(0)`` before
each pass), though a pass that falls back to sampling still moved between two runs here
(one tune recording after 1 s of silence: 43.6% and 49.4%). With ``--pool`` the default
pool (2 workers x 1 thread here, no express worker) transcribes the same four versions,
after the sequential passes: its plan parts and pieces move with the start too.
``bench --throughput`` measures both for the held-out recordings in every run (the
sequential pass unseeded, as users call it). Written:
``benchmarks/results/sequential-alignments-<split>.json``.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import numpy as np  # noqa: E402

from whisperpool.bench.common import header  # noqa: E402
from whisperpool.bench.throughput import ALIGNMENTS_S, _after_silence, recordings  # noqa: E402
from whisperpool.config import available_cores  # noqa: E402
from whisperpool.models import resolve_model  # noqa: E402
from whisperpool.wer import word_error_rate  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def pool_passes(chosen) -> dict[str, dict[str, float]]:
    from whisperpool import DecodeOptions, PoolConfig, ProcessPool

    wer: dict[str, dict[str, float]] = {}
    with ProcessPool(PoolConfig(decode=DecodeOptions(language="en"), express_workers=0)) as pool:
        for name, (audio, reference, _) in chosen.items():
            wer[name] = {}
            for lead in (0.0, *ALIGNMENTS_S):
                text = pool.transcribe(_after_silence(audio, lead), timeout=1800).text
                wer[name][f"{lead:g}"] = round(100 * word_error_rate(reference, text), 2)
            print(name, "pool", wer[name], flush=True)
    return wer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="tune", choices=("tune", "held-out"))
    parser.add_argument("--pool", action="store_true", help="the default pool too, on the same versions")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    import ctranslate2
    from faster_whisper import WhisperModel

    model = WhisperModel(resolve_model("base").source, compute_type="int8", cpu_threads=available_cores())
    out = header() | {"settings": {"split": args.split, "leads_s": [0.0, *ALIGNMENTS_S], "seed": 0}, "wer": {}}
    chosen = recordings(args.split)
    for name, (audio, reference, _) in chosen.items():
        row = {}
        for lead in (0.0, *ALIGNMENTS_S):
            ctranslate2.set_random_seed(0)
            text = "".join(s.text for s in model.transcribe(_after_silence(audio, lead), language="en", beam_size=1)[0])
            row[f"{lead:g}"] = round(100 * word_error_rate(reference, text), 2)
        out["wer"][name] = row
        print(name, row, flush=True)
    leads = list(next(iter(out["wer"].values())))
    out["mean"] = {lead: round(float(np.mean([r[lead] for r in out["wer"].values()])), 2) for lead in leads}
    print("mean", out["mean"])
    if args.pool:
        del model
        out["pool"] = pool_passes(chosen)
        out["pool_mean"] = {lead: round(float(np.mean([r[lead] for r in out["pool"].values()])), 2) for lead in leads}
        print("pool mean", out["pool_mean"])
    output = args.output or RESULTS / f"sequential-alignments-{args.split}.json"
    output.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
