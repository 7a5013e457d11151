"""Speculative finals: the final's decoding starts after a short silence, before the VAD ends
the utterance. Real Silero VAD on real speech; a stand-in pool the test answers by hand,
so each request's audio, options and timing can be checked."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

import numpy as np
import pytest

from conftest import WAIT, clip
from whisperpool import DecodeOptions, StreamingSession
from whisperpool.audio import SAMPLE_RATE, load_audio
from whisperpool.errors import ConfigError
from whisperpool.results import Segment, TranscriptionResult, Word
from whisperpool.streaming import Final, Partial, SpeechStopped
from whisperpool.streaming.session import FINAL_TAIL_S
from whisperpool.streaming.vad import FOREGROUND_DB

CHUNK = SAMPLE_RATE // 10  # 0.1 s, as a microphone sends it


class Request:
    def __init__(self, audio: np.ndarray, options: DecodeOptions, sent_s: float) -> None:
        self.audio, self.options, self.sent_s = audio, options, sent_s
        self.future: Future[TranscriptionResult] = Future()
        self.word = f" w{len(audio)}"  # each answer names its audio: which request gave a text shows

    @property
    def final(self) -> bool:  # finals (speculative or not) decode with beam search, partials greedy
        return self.options.beam_size > 1

    def answer(self) -> None:
        words = (Word(0.0, 0.5, self.word, 1.0),) if self.options.word_timestamps else None
        segment = Segment(1, 0.0, 0.5, self.word, words=words)
        seconds = self.audio.size / SAMPLE_RATE
        self.future.set_result(TranscriptionResult(self.word.strip(), (segment,), "en", 1.0, seconds, window="short"))


class StandIn:
    """A pool whose requests wait until the test answers them."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.session: StreamingSession | None = None

    def submit(self, audio: np.ndarray, options: DecodeOptions, *, priority: int) -> Future[TranscriptionResult]:
        assert self.session is not None
        self.requests.append(Request(audio.copy(), options, self.session.time_s))
        return self.requests[-1].future

    def finals(self) -> list[Request]:
        return [r for r in self.requests if r.final]

    def answer_all(self, partials_only: bool = False) -> None:
        for r in self.requests:
            if not r.future.done() and not (partials_only and r.final):
                r.answer()


def session_on(pool: StandIn, **kw) -> StreamingSession:
    """A session on ``pool``; without the VAD's level gate unless ``vad_foreground_db`` is
    given: these tests place speculative finals to the frame, and the gate (tested on its
    own, and by the test that turns it on here) may start more of them."""
    kw.setdefault("vad_foreground_db", None)
    pool.session = StreamingSession(pool, DecodeOptions(language="en"), **kw)  # type: ignore[arg-type]
    return pool.session


def speech(*parts: str | float, cut_s: float | None = None) -> np.ndarray:
    """Clips and silences (seconds) in a row, after 0.5 s of silence; the first clip cut at ``cut_s``."""
    out = [np.zeros(SAMPLE_RATE // 2, np.float32)]
    for p in parts:
        out.append(np.zeros(int(p * SAMPLE_RATE), np.float32) if isinstance(p, float) else load_audio(clip(p)))
    if cut_s is not None:
        out[1] = out[1][: int(cut_s * SAMPLE_RATE)]
    return np.concatenate(out)


async def play(session: StreamingSession, audio: np.ndarray, step, chunk: int = CHUNK) -> list:
    """Feed ``audio`` chunk by chunk, each through the VAD, calling ``step()`` after each;
    then close, answering whatever is still asked."""
    for i in range(0, audio.size, chunk):
        session.feed(audio[i : i + chunk])
        await asyncio.wait_for(session.flush(), WAIT)
        step()
        await asyncio.sleep(0)  # answered futures reach the session
    closing = asyncio.ensure_future(session.close())
    for _ in range(int(WAIT / 0.01)):  # bounded: WAIT seconds
        if closing.done():
            break
        session.pool.answer_all()  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
    await asyncio.wait_for(closing, WAIT)
    return [e async for e in session]


def streamed(audio: np.ndarray, **kw) -> tuple[StandIn, list]:
    """``audio`` through a session with ``kw`` on a stand-in pool that answers at once."""

    async def run():
        pool = StandIn()
        events = await play(session_on(pool, **kw), audio, pool.answer_all)
        return pool, events

    return asyncio.run(asyncio.wait_for(run(), WAIT))


@pytest.mark.parametrize("answer", ["at once", "after the stop"])
def test_the_speculative_final_is_the_final_when_no_speech_follows(answer):
    # Without the level gate, one speculative final in all (soft frames inside a clean
    # sentence can start and stale one with it: see the next test).
    audio = speech("fox", 1.0)

    async def run():
        pool = StandIn()
        events = await play(session_on(pool), audio, lambda: pool.answer_all(partials_only=answer != "at once"))
        return pool, events

    pool, events = asyncio.run(asyncio.wait_for(run(), WAIT))
    if answer != "at once":  # answered now, after the VAD ended the utterance and close() waits
        assert len(pool.finals()) == 1
    finals = [e for e in events if isinstance(e, Final)]
    stop = next(e for e in events if isinstance(e, SpeechStopped))
    speech_end = stop.end_s - 0.3  # the VAD's stop time is its last speech frame + 0.3 s
    assert len(finals) == 1
    assert len(pool.finals()) == 1  # one decoding for the final: no second one after the stop
    spec = pool.finals()[0]
    # Sent before the VAD could end the utterance (12 frames of 32 ms: 0.384 s of silence).
    assert spec.sent_s < speech_end + 0.38
    assert finals[0].text == spec.word.strip()
    assert spec.audio.size == round((speech_end + FINAL_TAIL_S - finals[0].start_s) * SAMPLE_RATE)


def test_with_the_level_gate_the_last_speculative_final_is_the_final_and_comes_no_later():
    # The default session: the speculative final may come earlier (at the speaker's last
    # loud frame), a soft stretch inside the sentence may start one that goes stale, but
    # the last one sent is the final, sent before the stop, and nothing is decoded after.
    pool, events = streamed(speech("fox", 1.0), vad_foreground_db=FOREGROUND_DB)
    finals = [e for e in events if isinstance(e, Final)]
    stop = next(e for e in events if isinstance(e, SpeechStopped))
    voice_end = stop.end_s - 0.3  # Silero's last speech frame, background or not
    spec = pool.finals()[-1]
    assert len(finals) == 1 and finals[0].text == spec.word.strip()
    assert all(r.sent_s < voice_end + 0.38 for r in pool.finals())  # none after the stop
    # its audio ends at most 0.3 s before Silero's last speech frame, plus the tail
    audio_end = finals[0].start_s + spec.audio.size / SAMPLE_RATE
    assert voice_end + FINAL_TAIL_S - 0.3 <= audio_end <= voice_end + FINAL_TAIL_S + 1e-6


def test_a_speculative_final_decodes_the_samples_a_late_final_would():
    """Same input, same output: fed in one piece, the VAD stops the utterance before any
    pause can be noticed, so the final is decoded after the stop; its audio and options are
    the speculative final's."""
    audio = speech("groceries", 1.0)

    async def run(chunk: int):
        pool = StandIn()
        await play(session_on(pool), audio, pool.answer_all, chunk)
        return pool

    live, whole = (asyncio.run(asyncio.wait_for(run(c), WAIT)) for c in (CHUNK, audio.size))
    assert len(live.finals()) == len(whole.finals()) == 1
    assert live.finals()[0].sent_s < whole.finals()[0].sent_s  # speculated
    assert np.array_equal(live.finals()[0].audio, whole.finals()[0].audio)
    assert live.finals()[0].options == whole.finals()[0].options


def test_when_speech_resumes_the_speculative_final_is_dropped_and_the_final_is_decoded():
    # The voice of "fox" ends at 3.07 s: a pause the VAD hears, shorter than its 0.4 s stop.
    audio = speech("fox", 0.05, "groceries", 1.0, cut_s=3.25)
    held: list[Request] = []

    async def run():
        pool = StandIn()
        session = session_on(pool, final_tail_s=0.1)

        def step() -> None:
            for r in pool.requests:
                if r.future.done() or r in held:
                    continue
                if r.final and not held:  # the first speculative final: answered once speech resumed
                    held.append(r)
                elif r.final or session.time_s > held_until():
                    r.answer()
            if held and not held[0].future.done() and session.time_s > held_until():
                held[0].answer()

        def held_until() -> float:
            return held[0].sent_s + 1.2 if held else float("inf")

        return pool, await play(session, audio, step)

    pool, events = asyncio.run(asyncio.wait_for(run(), WAIT))
    spec = held[0]
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1, finals  # one utterance: the pause did not end it
    assert spec.sent_s < 0.5 + 3.3 + 0.1  # sent in the pause, before the second sentence starts
    # A final decodes without word times, which the commit policy needs: not a partial.
    assert not spec.options.word_timestamps
    assert any(isinstance(e, Partial) for e in events)
    assert not any(isinstance(e, Partial) and spec.word.strip() in e.text.split() for e in events)
    # Nor do partials wait for it once speech resumed: one is sent while it still runs.
    assert any(not r.final and spec.sent_s < r.sent_s < spec.sent_s + 1.2 for r in pool.requests)
    last = pool.finals()[-1]
    assert last is not spec and last.audio.size > spec.audio.size  # the final covers both sentences
    assert finals[0].text.split()[-1] == last.word.strip()


@pytest.mark.parametrize("how", ["commit", "close"])
def test_a_stale_speculative_final_never_holds_up_the_final(how):
    """commit() and close() end the utterance now, with all its audio: a speculative final
    still running is for other audio, so it is left behind and the final goes at once."""
    audio = speech("fox", cut_s=3.25)  # ends in a pause (the voice ends at 3.07 s): not stopped yet

    async def run():
        pool = StandIn()
        session = session_on(pool, final_tail_s=0.1)
        for i in range(0, audio.size, CHUNK):
            session.feed(audio[i : i + CHUNK])
            await asyncio.wait_for(session.flush(), WAIT)
            pool.answer_all(partials_only=True)
            await asyncio.sleep(0)
        spec = pool.finals()[0]  # sent, not answered
        if how == "commit":
            session.commit()
        closing = asyncio.ensure_future(session.close())
        await asyncio.sleep(0.05)
        assert len(pool.finals()) == 2 and spec.future.cancelled()  # the final did not wait
        pool.finals()[1].answer()
        await asyncio.wait_for(closing, WAIT)
        return pool, [e async for e in session]

    pool, events = asyncio.run(asyncio.wait_for(run(), WAIT))
    spec, final = pool.finals()
    assert final.audio.size > spec.audio.size  # to the end of what was fed
    assert [e.text for e in events if isinstance(e, Final)] == [final.word.strip()]


def test_without_a_tail_the_final_waits_for_the_vad_and_bad_tails_are_refused():
    pool, events = streamed(speech("fox", 1.0), final_tail_s=None)
    stop = next(e for e in events if isinstance(e, SpeechStopped))
    assert len(pool.finals()) == 1 and pool.finals()[0].sent_s >= stop.end_s + 0.1  # after the stop
    assert pool.finals()[0].audio.size == round((stop.end_s - events[0].start_s) * SAMPLE_RATE)

    async def make(tail):
        return session_on(StandIn(), final_tail_s=tail)

    for bad in (-0.1, 0.5):
        with pytest.raises(ConfigError, match="final_tail_s"):
            asyncio.run(make(bad))


@pytest.mark.parametrize("cut_s", [2.7, 2.8, 2.9, 3.0, 3.1])
def test_no_partial_is_sent_in_the_pause_before_a_speculative_final(cut_s):
    """Once the VAD hears silence after speech, a due partial waits: the speculative final
    is about to replace it. The cuts shift the end of speech across one update interval,
    so for some of them a partial falls due in the pause."""
    audio = speech("fox", 1.0, cut_s=cut_s)

    async def run():
        pool = StandIn()
        events = await play(session_on(pool), audio, pool.answer_all)
        return pool, events

    pool, events = asyncio.run(asyncio.wait_for(run(), WAIT))
    stop = next(e for e in events if isinstance(e, SpeechStopped))
    speech_end = stop.end_s - 0.3  # the VAD's last speech frame
    partials = [r for r in pool.requests if not r.final]
    assert partials and len(pool.finals()) == 1
    frame_s = 512 / SAMPLE_RATE  # the VAD decides frame by frame: a chunk's last few ms may be undecided
    assert all(r.sent_s <= speech_end + frame_s for r in partials), [r.sent_s - speech_end for r in partials]


def test_a_partial_held_in_a_short_pause_goes_when_speech_resumes():
    # The voice of "fox" ends at 3.07 s: a pause of about 0.13 s, shorter than the tail.
    audio = speech("fox", 0.05, "groceries", 1.0, cut_s=3.15)

    async def run():
        pool = StandIn()
        session = session_on(pool)
        events = await play(session, audio, pool.answer_all)
        return pool, events

    pool, events = asyncio.run(asyncio.wait_for(run(), WAIT))
    first_end = 0.5 + 3.15 + 0.05
    later = [r for r in pool.requests if not r.final and r.sent_s > first_end]
    assert later, "partials go on once speech resumes"
    assert len([e for e in events if isinstance(e, Final)]) == 1  # the short pause did not end the utterance
