"""A turn end on the speaker's silence, simulated on the VAD's frame-by-frame traces.

python scripts/sim_turn_end.py [--output FILE]

The rule tried: while Silero still hears speech, end the turn once no frame of the
speaker's (within ``vad_foreground_db``, 6 dB, of the utterance's 75th-percentile speech
level) has come for ``B`` seconds, if the room was heard while the speaker spoke: at
least ``K`` speech frames more than ``R`` dB under that level before the speaker's last
frame. The cue is meant to tell a room that talks on (it was there all along) from a
speaker who grows quieter (the room was silent).

The rule shipped (``gap``, the room's pause: ``StreamingVad(room_pause_s=...)``): once
no frame of the speaker's has come for ``B`` seconds, while the speech frames heard since
their last one (the room's) have lasted at most ``MAX_BACKGROUND_S``, a pause of Silero's
of ``G`` seconds ends the turn, not only one of 0.4 s. It does not end a room that talks
on without a pause; it ends sooner a turn whose room falls quiet soon after the speaker.

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

Per rule and set: streams where it fired, of them premature (its speech end more than
0.15 s before the clip's), the streams whose turn ended before the end of speech
(``cut``: today's rule cuts some at a long pause inside them too), and the median time
from the end of speech to the turn's end (today's: Silero's silence, 0.4 s). Written:
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
# The room's pause: the speaker silent for B s and Silero's silence for G s (a pause of the room's).
GAPS = [(b, g, db) for db in (6, 9, 12) for b in (0.4, 0.5) for g in (0.16, 0.2, 0.26)]
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


def turns(
    tr: np.ndarray,
    room_db: float | None,
    k: int | None,
    b: float | None,
    gap_s: float | None = None,
    gap_db: float = V.FOREGROUND_DB,
) -> list[tuple[str, float, float]]:
    """How the utterances of a trace end, as the streaming VAD decides (today's rule with
    ``room_db=None`` and ``gap_s=None``): (who ended each, when, its speech end). For the
    room's pause (``gap_s``), the speaker's frames are those within ``gap_db`` of their
    level (the gate's 6 dB, or stricter)."""
    vad = V.StreamingVad()
    start_frames, stop_frames = vad.min_speech_frames, vad.min_silence_frames
    in_speech, run, levels = False, 0, []
    speaker_end = voice_end = loud_end = 0.0
    room = room_at_speaker = 0
    out = []
    for i, (p, level) in enumerate(tr):
        t = (i + 1) * FRAME_S
        if p >= vad.threshold:
            voice_end = t
            levels.append(level)
            foreground = loud = True
            if len(levels) >= V.LEVEL_MIN_FRAMES:
                reference = float(np.percentile(levels[-V.LEVEL_FRAMES :], V.LEVEL_PERCENTILE))
                foreground = level >= reference - V.FOREGROUND_DB
                loud = level >= reference - gap_db
                room += room_db is not None and level < reference - room_db
            if foreground:
                speaker_end, room_at_speaker = t, room
            if loud:
                loud_end = t
        if not in_speech:
            if p < vad.threshold:
                levels.clear()
                room = 0
            run = run + 1 if p >= vad.threshold else 0
            if run >= start_frames:
                in_speech, run = True, 0
            continue
        run = run + 1 if p < vad.threshold - 0.15 else 0
        ended = None
        if room_db is not None and len(levels) >= V.LEVEL_MIN_FRAMES and room_at_speaker >= k:
            if t - speaker_end >= b and voice_end > speaker_end:
                ended = ("speaker", t, speaker_end)
        if ended is None and gap_s is not None and 0 < voice_end - loud_end <= V.MAX_BACKGROUND_S:
            if t - loud_end >= b and run * FRAME_S >= gap_s - 1e-9:
                ended = ("speaker", t, speaker_end)
        if ended is None and run >= stop_frames:
            ended = ("silero", t, voice_end if voice_end - speaker_end > V.MAX_BACKGROUND_S else speaker_end)
        if ended is not None:
            out.append(ended)
            in_speech, run, room = False, 0, 0
            levels.clear()
    return out


def turn(*args, **kw) -> tuple[str, float, float] | None:
    """How the first utterance of a trace ends (see :func:`turns`)."""
    found = turns(*args, **kw)
    return found[0] if found else None


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
    rules = [(*r, None, V.FOREGROUND_DB) for r in RULES] + [(None, None, b, g, db) for b, g, db in GAPS]
    today = {label: [turns(tr, None, None, None) for _, tr, _ in streams] for label, streams in sets.items()}
    rows = []
    for room_db, k, b, gap, gap_db in rules:
        if gap is not None:
            label = f"gap: speaker {b} s (within {gap_db:g} dB), room {gap} s"
        else:
            label = "today" if room_db is None else f"room {room_db} dB, {k} frames, {b} s"
        row: dict[str, Any] = {"rule": label}
        for label, streams in sets.items():
            fired = premature = cut = split = 0
            after = []
            for (_, tr, end), before in zip(streams, today[label], strict=True):
                true_end = end + LEAD_S
                found = turns(tr, room_db, k, b, gap, gap_db)
                inside = sum(t < true_end for _, t, _ in found)
                # turns ended inside the speech where today's rule ended none as many
                split += inside > sum(t < true_end for _, t, _ in before)
                last = next((f for f in found if f[1] >= true_end), None)
                if last is None:
                    continue
                who, t, speech_end = last
                fired += who == "speaker"
                premature += who == "speaker" and speech_end < true_end - PREMATURE_S
                cut += inside > 0
                after.append(t - true_end)
            row[label] = {
                "streams": len(streams),
                "fired": fired,
                "premature": premature,
                "cut": cut,
                "split": split,
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
            f"{k}: {v['fired']}/{v['streams']} fired, {v['premature']} premature, {v['split']} split, "
            f"{v['turn_end_p50_s']:.2f} s"
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
