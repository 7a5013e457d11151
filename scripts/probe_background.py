"""Background voices that go on after the speaker stops: when does the final come, and what does it say?

python scripts/probe_background.py [--after 0.3,3] [--clips 8] [--output FILE]

The dev set's babble clips end a few tenths of a second after the voice, so they cannot
show a room that keeps talking. Here each of the first ``--clips`` clean English 3 s and
5 s clips of the TUNE half is cut at its end of speech and laid over a bed of four other
tune clips (other voices, looped, each starting elsewhere) 10 dB below the speaker, as
the dev set's ``babble-10db`` condition is; the bed goes on ``--after`` seconds past the
speaker. Each mix is played after 0.5 s of silence at real-time pace into a real
:class:`~whisperpool.StreamingSession` on the default layout (two single-thread workers),
with the level gate on and off (``vad_foreground_db=None``).

Per stream: the first final's time after the speaker's end of speech, its text, and its
WER against the speaker's sentence. Written: ``benchmarks/results/background-voices-tune.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

from whisperpool import DecodeOptions, PoolConfig, StreamingSession, TranscriptionEngine  # noqa: E402
from whisperpool.audio import SAMPLE_RATE, load_audio  # noqa: E402
from whisperpool.bench.accuracy import EVAL, LEAD_S, eval_set  # noqa: E402
from whisperpool.bench.common import header, median  # noqa: E402
from whisperpool.streaming.client import play_local  # noqa: E402
from whisperpool.streaming.realtime import COMPLETED  # noqa: E402
from whisperpool.wer import word_error_rate  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SNR_DB = 10.0
VOICES = 4
GATES = {"gate on": {}, "gate off": {"vad_foreground_db": None}}


def level_db(x: np.ndarray) -> float:
    """Mean power of the samples that are not silence, in dB."""
    loud = x[np.abs(x) > 1e-4]
    return 10.0 * float(np.log10(np.mean(loud * loud) + 1e-12))


def mix(speaker: np.ndarray, others: list[np.ndarray], after_s: float) -> np.ndarray:
    """``speaker`` over a bed of ``others`` (looped, staggered) ``SNR_DB`` below it, the bed
    going on ``after_s`` past the speaker's end."""
    total = speaker.size + int(after_s * SAMPLE_RATE)
    bed = np.zeros(total, np.float32)
    for k, other in enumerate(others):
        start = k * SAMPLE_RATE // 4
        bed += np.tile(other, total // other.size + 2)[start : start + total]
    bed *= 10 ** ((level_db(speaker) - SNR_DB - level_db(bed)) / 20)
    bed[: speaker.size] += speaker
    return bed


async def stream(engine: TranscriptionEngine, audio: np.ndarray, end_s: float, reference: str, gate: dict[str, Any]):
    session = StreamingSession(engine.pool, engine.pool.config.decode, **gate)
    played = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), audio])
    finals = [(t, e) for t, e in [x async for x in play_local(session, played)] if e["type"] == COMPLETED]
    if not finals:
        return {"finals": 0, "first_final_s": None, "text": "", "wer": 100.0}
    t, event = finals[0]
    return {
        "finals": len(finals),
        "first_final_s": round(t - LEAD_S - end_s, 3),
        "text": event["transcript"],
        "wer": round(100 * word_error_rate(reference, event["transcript"]), 1),
    }


async def run(afters: list[float], count: int, log: Console) -> dict[str, Any]:
    meta = eval_set()
    clean = sorted(
        n
        for n, m in meta.items()
        if m["split"] == "tune" and m["condition"] == "clean" and m["language"] == "en" and m["length_class"] in (3, 5)
    )
    speakers, voices = clean[:count], clean[count:]
    rows: dict[str, list[dict[str, Any]]] = {}
    async with TranscriptionEngine(PoolConfig(decode=DecodeOptions(language="en"), express_workers=0)) as engine:
        for i, name in enumerate(speakers):
            m = meta[name]
            speaker = load_audio(EVAL / f"{name}.opus")[: int((m["speech_end_s"] + 0.05) * SAMPLE_RATE)]
            others = [load_audio(EVAL / f"{voices[(i + k) % len(voices)]}.opus") for k in range(VOICES)]
            for after in afters:
                audio = mix(speaker, others, after)
                for label, gate in GATES.items():
                    key = f"{label}, voices {after:g} s after"
                    row = await stream(engine, audio, m["speech_end_s"], m["text"], gate)
                    rows.setdefault(key, []).append({"name": name} | row)
            log.print(f"[dim]  {i + 1}/{len(speakers)}[/dim]")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--after", default="0.3,3", help="seconds the voices go on after the speaker")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--output", type=Path, default=RESULTS / "background-voices-tune.json")
    args = parser.parse_args()
    log = Console(stderr=True)
    rows = asyncio.run(run([float(x) for x in args.after.split(",")], args.clips, log))
    out: dict[str, Any] = header()
    out["settings"] = {"snr_db": SNR_DB, "voices": VOICES, "lead_s": LEAD_S, "split": "tune", "workers": 2}
    out["summary"] = {
        key: {
            "first_final_p50_s": median([r["first_final_s"] for r in rs if r["first_final_s"] is not None]),
            "wer_mean": round(float(np.mean([r["wer"] for r in rs])), 1),
        }
        for key, rs in rows.items()
    }
    out["streams"] = rows
    for key, s in out["summary"].items():
        log.print(f"{key}: first final after the speaker {s['first_final_p50_s']:.2f} s (p50), WER {s['wer_mean']}%")
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    log.print(f"written {args.output}")


if __name__ == "__main__":
    main()
