"""Streaming mechanics on the fake backend: scheduling, coalescing, priority, bad frames."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import WAIT, fake_config, wait_for
from whisperpool import TranscriptionEngine
from whisperpool.pool import PRIORITY_REALTIME
from whisperpool.server import ServerSettings, create_app
from whisperpool.server.realtime import MAX_CHUNK_BYTES
from whisperpool.streaming import Agreement, TimedWord
from whisperpool.testing import FakeBehavior

RATE = 16_000


async def ended(session) -> list:
    """Commit the turn, close the stream: all its events."""
    session.commit()
    await session.close()
    return [e async for e in session]


async def fed(session, chunks: int, pause_s: float) -> list:
    """``chunks`` chunks of 0.1 s of quiet audio, ``pause_s`` apart (updates are asked for
    on the way), then :func:`ended`."""
    for _ in range(chunks):
        session.feed(np.full(RATE // 10, 0.01, np.float32), RATE)
        await asyncio.sleep(pause_s)
    return await ended(session)


def words(*texts: str, start: float = 0.0) -> list[TimedWord]:
    return [TimedWord(start + i, start + i + 0.5, f" {t}") for i, t in enumerate(texts)]


def test_local_agreement_commits_what_two_hypotheses_share_and_never_takes_it_back():
    a = Agreement()
    assert a.update(words("the", "quick")) == []  # one hypothesis: nothing agreed yet
    assert [w.key for w in a.update(words("the", "quick", "brown"))] == ["the", "quick"]
    # The next hypothesis changes its mind about "brown": only agreed words are committed.
    assert [w.key for w in a.update(words("the", "quick", "brown", "fox", "jumps"))] == ["brown"]
    # A later hypothesis that reads "brawn" cannot take "brown" back; the new words agree.
    assert [w.key for w in a.update(words("the", "quick", "brawn", "fox", "jumps", "over"))] == ["fox", "jumps"]
    assert [w.key for w in a.committed] == ["the", "quick", "brown", "fox", "jumps"]
    # The final pass covers the buffer from 5 s: it replaces the tentative tail.
    a.finish(words("over", "the", "dog", start=5.0), buffer_start_s=5.0)
    assert [w.key for w in a.committed] == ["the", "quick", "brown", "fox", "jumps", "over", "the", "dog"]


def test_updates_coalesce_one_in_flight_at_realtime_priority():
    calls: list[int] = []
    in_flight = {"now": 0, "max": 0}

    async def run():
        config = fake_config(pool_size=1, fake=FakeBehavior(inference_delay_s=0.4))
        async with TranscriptionEngine(config) as engine:
            submit = engine.pool.submit

            def spy(audio, options=None, *, priority=10, **kw):
                calls.append(priority)
                fut = submit(audio, options, priority=priority, **kw)
                if options.beam_size == 1:  # a partial (the final, beam search, may overtake one)
                    in_flight["now"] += 1
                    in_flight["max"] = max(in_flight["max"], in_flight["now"])
                    fut.add_done_callback(lambda _: in_flight.__setitem__("now", in_flight["now"] - 1))
                return fut

            engine.pool.submit = spy
            session = engine.stream(vad=False, update_interval_s=0.1)
            return await fed(session, 40, 0.01)  # 4 s of audio at once: 40 updates asked for

    events = asyncio.run(asyncio.wait_for(run(), WAIT))
    assert in_flight["max"] == 1
    assert 2 <= len(calls) <= 5  # coalesced: one running, one waiting with the newest audio, the final
    assert set(calls) == {PRIORITY_REALTIME}
    assert type(events[-1]).__name__ == "Final"


def test_only_a_final_forbids_repeated_4_grams_and_a_callers_own_size_wins():
    sent: list[tuple[str, int]] = []  # (window, no_repeat_ngram_size) of each update

    async def run(**decode):
        async with TranscriptionEngine(fake_config(pool_size=1)) as engine:
            submit = engine.pool.submit

            def spy(audio, options=None, **kw):
                sent.append((options.window, options.no_repeat_ngram_size))
                return submit(audio, options, **kw)

            engine.pool.submit = spy
            session = engine.stream(vad=False, update_interval_s=0.2, **decode)
            return await fed(session, 10, 0.02)  # 1 s of audio: partials asked for on the way

    events = asyncio.run(asyncio.wait_for(run(), WAIT))
    assert type(events[-1]).__name__ == "Final"
    partials = [n for window, n in sent if window == "short"]
    assert partials and set(partials) == {0}  # a partial's loop is dropped: the next update replaces it
    assert sent[-1] == ("auto", 4)
    sent.clear()
    asyncio.run(asyncio.wait_for(run(no_repeat_ngram_size=3), WAIT))
    assert sent[-1] == ("auto", 3) and {n for _, n in sent} == {3}


def test_a_final_does_not_wait_for_a_partial_of_its_utterance():
    running_at_final: list[int] = []

    async def run():
        config = fake_config(pool_size=2, fake=FakeBehavior(inference_delay_s=0.6))
        async with TranscriptionEngine(config) as engine:
            submit, in_flight = engine.pool.submit, {"now": 0}

            def spy(audio, options=None, *, priority=10, **kw):
                if options.beam_size > 1:  # the final (beam search); partials are greedy
                    running_at_final.append(in_flight["now"])
                in_flight["now"] += 1
                fut = submit(audio, options, priority=priority, **kw)
                fut.add_done_callback(lambda _: in_flight.__setitem__("now", in_flight["now"] - 1))
                return fut

            engine.pool.submit = spy
            session = engine.stream(vad=False, update_interval_s=0.1)
            session.feed(np.full(RATE, 0.01, np.float32), RATE)
            for _ in range(50):  # until the first partial runs (bounded: 5 s)
                if in_flight["now"]:
                    break
                await asyncio.sleep(0.1)
            return await ended(session)

    events = asyncio.run(asyncio.wait_for(run(), WAIT))
    assert running_at_final == [1]  # sent while the partial still ran, not after it
    assert [type(e).__name__ for e in events][-1] == "Final"
    assert not [e for e in events if type(e).__name__ == "StreamError"]


def test_a_streams_final_keeps_the_short_window_on_low_confidence_where_a_file_falls_back():
    marker = FakeBehavior().fallback_marker  # the fake's "low log-probability" audio
    audio = np.full(2 * RATE, 0.01, np.float32)
    audio[0] = marker

    async def run():
        async with TranscriptionEngine(fake_config(pool_size=1)) as engine:
            offline = await engine.transcribe(audio)
            session = engine.stream(vad=False, update_interval_s=10.0)
            session.feed(audio, RATE)
            events = await ended(session)
            return offline, events, engine.status().window_fallbacks

    offline, events, fallbacks = asyncio.run(asyncio.wait_for(run(), WAIT))
    assert (offline.window, offline.fallback) == ("full", "log_probability")
    assert type(events[-1]).__name__ == "Final"
    assert fallbacks == {"log_probability": 1}  # the file's, not the final's


def test_realtime_bad_frames_oversize_and_abrupt_disconnects_leave_others_working():
    with TestClient(create_app(ServerSettings(pool=fake_config(pool_size=1)))) as client:
        assert wait_for(lambda: client.get("/health/ready").status_code == 200)
        with client.websocket_connect("/v1/realtime?intent=transcription") as ws:
            assert ws.receive_json()["type"] == "transcription_session.created"
            big = base64.b64encode(b"\x00" * (MAX_CHUNK_BYTES + 2)).decode()
            ws.send_text(json.dumps({"type": "input_audio_buffer.append", "audio": big}))
            assert ws.receive_json()["error"]["code"] == "too_large"
            ws.send_bytes(b"\x00\x01")
            assert ws.receive_json()["error"]["code"] == "invalid_event"
            ws.send_text(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
            assert ws.receive_json()["error"]["param"] == "session.type"
            chunk = base64.b64encode(np.zeros(2400, "<i2").tobytes()).decode()
            ws.send_text(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            # gone without a goodbye, mid-stream
        with client.websocket_connect("/v1/realtime?intent=transcription") as ws:
            ws.receive_json()
            ws.send_text(json.dumps({"type": "transcription_session.update", "session": {"turn_detection": None}}))
            assert ws.receive_json()["type"] == "transcription_session.updated"
            samples = np.zeros(24_000, "<i2")
            ws.send_text(
                json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(samples.tobytes()).decode()})
            )
            ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
            assert ws.receive_json()["type"] == "input_audio_buffer.committed"
            completed = ws.receive_json()
            while completed["type"] != "conversation.item.input_audio_transcription.completed":
                completed = ws.receive_json()
        status = client.get("/v1/pool").json()
    assert status["warm_workers"] == 1 and status["worker_crashes"] == 0


@pytest.mark.parametrize(
    "query,headers", [("intent=conversation", {}), ("intent=transcription", {"authorization": "Bearer wrong"})]
)
def test_realtime_refuses_other_intents_and_wrong_keys(query, headers):
    from starlette.websockets import WebSocketDisconnect

    settings = ServerSettings(pool=fake_config(pool_size=1), api_key="right")
    with TestClient(create_app(settings)) as client:
        with pytest.raises(WebSocketDisconnect) as info:
            with client.websocket_connect(f"/v1/realtime?{query}", headers=headers) as ws:
                ws.receive_json()
    assert info.value.code == 1008


def test_one_realtime_mapping_deltas_only_append_and_items_commit_in_order():
    from whisperpool.errors import ErrorInfo, QueueFull
    from whisperpool.streaming import Final, Partial, SpeechStarted, SpeechStopped, StreamError
    from whisperpool.streaming.realtime import RealtimeEvents

    events = RealtimeEvents(tentative=True)
    out = []
    for event in (
        SpeechStarted("item_1", 0.25),
        Partial("item_1", " the quick brawn", " the quick"),
        Partial("item_1", " the quick brown fox", " the quick"),  # nothing new committed: no delta
        SpeechStopped("item_1", 1.5),
        Final("item_1", " the quick brown fox", 0.25, 1.5),
        StreamError("item_2", ErrorInfo.from_exception(QueueFull("full"))),
    ):
        out += events.translate(event)
    assert [e["type"] for e in out] == [
        "input_audio_buffer.speech_started",
        "partial",
        "conversation.item.input_audio_transcription.delta",
        "partial",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
    ]
    assert out[0]["audio_start_ms"] == 250 and out[4]["audio_end_ms"] == 1500
    assert [e["delta"] for e in out if e["type"].endswith(".delta")] == [" the quick", " brown fox"]
    assert out[7]["transcript"] == " the quick brown fox" and (out[7]["start_s"], out[7]["end_s"]) == (0.25, 1.5)
    assert out[5]["previous_item_id"] is None and events.committed("item_2")["previous_item_id"] == "item_1"
    assert out[8]["error"]["code"] == "queue_full"
    assert "partial" not in [e["type"] for e in RealtimeEvents().translate(Partial("i", " a b", " a"))]
