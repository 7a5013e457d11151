"""Streaming finals on the TUNE half of the accuracy dev set: fallbacks, decode time, WER.

python scripts/tune_finals.py [--output FILE] [--strategies current,full-cheaper,shipped,beam3,...] [--stress [--wide]]

Written: ``benchmarks/results/finals-tune.json`` (the tune clips, and offline ``auto`` on
the tune clips the retries can change) and, with ``--stress``,
``benchmarks/results/finals-tune-stress.json`` (see :func:`stress_set`). The results are
discussed in docs/fast-path.md ("When the guard rejects a pass").

Two steps, so that decodings can be compared on exactly the same finals:

1. **Capture.** Every tune clip ``bench --accuracy`` would stream (3, 5 and 10 s) is
   played after 0.5 s of silence at real-time pace (several at once) into a real
   :class:`~whisperpool.StreamingSession`, with its real VAD, on a stand-in pool that
   answers every update at once with no words and keeps each final's audio and options.
   Partials do not change a final's audio (the buffer is only trimmed past 15 s), so this
   is the audio, and the options, a final is decoded with on a real pool. Kept too: how
   far the stream was when the final was asked for, after the end of the voice (the VAD's
   part of the final latency).
2. **Decode.** One backend (one thread: a worker of the default 2 x 1 layout) decodes
   every captured final under each strategy:

   * ``current``: a rejected final is decoded on the full window with the whole
     temperature ladder (a low log-probability steps it up too) and no token cap: before
     issue 16 part 3;
   * ``full-cheaper``: straight to the full window too, but every pass under the token
     cap, and the ladder stepped up only for a loop (``low_confidence_fallback=False``);
   * ``shipped``: before that, the short window again, as the backend does now (one
     retry: the snug window, with no 8 s floor, at the ladder's first step that forbids
     repeats; then, if rejected, the first window at that step);
   * ``two-retries``: the short window twice more, as before 2026-11-28: the snug window
     at the first temperature, then the first window at the step that forbids repeats.

   Cheaper first passes, with the shipped fallbacks (does the decoding hold the final
   latency up?):

   * ``beam3``: beam search with 3 beams rather than the session's 5;
   * ``floor6``, ``floor4``: a short window of at least 6 or 4 s rather than 8
     (``SHORT_WINDOW_MIN_S``): a smaller encoder window, and fewer encoder frames for each
     decoding step to attend to;
   * ``beam3-floor4``: both.

   A first pass less likely to loop: ``norepeat``, no 4-gram (of tokens) may repeat on
   a pass at T=0 either, as on the retries' step; ``norepeatN``: no N-gram (``shipped``:
   the final's own 4 since 2026-11-28; ``norepeat0``: repeats allowed, as before).

The strategies take turns clip by clip (the order reversed every other clip), so that a
busy moment of the machine falls on all of them.

Per strategy: finals sent to the full window (``rejected_by_reason``: the reasons of
those; a final mended on the short window has none), decode time p50/p95, the
estimated final latency (VAD part + decode time) p50/p95, and the WER of the finals
over the clips' references. The held-out half is never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

from whisperpool import DecodeOptions, StreamingSession  # noqa: E402
from whisperpool.audio import SAMPLE_RATE, load_audio  # noqa: E402
from whisperpool.backends import faster_whisper as fw  # noqa: E402
from whisperpool.bench.accuracy import EVAL, LEAD_S, STREAMED_LENGTHS, eval_set  # noqa: E402
from whisperpool.bench.common import header, median, pct  # noqa: E402
from whisperpool.models import ensure_packaged_model  # noqa: E402
from whisperpool.results import TranscriptionResult  # noqa: E402
from whisperpool.streaming.client import play_local  # noqa: E402
from whisperpool.wer import normalize, word_error_rate  # noqa: E402
from whisperpool.worker.protocol import BackendSpec, FakeBehavior  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "finals-tune.json"
STRESS_OUT = OUT.with_name("finals-tune-stress.json")
STRESS_WPM = (130, 160, 190, 220)  # espeak-ng's words a minute (the set was rendered at 150-185)
STRESS_VARIANTS = ("", "+m3", "+f2")
# --wide: more speeds and voice variants of the same tune texts (some variants sound alike
# to Whisper at some speeds, so the finals that retry are fewer distinct ones than clips)
WIDE_WPM = (140, 175, 205, 235)
WIDE_VARIANTS = ("+m1", "+m2", "+m4", "+m5", "+m6", "+f1", "+f3", "+f4")
AT_ONCE = 12  # streams played at the same time during the capture (the stand-in pool costs nothing)


class _Recorder:
    """A stand-in pool: every update answered at once, empty; finals' audio and options kept."""

    def __init__(self) -> None:
        self.session: StreamingSession | None = None
        self.finals: list[dict[str, Any]] = []

    def submit(self, audio: np.ndarray, options: DecodeOptions, **_: Any) -> Future[TranscriptionResult]:
        if options.window != "short":  # partials ask for the short window only
            assert self.session is not None
            self.finals.append({"audio": audio.copy(), "options": options, "asked_at_s": self.session.time_s})
        future: Future[TranscriptionResult] = Future()
        future.set_result(TranscriptionResult("", (), options.language, 0.0, audio.size / SAMPLE_RATE, window="short"))
        return future


def stress_set(meta: dict[str, dict[str, Any]], wide: bool = False) -> dict[str, dict[str, Any]]:
    """The tune half's clean non-English sentences spoken again by espeak-ng, faster and
    slower and in other voice variants: where finals loop (the held-out half's two looping
    finals were such clips), in numbers enough to compare fixes. Tune texts only. With
    ``wide``, the WIDE_ speeds and variants as well."""
    from make_eval_set import speak, speech_bounds

    out = {}
    foreign = {n: m for n, m in meta.items() if m["split"] == "tune" and m["language"] != "en"}
    speeds = [(w, v) for w in STRESS_WPM for v in STRESS_VARIANTS]
    if wide:
        speeds += [(w, v) for w in WIDE_WPM for v in WIDE_VARIANTS]
    for name, m in sorted(foreign.items()):
        for wpm, variant in speeds:
            audio = speak(m["text"], m["voice"] + variant, wpm)
            out[f"{name}-{wpm}{variant}"] = m | {"audio": audio, "wpm": wpm} | speech_bounds(audio)
    return out


async def _capture_one(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    pool = _Recorder()
    session = StreamingSession(pool, DecodeOptions(language=meta["language"]))  # type: ignore[arg-type]
    pool.session = session
    audio = meta["audio"] if "audio" in meta else load_audio(EVAL / f"{name}.opus")
    played = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), audio])
    async for _ in play_local(session, played):
        pass
    voice_end = LEAD_S + meta["speech_end_s"]
    for final in pool.finals:
        final["vad_s"] = final.pop("asked_at_s") - voice_end
    return {"name": name, "finals": pool.finals}


async def capture(names: list[str], meta: dict[str, dict[str, Any]], log: Console) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(names), AT_ONCE):
        out += await asyncio.gather(*(_capture_one(n, meta[n]) for n in names[i : i + AT_ONCE]))
        log.print(f"[dim]  captured {len(out)}/{len(names)}[/dim]")
    return out


def _old_full(self, audio, options, on_segment, fallback, max_new_tokens=None):
    """The full window as it was: no token cap, the whole ladder for a low log-probability."""
    segments_iter, info = self.model.transcribe(audio, **options.to_faster_whisper())
    segments = fw._collect(segments_iter, info.duration, on_segment)
    return fw._result(segments, info, info.duration, window="full", fallback=fallback)


# A cheaper first pass: (beam size, window floor in seconds); None keeps the session's.
FIRST_PASS: dict[str, tuple[int | None, int | None]] = {
    "beam3": (3, None),
    "floor6": (None, 6),
    "floor4": (None, 4),
    "beam3-floor4": (3, 4),
}


def _two_retries(speech_s: float, window: int, temperatures: tuple[float, ...]) -> list[tuple[int, float]]:
    """``fw.retry_tries`` as it was before 2026-11-28: the snug window at the first
    temperature, then the first window at the ladder's first step that forbids repeats
    (that window's encoding is reused now, as the old code did not: if anything, this
    times the old chain too fast)."""
    snug = math.ceil(speech_s + fw.SHORT_WINDOW_TAIL_S)
    tries = [(snug, temperatures[0])] if snug < window else []
    step = next((t for t in temperatures[1:] if t >= fw.NO_REPEAT_FROM), None)
    return tries + ([(window, step)] if step is not None else [])


@contextlib.contextmanager
def strategy(name: str):
    """The backend as each strategy has it (``shipped`` and the first-pass ones: as it is,
    those with a smaller window floor)."""
    retry, full, floor = fw.FasterWhisperBackend._retry_short, fw.FasterWhisperBackend._full, fw.SHORT_WINDOW_MIN_S
    tries, generate = fw.retry_tries, fw.DeterministicFallback.generate
    if name.startswith("norepeat"):  # no n-gram may repeat on a pass at T=0 either
        size = int(name[len("norepeat") :] or 4)

        def no_repeat(self, *args, **kwargs):
            if kwargs.get("sampling_topk", 1) == 1:  # a pass at T=0; the ladder's step keeps its 4
                kwargs["no_repeat_ngram_size"] = size
            return generate(self, *args, **kwargs)

        fw.DeterministicFallback.generate = no_repeat
    if name in ("current", "full-cheaper"):  # a rejected final goes straight to the full window
        fw.FasterWhisperBackend._retry_short = lambda self, *args: None
    if name == "current":
        fw.FasterWhisperBackend._full = _old_full
    if name == "two-retries":
        fw.retry_tries = _two_retries
    fw.SHORT_WINDOW_MIN_S = FIRST_PASS.get(name, (None, None))[1] or floor
    try:
        yield
    finally:
        fw.FasterWhisperBackend._retry_short, fw.FasterWhisperBackend._full = retry, full
        fw.retry_tries, fw.DeterministicFallback.generate = tries, generate
        fw.SHORT_WINDOW_MIN_S = floor


def decode_clip(backend, clip: dict[str, Any], name: str) -> dict[str, Any]:
    beam = FIRST_PASS.get(name, (None, None))[0]
    texts, windows, fallbacks, retried, took = [], [], [], [], []
    for final in clip["finals"]:
        options = final["options"] if beam is None else final["options"].replace(beam_size=beam)
        started = time.perf_counter()
        with strategy(name):
            r = backend.transcribe(final["audio"], options)
        took.append(time.perf_counter() - started)
        texts.append(r.text)
        windows.append(r.window)
        fallbacks.append(r.fallback)
        retried.append(r.retried)
    return {
        "name": clip["name"],
        "text": " ".join(texts),
        "windows": windows,
        "fallbacks": fallbacks,
        "retried": retried,
        "decode_s": [round(t, 3) for t in took],
        # the clip's final latency: its last final's (as bench --accuracy counts it); an
        # earlier final of the clip was decoded during the speech after it
        "latency_s": round(clip["finals"][-1]["vad_s"] + took[-1], 3) if clip["finals"] else None,
    }


def decode_all(backend, clips: list[dict[str, Any]], names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every clip's finals under every strategy, the strategies taking turns clip by clip."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for i, clip in enumerate(clips):
        for name in names if i % 2 == 0 else names[::-1]:
            rows[name].append(decode_clip(backend, clip, name))
    return rows


def summarize(rows: list[dict[str, Any]], meta: dict[str, dict[str, Any]]) -> dict[str, Any]:
    finals = [f for r in rows for f in r["fallbacks"]]
    words = sum(len(normalize(meta[r["name"]]["text"])) for r in rows)
    errors = sum(
        word_error_rate(meta[r["name"]]["text"], r["text"]) * len(normalize(meta[r["name"]]["text"])) for r in rows
    )
    decode = [t for r in rows for t in r["decode_s"]]
    latency = [r["latency_s"] if r["latency_s"] is not None else float("inf") for r in rows]
    babble = [r["latency_s"] for r in rows if "babble" in r["name"]]
    rest = [r["latency_s"] for r in rows if "babble" not in r["name"] and r["latency_s"] is not None]
    reasons: dict[str, int] = {}
    for f in finals:
        if f is not None:
            reasons[f] = reasons.get(f, 0) + 1
    full = sum(w == "full" for r in rows for w in r["windows"])
    return {
        "clips": len(rows),
        "finals": len(finals),
        "to_full_window": full,
        "to_full_window_pct": round(100 * full / max(len(finals), 1), 2),
        "rejected_by_reason": reasons,
        "decode_p50_s": round(median(decode), 3),
        "decode_p95_s": round(pct(decode, 95), 3),
        "decode_max_s": round(max(decode), 3),
        "latency_p50_s": round(median(latency), 3),
        "latency_p95_s": round(pct(latency, 95), 3),
        "latency_p95_without_babble_s": round(pct(rest, 95), 3) if rest and babble else None,
        "retried": sum(x is not None for r in rows for x in r.get("retried", ())),
        "wer": round(100 * errors / words, 2),
    }


def offline(backend, meta: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Offline ``auto`` on the tune clips that only the retry can change: those whose
    short-window pass the guard rejected for a loop or a cut in the committed ``bench
    --accuracy`` run. Their WER then (the full window's text) and now."""
    committed = json.loads((OUT.parent / "accuracy.json").read_text())["clips"]
    chosen = [e for e in committed if e["split"] == "tune" and e["auto"]["fallback"] in fw.RETRIED_ON_SHORT]
    rows = []
    for e in chosen:
        audio = load_audio(EVAL / f"{e['name']}.opus")
        now = backend.transcribe(audio, DecodeOptions(language=e["language"]))
        rows.append(
            {
                "name": e["name"],
                "reference": e["text"],
                "before": {"text": e["auto"]["text"], "window": e["auto"]["window"], "fallback": e["auto"]["fallback"]},
                "now": {"text": now.text, "window": now.window, "fallback": now.fallback},
            }
        )
    words = sum(len(normalize(r["reference"])) for r in rows)

    def errors(key: str) -> float:
        return sum(word_error_rate(r["reference"], r[key]["text"]) * len(normalize(r["reference"])) for r in rows)

    return {
        "clips": rows,
        "words": words,
        "errors_before": round(errors("before"), 1),
        "errors_now": round(errors("now"), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output", type=Path, default=None, help=f"default {OUT.name} (with --stress: {STRESS_OUT.name})"
    )
    parser.add_argument("--strategies", default="current,full-cheaper,shipped")
    parser.add_argument(
        "--stress", action="store_true", help="the stress set (see stress_set) instead of the tune clips"
    )
    parser.add_argument("--wide", action="store_true", help="with --stress: more speeds and voice variants")
    parser.add_argument("--limit", type=int, default=None, help="the first N clips only (a smoke run)")
    args = parser.parse_args()
    args.output = args.output or (STRESS_OUT if args.stress else OUT)
    log = Console(stderr=True)
    meta = eval_set()
    names = sorted(n for n, m in meta.items() if m["split"] == "tune" and m["length_class"] in STREAMED_LENGTHS)
    names = names[: args.limit] if args.limit else names
    if args.stress:
        stress = stress_set(meta, args.wide)
        meta |= stress
        names = sorted(stress)[: args.limit] if args.limit else sorted(stress)
    log.print(f"[dim]capturing the finals of {len(names)} tune clips at real-time pace ...[/dim]")
    clips = asyncio.run(capture(names, meta, log))
    spec = BackendSpec("faster-whisper", str(ensure_packaged_model()), "cpu", "int8", 1, 0, FakeBehavior())
    backend = fw.FasterWhisperBackend(spec)
    backend.load()
    backend.warm_up(DecodeOptions())
    out: dict[str, Any] = header()
    out["settings"] = {
        "split": ("tune-stress-wide" if args.wide else "tune-stress") if args.stress else "tune",
        "streamed_lengths": list(STREAMED_LENGTHS),
        "threads": 1,
        "lead_s": LEAD_S,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    out["vad_s"] = {
        "p50": median([f["vad_s"] for c in clips for f in c["finals"]]),
        "p95": pct([f["vad_s"] for c in clips for f in c["finals"]], 95),
    }
    names = args.strategies.split(",")
    log.print(f"[dim]decoding {sum(len(c['finals']) for c in clips)} finals under {names} ...[/dim]")
    out["strategies"] = {}
    for name, rows in decode_all(backend, clips, names).items():
        out["strategies"][name] = {"summary": summarize(rows, meta), "clips": rows}
        log.print(name, out["strategies"][name]["summary"])
    out["settings"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if not args.stress and "shipped" in names:
        log.print("[dim]offline auto on the tune clips the retry can change ...[/dim]")
        out["offline"] = offline(backend, meta)
        log.print({k: v for k, v in out["offline"].items() if k != "clips"})
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    log.print(f"written {args.output}")


if __name__ == "__main__":
    main()
