"""The VAD's foreground gate: under background voices the speech end is the speaker's.
Real Silero VAD on the dev set's real speech (its tune half), mixed noise included."""

from __future__ import annotations

import numpy as np
import pytest

from whisperpool.audio import SAMPLE_RATE, load_audio
from whisperpool.bench.accuracy import EVAL, LEAD_S, eval_set
from whisperpool.streaming.session import FINAL_TAIL_S
from whisperpool.streaming.vad import FRAME, StreamingVad

CLIPS = eval_set()


def tune(condition: str) -> list[str]:
    return sorted(
        n
        for n, c in CLIPS.items()
        if c["split"] == "tune" and c["condition"] == condition and c["length_class"] in (3, 5)
    )


def speech_end(audio: np.ndarray, **vad) -> float:
    """The last stop's speech end for ``audio`` played after LEAD_S of silence, 0.1 s chunks."""
    played = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), audio, np.zeros(SAMPLE_RATE, np.float32)])
    v = StreamingVad(**vad)
    stops = [e for i in range(0, played.size, 1600) for e in v.feed(played[i : i + 1600]) if not e.speech]
    assert stops, "the VAD never stopped"
    assert stops[-1].speech_end_s is not None
    return stops[-1].speech_end_s - LEAD_S


def ends(name: str, audio: np.ndarray | None = None) -> tuple[float, float, float]:
    """(true end, gated end, ungated end) of a clip, in seconds into it."""
    audio = load_audio(EVAL / f"{name}.opus") if audio is None else audio
    return CLIPS[name]["speech_end_s"], speech_end(audio), speech_end(audio, foreground_db=None)


def test_under_babble_the_speech_end_is_the_speakers_not_the_voices_behind():
    rows = [ends(n) for n in tune("babble-10db")]
    assert len(rows) >= 8
    gated = np.array([g - true for true, g, _ in rows])
    ungated = np.array([u - true for true, _, u in rows])
    # without the gate the end waits for the background voices to stop
    assert np.median(ungated) >= 0.25
    # with it, it is the speaker's end, give or take a frame or three
    assert np.median(gated) <= 0.12 and np.median(ungated - gated) >= 0.2


@pytest.mark.parametrize("condition", ["clean", "pink-10db", "white-20db"])
def test_without_background_voices_a_final_still_takes_all_the_speech(condition):
    # The gate may take a soft last frame or few for background (up to 0.3 s here), but a
    # final's audio runs FINAL_TAIL_S past the speech end: it still reaches the speech's
    # end, give or take a tenth of a second.
    rows = [ends(n) for n in tune(condition)]
    assert len(rows) >= 4
    for true, gated, _ in rows:
        assert gated + FINAL_TAIL_S >= true - 0.12
    assert np.median([ungated - gated for _, gated, ungated in rows]) <= 0.15


def test_a_loud_start_does_not_turn_the_rest_of_the_speech_into_background():
    # The first half of a clean 5 s sentence 20 dB louder: alone, the gate would take the
    # second half for background and end the speech mid-sentence; MAX_BACKGROUND_S bounds it.
    name = next(n for n in tune("clean") if CLIPS[n]["length_class"] == 5)
    audio = load_audio(EVAL / f"{name}.opus")
    half = audio.size // 2
    audio[:half] = np.clip(audio[:half] * 10.0, -1.0, 1.0)
    true, gated, ungated = ends(name, audio)
    assert ungated >= true - 0.12
    assert gated + FINAL_TAIL_S >= true - 0.12 and gated >= ungated - 0.35


def test_loud_blips_between_utterances_set_no_level_for_the_next(monkeypatch):
    # Silero stubbed frame by frame: eight loud two-frame blips (speech, too short to start
    # an utterance) between utterances, then a soft 0.8 s utterance. Had the blips set its
    # level, all of it would be background and its speech end would be the last blip's.
    plan = [(0.0, 0.0)] * 10 + [(0.9, 0.5), (0.9, 0.5), (0.0, 0.0)] * 8 + [(0.9, 0.05)] * 25 + [(0.0, 0.0)] * 20
    probs = iter(p for p, _ in plan)
    monkeypatch.setattr(StreamingVad, "probability", lambda self, frame: next(probs))
    audio = np.concatenate([np.full(FRAME, amp, np.float32) for _, amp in plan])
    stops = [e for e in StreamingVad().feed(audio) if not e.speech]
    utterance_end_s = (10 + 3 * 8 + 25) * FRAME / SAMPLE_RATE
    assert len(stops) == 1 and stops[0].speech_end_s == pytest.approx(utterance_end_s)
