"""Where a streaming final's latency goes: the VAD, the wait for the tail, the decoding.

python scripts/trace_finals.py [--split tune|held-out] [--workers N --threads N] [--output FILE]

Every clip ``bench --accuracy`` streams (3, 5 and 10 s) of the split is played after
0.5 s of silence at real-time pace into a real :class:`~whisperpool.StreamingSession`
(its real VAD) on a real pool, as ``bench --accuracy`` streams it (the default layout
unless ``--workers``/``--threads`` say otherwise). The pool is given to the session
behind a thin wrapper that notes, for every decoding, when it was sent and when it came
back, its audio's length and whether it was a partial (``window="short"``) or a final
(speculative or not); the VAD's last speech frame is read at the end. Per clip, after
the end of the voice (the clean rendering's): when the VAD heard the speech end, when the
final was sent, how long its decoding took, and whether a partial was decoding beside it.

The summary splits the final latency by condition (babble against the rest) and by the
final audio's length. Written: ``benchmarks/results/finals-trace-<split>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

from whisperpool import DecodeOptions, PoolConfig, StreamingSession, TranscriptionEngine  # noqa: E402
from whisperpool.audio import SAMPLE_RATE, load_audio  # noqa: E402
from whisperpool.bench.accuracy import EVAL, LEAD_S, STREAMED_LENGTHS, eval_set  # noqa: E402
from whisperpool.bench.common import header, median, pct  # noqa: E402
from whisperpool.results import TranscriptionResult  # noqa: E402
from whisperpool.streaming.client import play_local  # noqa: E402
from whisperpool.streaming.realtime import COMPLETED  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
LENGTHS = ((0.0, 3.5), (3.5, 6.5), (6.5, 30.0))  # the final audio's seconds, for the summary


class _Tracing:
    """The pool as the session sees it, noting every decoding's times (from ``t0``)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self.t0 = time.perf_counter()
        self.decodes: list[dict[str, Any]] = []

    def submit(self, audio: np.ndarray, options: DecodeOptions, **kw: Any) -> Future[TranscriptionResult]:
        row: dict[str, Any] = {
            "kind": "partial" if options.window == "short" else "final",
            "sent": time.perf_counter() - self.t0,
            "audio_s": audio.size / SAMPLE_RATE,
        }
        future = self._pool.submit(audio, options, **kw)
        future.add_done_callback(lambda f: row.update(done=time.perf_counter() - self.t0))
        self.decodes.append(row)
        return future

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


async def trace_one(engine: TranscriptionEngine, meta: dict[str, Any], audio: np.ndarray) -> dict[str, Any]:
    pool = _Tracing(engine.pool)
    session = StreamingSession(pool, engine.pool.config.decode.replace(language=meta["language"]))  # type: ignore[arg-type]
    played = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), audio])
    pool.t0 = time.perf_counter()
    finals = [t for t, e in [x async for x in play_local(session, played)] if e["type"] == COMPLETED]
    end = LEAD_S + meta["speech_end_s"]
    final = [d for d in pool.decodes if d["kind"] == "final"][-1]
    beside = [  # a partial still decoding when the stream ended has no "done": it ran beside the final
        d
        for d in pool.decodes
        if d["kind"] == "partial" and d["sent"] < final["done"] and d.get("done", float("inf")) > final["sent"]
    ]
    assert session.vad is not None
    return {
        "latency_s": round(finals[-1] - end, 3),
        "vad_speech_end_s": round(session.vad.last_speech_end_s - end, 3),
        "final_sent_s": round(final["sent"] - end, 3),
        "final_decode_s": round(final["done"] - final["sent"], 3),
        "final_audio_s": round(final["audio_s"], 2),
        "final_decodes": sum(d["kind"] == "final" for d in pool.decodes),
        "partial_beside": bool(beside),
        "decodes": [{k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()} for d in pool.decodes],
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"p50": round(median(values), 3), "p95": round(pct(values, 95), 3)} if values else {}


def summarize(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    groups = {
        "all": list(rows),
        "babble": [n for n in rows if "babble" in n],
        "not babble": [n for n in rows if "babble" not in n],
    }
    for lo, hi in LENGTHS:
        groups[f"not babble, final audio {lo:g}-{hi:g} s"] = [
            n for n in groups["not babble"] if lo <= rows[n]["final_audio_s"] < hi
        ]
    return {
        label: {
            "clips": len(names),
            **{key: _spread([rows[n][key] for n in names]) for key in ("latency_s", "final_sent_s", "final_decode_s")},
            "vad_speech_end_s": _spread([rows[n]["vad_speech_end_s"] for n in names]),
            "partial_beside": sum(rows[n]["partial_beside"] for n in names),
        }
        for label, names in groups.items()
    }


async def run(names: list[str], config: PoolConfig, log: Console) -> dict[str, dict[str, Any]]:
    meta = eval_set()
    rows = {}
    async with TranscriptionEngine(config) as engine:
        for i, name in enumerate(names):
            rows[name] = await trace_one(engine, meta[name], load_audio(EVAL / f"{name}.opus"))
            if (i + 1) % 10 == 0:
                log.print(f"[dim]  {i + 1}/{len(names)}[/dim]")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="tune", choices=("tune", "held-out"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    log = Console(stderr=True)
    layout = {k: v for k, v in (("pool_size", args.workers), ("threads_per_worker", args.threads)) if v is not None}
    config = PoolConfig(decode=DecodeOptions(language="en"), **layout)
    meta = eval_set()
    names = sorted(n for n, m in meta.items() if m["split"] == args.split and m["length_class"] in STREAMED_LENGTHS)
    log.print(f"[dim]{len(names)} {args.split} clips at real-time pace on {config.pool_size} workers ...[/dim]")
    load_before = os.getloadavg()
    rows = asyncio.run(run(names, config, log))
    out: dict[str, Any] = header()
    out["settings"] = {
        "split": args.split,
        "workers": config.pool_size,
        "threads_per_worker": config.threads_per_worker,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "times": "seconds after the end of the voice (clean rendering); decode: sent to back",
    }
    out["summary"] = summarize(rows)
    out["clips"] = rows
    log.print(json.dumps(out["summary"], indent=1))
    output = args.output or RESULTS / f"finals-trace-{args.split}.json"
    output.write_text(json.dumps(out, indent=1) + "\n")
    log.print(f"written {output}")


if __name__ == "__main__":
    main()
