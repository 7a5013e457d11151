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


def stubbed(monkeypatch, plan: list[tuple[float, float]], **vad) -> list[tuple[float, float]]:
    """``plan``'s frames (Silero's probability, amplitude) through a VAD with Silero stubbed:
    (frame time at which each stop was heard, its speech end)."""
    probs = iter(p for p, _ in plan)
    monkeypatch.setattr(StreamingVad, "probability", lambda self, frame: next(probs))
    v = StreamingVad(**vad)
    heard = []
    for _, amp in plan:
        heard += [(v.time_s, e.speech_end_s) for e in v.feed(np.full(FRAME, amp, np.float32)) if not e.speech]
    return heard


FRAME_S = FRAME / SAMPLE_RATE
SPEAKER = [(0.9, 0.5)] * 40  # 1.3 s of a speaker's speech


@pytest.mark.parametrize("room_pause_s", [0.2, None])
def test_a_pause_of_the_room_ends_the_turn_once_the_speaker_has_been_silent_long_enough(monkeypatch, room_pause_s):
    # After the speaker, 0.5 s of voices 20 dB under them, a 0.26 s pause, the voices again.
    plan = SPEAKER + [(0.9, 0.05)] * 16 + [(0.0, 0.0)] * 8 + [(0.9, 0.05)] * 20 + [(0.0, 0.0)] * 20
    heard = stubbed(monkeypatch, plan, room_pause_s=room_pause_s)
    speaker_end = 40 * FRAME_S
    room_paused = (40 + 16 + 7) * FRAME_S  # the room's 7th silent frame: 0.224 s >= 0.2 s
    if room_pause_s is None:  # the room's pause is too short for Silero's 0.4 s: one turn, to the end
        assert len(heard) == 1 and heard[0][0] == pytest.approx((40 + 16 + 8 + 20 + 12) * FRAME_S)
    else:
        assert heard[0] == (pytest.approx(room_paused), pytest.approx(speaker_end))
        assert len(heard) == 2  # the voices after it are a turn of their own


def test_the_room_pause_waits_for_the_speakers_min_silence(monkeypatch):
    # The voices pause 0.16 s after the speaker: too soon (the speaker has been silent
    # 0.16 s, not 0.4 s), so the pause ends the turn only once it has lasted 0.4 s in all.
    plan = SPEAKER + [(0.9, 0.05)] * 5 + [(0.0, 0.0)] * 30
    heard = stubbed(monkeypatch, plan)
    # not at the room's 7th silent frame (52): the speaker has been silent 0.38 s then
    assert heard == [(pytest.approx((40 + 5 + 8) * FRAME_S), pytest.approx(40 * FRAME_S))]
    # still sooner than Silero's own stop, 12 silent frames after the room's last
    assert stubbed(monkeypatch, plan, room_pause_s=None)[0][0] == pytest.approx((40 + 5 + 12) * FRAME_S)


def test_background_past_its_bound_is_the_speaker_and_waits_for_silero(monkeypatch):
    # Soft speech for 1.2 s after loud speech is the speaker's (MAX_BACKGROUND_S): a pause in
    # it is a pause of the speaker's, which ends the turn after Silero's 0.4 s only.
    plan = SPEAKER + [(0.9, 0.05)] * 38 + [(0.0, 0.0)] * 8 + [(0.9, 0.05)] * 10 + [(0.0, 0.0)] * 20
    heard = stubbed(monkeypatch, plan)
    assert len(heard) == 1 and heard[0][0] == pytest.approx((40 + 38 + 8 + 10 + 12) * FRAME_S)


@pytest.mark.parametrize("condition", ["babble-10db", "clean", "white-20db"])
def test_on_real_speech_the_room_pause_ends_turns_sooner_and_never_in_the_speech(condition):
    """Real Silero on the tune half, 0.1 s chunks: when each clip's first turn end is heard,
    with the room's pause and without. Under babble (voices go on 0.3-0.5 s past the
    speaker) it is heard sooner; it never ends a turn inside the speech where Silero's
    silence would not have (a clip with a long pause inside is cut there by both)."""

    def heard(audio: np.ndarray, **vad) -> tuple[float, float]:
        """When the first stop is heard, and its speech end, in seconds into the clip."""
        played = np.concatenate(
            [np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), audio, np.zeros(SAMPLE_RATE, np.float32)]
        )
        v = StreamingVad(**vad)
        for i in range(0, played.size, 1600):
            stops = [e for e in v.feed(played[i : i + 1600]) if not e.speech]
            if stops:
                assert stops[0].speech_end_s is not None
                return v.time_s - LEAD_S, stops[0].speech_end_s - LEAD_S
        raise AssertionError("the VAD never stopped")

    rows = []
    for name in tune(condition):
        audio = load_audio(EVAL / f"{name}.opus")
        rows.append((CLIPS[name]["speech_end_s"], *heard(audio), *heard(audio, room_pause_s=None)))
    assert len(rows) >= 4
    for true, paused, paused_end, waited, waited_end in rows:
        assert min(true, waited) <= paused <= waited
        if paused >= true:  # the same turn: it ends at the same speech end, only heard sooner
            assert paused_end == pytest.approx(waited_end, abs=FRAME_S + 1e-6)
    if condition == "babble-10db":
        assert np.median([w - p for _, p, _, w, _ in rows]) >= 0.1
