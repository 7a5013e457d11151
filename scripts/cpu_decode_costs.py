"""What a long recording's piece costs on one CPU thread: the encoder by window length,
and greedy decoding one piece at a time against batches.

python scripts/cpu_decode_costs.py [--model base] [--repeats 3] [--output benchmarks/results/cpu-decode-costs.json]

Measured with CTranslate2 directly (the packaged model, int8, one thread: a
worker of the default layout on this machine), each the best of ``--repeats``:

* **Encoder.** One window of log-mel features of 6-30 s: seconds per second of audio.
  The pool decodes a long recording's pieces (up to 30 s) in windows trimmed to the
  piece, so this is what a piece's length costs.
* **Batches.** Pieces of a tune recording of ``bench --throughput``: their windows
  encoded one by one and in batches of 2 and 4; and their encoder outputs (each window
  encoded alone) decoded greedily without timestamps, as the pool decodes a piece, one
  by one and in batches. Times over the same work one by one, and milliseconds per
  token. A piece is capped at ``MAX_TOKENS`` tokens so that a
  loop does not weigh on one side.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

from whisperpool.audio import SAMPLE_RATE  # noqa: E402
from whisperpool.bench.common import header, table  # noqa: E402
from whisperpool.bench.throughput import recordings  # noqa: E402
from whisperpool.models import resolve_model  # noqa: E402

WINDOWS_S = (6, 10, 15, 18, 20, 22, 25, 30)
PIECE_S = 27  # about the length of the pool's pieces of a long recording
PIECES = 8
BATCHES = (1, 2, 4)
MAX_TOKENS = 150  # ample for 27 s of read speech (about 70-100 tokens)
RECORDING = "long-gb"  # a tune recording


def encoder_costs(model, repeats: int) -> dict[int, float]:
    import ctranslate2

    rng = np.random.default_rng(0)
    best: dict[int, float] = {}
    for _ in range(repeats):
        for seconds in WINDOWS_S:
            features = rng.standard_normal((1, 80, seconds * 100)).astype(np.float32)
            started = time.perf_counter()
            model.model.encode(ctranslate2.StorageView.from_array(features))
            took = time.perf_counter() - started
            best[seconds] = min(best.get(seconds, took), took)
    return best


def batch_costs(model, audio: np.ndarray, repeats: int) -> dict[int, dict[str, float]]:
    """Per batch size: the encoder's time for the pieces' windows, and greedy decoding's
    of their encoder outputs (each window encoded alone), the best of ``repeats``."""
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer

    tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language="en")
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    span = PIECE_S * SAMPLE_RATE
    features, encoded = [], []
    for i in range(PIECES):
        piece = audio[i * span : (i + 1) * span]
        mel = model.feature_extractor(np.concatenate([piece, np.zeros(SAMPLE_RATE, np.float32)]))
        features.append(mel[:, : PIECE_S * 100][None].astype(np.float32))
        encoded.append(np.array(model.model.encode(ctranslate2.StorageView.from_array(features[-1]))))

    def timed(batch: int, step) -> float:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for start in range(0, PIECES, batch):
                step(start)
            best = min(best, time.perf_counter() - started)
        return best

    out: dict[int, dict[str, float]] = {}
    for batch in BATCHES:
        tokens: list[int] = []

        def encode(start: int, batch: int = batch) -> None:
            model.model.encode(ctranslate2.StorageView.from_array(np.concatenate(features[start : start + batch])))

        def decode(start: int, batch: int = batch, tokens: list[int] = tokens) -> None:
            group = ctranslate2.StorageView.from_array(np.concatenate(encoded[start : start + batch]))
            results = model.model.generate(group, [prompt] * batch, beam_size=1, max_length=MAX_TOKENS)
            tokens.extend(len(r.sequences_ids[0]) for r in results)

        encoder_s = timed(batch, encode)
        decoding_s = timed(batch, decode)
        count = sum(tokens) // repeats
        out[batch] = {
            "encoder_s": encoder_s,
            "decoding_s": decoding_s,
            "tokens": count,
            "ms_per_token": 1000 * decoding_s / count,
        }
    for batch in BATCHES:
        out[batch]["encoder_vs_one_by_one"] = out[batch]["encoder_s"] / out[1]["encoder_s"]
        out[batch]["decoding_vs_one_by_one"] = out[batch]["decoding_s"] / out[1]["decoding_s"]
    return out


def _l3_cache() -> str | None:
    """The CPU's last-level cache as Linux reports it (e.g. "32768K"), if it does."""
    path = Path("/sys/devices/system/cpu/cpu0/cache/index3/size")
    return path.read_text().strip() if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/cpu-decode-costs.json"))
    args = parser.parse_args()
    from faster_whisper import WhisperModel

    model = WhisperModel(resolve_model(args.model).source, device="cpu", compute_type="int8", cpu_threads=1)
    audio = recordings("tune")[RECORDING][0]
    encoder = encoder_costs(model, args.repeats)
    batches = batch_costs(model, audio, args.repeats)
    console = Console()
    t = table("Encoder, one window, 1 thread (best of the repeats)", ("window", "encoder s", "s per s of audio"))
    for seconds, took in encoder.items():
        t.add_row(f"{seconds} s", f"{took:.3f}", f"{took / seconds:.4f}")
    console.print(t)
    t = table(
        f"{PIECES} pieces of {PIECE_S} s, 1 thread: encoder and greedy decoding by batch",
        ("batch", "encoder s", "/ one by one", "decoding s", "tokens", "ms / token", "/ one by one"),
    )
    for batch, d in batches.items():
        t.add_row(
            str(batch),
            f"{d['encoder_s']:.2f}",
            f"{d['encoder_vs_one_by_one']:.2f}",
            f"{d['decoding_s']:.2f}",
            str(d["tokens"]),
            f"{d['ms_per_token']:.2f}",
            f"{d['decoding_vs_one_by_one']:.2f}",
        )
    console.print(t)
    out = header() | {
        "settings": {"model": args.model, "compute_type": "int8", "threads": 1, "repeats": args.repeats},
        "l3_cache": _l3_cache(),
        "encoder_s": {str(s): round(t, 4) for s, t in encoder.items()},
        "batches": {
            "recording": RECORDING,
            "piece_s": PIECE_S,
            "pieces": PIECES,
            "max_tokens": MAX_TOKENS,
            "by_batch": {str(b): {k: round(v, 4) for k, v in d.items()} for b, d in batches.items()},
        },
    }
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    console.print(f"written {args.output}")


if __name__ == "__main__":
    main()
