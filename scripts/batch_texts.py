"""Does a request's text depend on the requests batched with it?

python scripts/batch_texts.py [--device cuda] [--model PATH] [--compute-types float16,float32]
                              [--output benchmarks/results/batch-texts.json]

The 3-10 s clips of ``bench --throughput``'s batching measure (16 requests) go through a
pool of one worker twice per compute type: with ``max_batch=1`` (each request decoded
alone) and with ``max_batch=8`` (queued requests decoded together). Printed: the time
for all 16 and the word error rate of each way, and every clip whose text changed.
A run on the GPU also times finding a long recording's silences (Silero VAD, on the
CPU) against decoding its pieces, on layouts of workers x pieces per batch.
"""

import argparse
import io
import json
import sys
import time
from concurrent.futures import wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from whisperpool import DecodeOptions, PoolConfig, ProcessPool  # noqa: E402
from whisperpool.audio import SAMPLE_RATE, load_audio  # noqa: E402
from whisperpool.backends.faster_whisper import speech_regions  # noqa: E402
from whisperpool.bench.common import header  # noqa: E402
from whisperpool.bench.throughput import _short_clips, recordings  # noqa: E402
from whisperpool.wer import word_error_rate  # noqa: E402

REQUESTS = 16


def texts(config: PoolConfig, clips) -> tuple[float, list[str]]:
    with ProcessPool(config) as pool:
        pool.transcribe(clips[0][0], timeout=120)  # the first request warms what warm-up did not
        started = time.perf_counter()
        futures = [pool.submit(audio) for audio, _ in clips]
        wait(futures, timeout=600)
        return time.perf_counter() - started, [f.result(0).text for f in futures]


def long_recording(args, out: dict) -> None:
    audio = next(iter(recordings("held-out").values()))[0]
    started = time.perf_counter()
    regions = speech_regions(audio, 30.0)
    out["vad_s"] = time.perf_counter() - started
    print(f"Silero VAD over {audio.size / SAMPLE_RATE:.0f} s: {out['vad_s']:.2f} s, {len(regions)} regions")
    for workers, per_batch in ((1, 16), (2, 4), (2, 1)):
        config = PoolConfig(
            pool_size=workers,
            piece_batch=per_batch,
            model=args.model,
            device=args.device,
            compute_type=args.compute_types.split(",")[0],
            decode=DecodeOptions(language="en"),
        )
        with ProcessPool(config) as pool:
            pool.transcribe(audio, timeout=600)
            r = pool.transcribe(audio, timeout=600)
        out[f"long {workers}x{per_batch}"] = {"total_s": r.timings.total_s, "inference_s": r.timings.inference_s}
        print(f"{workers} worker(s) x {per_batch} pieces per batch: {r.timings.total_s:.2f} s, {r.pieces} pieces")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--model", default="base")
    parser.add_argument("--compute-types", default=None, help="comma-separated (default: int8, or float16 on cuda)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/batch-texts.json"))
    args = parser.parse_args()
    args.compute_types = args.compute_types or ("float16" if args.device == "cuda" else "int8")
    clips = [(load_audio(io.BytesIO(data)), text) for data, text in _short_clips()]
    clips = (clips * 2)[:REQUESTS]
    out: dict = {**header(), "device": args.device, "runs": {}}
    for compute_type in args.compute_types.split(","):
        for max_batch in (1, 8):
            config = PoolConfig(
                pool_size=1,
                max_batch=max_batch,
                model=args.model,
                device=args.device,
                compute_type=compute_type,
                decode=DecodeOptions(language="en"),
            )
            seconds, said = texts(config, clips)
            errors = [word_error_rate(ref, hyp) for (_, ref), hyp in zip(clips, said, strict=True)]
            out["runs"][f"{compute_type}, max_batch {max_batch}"] = {"s": seconds, "wer": errors, "texts": said}
            print(f"{compute_type}, max_batch {max_batch}: {seconds:.2f} s, WER {100 * sum(errors) / len(errors):.1f}%")
    runs = out["runs"]
    for i, (_, reference) in enumerate(clips):
        if len({run["texts"][i] for run in runs.values()}) > 1:
            print("reference:", reference)
            for label, run in runs.items():
                print(f"  {label:>28}: {run['texts'][i]}")
    changed = {
        ct: sum(
            a != b
            for a, b in zip(runs[f"{ct}, max_batch 1"]["texts"], runs[f"{ct}, max_batch 8"]["texts"], strict=True)
        )
        for ct in args.compute_types.split(",")
    }
    out["changed_by_batching"] = changed
    print("texts changed by batching, of", REQUESTS, ":", changed)
    if args.device == "cuda":
        long_recording(args, out)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
