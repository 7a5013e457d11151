"""A turn end on the speaker's silence, simulated on the VAD's frame-by-frame traces.

python scripts/sim_turn_end.py [--output FILE]

The rule tried: while Silero still hears speech, end the turn once no frame of the
speaker's (within ``vad_foreground_db``, 6 dB, of the utterance's 75th-percentile speech
level) has come for ``B`` seconds, if the room was heard while the speaker spoke: at
least ``K`` speech frames more than ``R`` dB under that level before the speaker's last
frame. The cue is meant to tell a room that talks on (it was there all along) from a
speaker who grows quieter (the room was silent).

Traces (Silero's speech probability and the level of every 32 ms frame, played after
0.5 s of silence as ``bench --accuracy`` streams, all from the TUNE half):

* ``tune``: the 90 clips ``bench --accuracy`` streams; a turn end there should not fire,
  and where it does it must not cut the speech (``premature``: it ends more than 0.15 s
  before the clip's end of speech);
* ``room 0.3 s``, ``room 3 s``: the mixes of ``scripts/probe_background.py`` (eight clean
  English clips over four other voices 10 dB under them, going on 0.3 or 3 s after the
  speaker); it should fire on ``room 3 s`` and end the turn soon after the speaker;
* ``louder start``: clean 5 s and 10 s clips with their first half 20 dB louder, as in
  ``tests/test_vad_foreground.py``: a speaker who grows quieter; it must not fire.

Per rule and set: streams where it fired, of them premature, and the median time from
the end of speech to the turn's end (today's: Silero's silence, 0.4 s). Written:
``benchmarks/results/turn-end-sim-tune.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from probe_background import VOICES, mix  # noqa: E402

from whisperpool.audio import SAMPLE_RATE, load_audio  # noqa: E402
from whisperpool.bench.accuracy import EVAL, LEAD_S, STREAMED_LENGTHS, eval_set  # noqa: E402
from whisperpool.bench.common import header, median  # noqa: E402
from whisperpool.streaming import vad as V  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
FRAME_S = V.FRAME / SAMPLE_RATE
RULES = [(None, None, None)] + [(r, k, b) for r in (6, 10, 14) for k in (1, 10, 20) for b in (0.4, 0.6, 1.0)]
PREMATURE_S = 0.15


def trace(audio: np.ndarray) -> np.ndarray:
    """(speech probability, level in dB) per frame of ``audio`` after LEAD_S of silence."""
    played = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), audio, np.zeros(SAMPLE_RATE, np.float32)])
    vad = V.StreamingVad(foreground_db=None)
    rows = []
    for i in range(played.size // V.FRAME):
        frame = played[i * V.FRAME : (i + 1) * V.FRAME]
        rows.append((vad.probability(frame), 10 * np.log10(np.mean(frame * frame) + 1e-18)))
    return np.array(rows)


def turn(tr: np.ndarray, room_db: float | None, k: int | None, b: float | None) -> tuple[str, float, float] | None:
    """How the first utterance of a trace ends, as the streaming VAD decides (today's rule
    with ``room_db=None``): (who ended it, when, its speech end)."""
    vad = V.StreamingVad()
    start_frames, stop_frames = vad.min_speech_frames, vad.min_silence_frames
    in_speech, run, levels = False, 0, []
    speaker_end = voice_end = 0.0
    room = room_at_speaker = 0
    for i, (p, level) in enumerate(tr):
        t = (i + 1) * FRAME_S
        if p >= vad.threshold:
            voice_end = t
            levels.append(level)
            foreground = True
            if len(levels) >= V.LEVEL_MIN_FRAMES:
                reference = float(np.percentile(levels[-V.LEVEL_FRAMES :], V.LEVEL_PERCENTILE))
                foreground = level >= reference - V.FOREGROUND_DB
                room += room_db is not None and level < reference - room_db
            if foreground:
                speaker_end, room_at_speaker = t, room
        if not in_speech:
            if p < vad.threshold:
                levels.clear()
                room = 0
            run = run + 1 if p >= vad.threshold else 0
            if run >= start_frames:
                in_speech, run = True, 0
            continue
        if room_db is not None and len(levels) >= V.LEVEL_MIN_FRAMES and room_at_speaker >= k:
            if t - speaker_end >= b and voice_end > speaker_end:
                return "speaker", t, speaker_end
        run = run + 1 if p < vad.threshold - 0.15 else 0
        if run >= stop_frames:
            end = voice_end if voice_end - speaker_end > V.MAX_BACKGROUND_S else speaker_end
            return "silero", t, end
    return None


def traces() -> dict[str, list[tuple[str, np.ndarray, float]]]:
    meta = eval_set()
    out: dict[str, list[tuple[str, np.ndarray, float]]] = {}
    tune = sorted(n for n, m in meta.items() if m["split"] == "tune" and m["length_class"] in STREAMED_LENGTHS)
    out["tune"] = [(n, trace(load_audio(EVAL / f"{n}.opus")), meta[n]["speech_end_s"]) for n in tune]
    clean = sorted(
        n
        for n, m in meta.items()
        if m["split"] == "tune" and m["condition"] == "clean" and m["language"] == "en" and m["length_class"] in (3, 5)
    )
    speakers, voices = clean[:8], clean[8:]
    for after in (0.3, 3.0):
        rows = []
        for i, name in enumerate(speakers):
            end = meta[name]["speech_end_s"]
            speaker = load_audio(EVAL / f"{name}.opus")[: int((end + 0.05) * SAMPLE_RATE)]
            others = [load_audio(EVAL / f"{voices[(i + j) % len(voices)]}.opus") for j in range(VOICES)]
            rows.append((name, trace(mix(speaker, others, after)), end))
        out[f"room {after:g} s"] = rows
    louder = [n for n in clean if meta[n]["length_class"] == 5] + sorted(
        n for n, m in meta.items() if m["split"] == "tune" and m["condition"] == "clean" and m["length_class"] == 10
    )
    out["louder start"] = []
    for name in louder:
        audio = load_audio(EVAL / f"{name}.opus")
        half = audio.size // 2
        audio[:half] = np.clip(audio[:half] * 10.0, -1.0, 1.0)
        out["louder start"].append((name, trace(audio), meta[name]["speech_end_s"]))
    return out


def evaluate(sets: dict[str, list[tuple[str, np.ndarray, float]]]) -> list[dict[str, Any]]:
    rows = []
    for room_db, k, b in RULES:
        row: dict[str, Any] = {"rule": "today" if room_db is None else f"room {room_db} dB, {k} frames, {b} s"}
        for label, streams in sets.items():
            fired = premature = 0
            after = []
            for _, tr, end in streams:
                found = turn(tr, room_db, k, b)
                if found is None:
                    continue
                who, t, speech_end = found
                true_end = end + LEAD_S
                fired += who == "speaker"
                premature += who == "speaker" and speech_end < true_end - PREMATURE_S
                after.append(t - true_end)
            row[label] = {
                "streams": len(streams),
                "fired": fired,
                "premature": premature,
                "turn_end_p50_s": median(after),
            }
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=RESULTS / "turn-end-sim-tune.json")
    args = parser.parse_args()
    rows = evaluate(traces())
    for row in rows:
        cells = [
            f"{k}: {v['fired']}/{v['streams']} fired, {v['premature']} premature, {v['turn_end_p50_s']:.2f} s"
            for k, v in row.items()
            if k != "rule"
        ]
        print(f"{row['rule']:28} | " + " | ".join(cells))
    out: dict[str, Any] = header()
    out["settings"] = {"split": "tune", "premature_s": PREMATURE_S, "lead_s": LEAD_S}
    out["rules"] = rows
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
