"""Each live stream has a price limit (issue 13, item 3), on the fake backend.

Session caps per server and per client, the idle timeout, browser Origins, the audio rate
and the buffered-audio cap on the Realtime WebSocket; the settings that hold them; and the
VAD off the event loop. Every wait is bounded; all traffic stays in-process or on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from conftest import WAIT, clip, fake_config, wait_for
from whisperpool import TranscriptionEngine
from whisperpool.audio import load_audio
from whisperpool.errors import ConfigError
from whisperpool.server import ServerSettings, create_app
from whisperpool.server.limits import AudioBudget, LimitExceeded, check_json_depth
from whisperpool.server.settings import StreamLimits, build_settings, env_overrides

REALTIME = "/v1/realtime?intent=transcription"
COMPLETED = "conversation.item.input_audio_transcription.completed"


def app_with(**limits) -> TestClient:
    return TestClient(create_app(ServerSettings(pool=fake_config(pool_size=1), streams=StreamLimits(**limits))))


def append(seconds: float, rate: int = 24_000) -> str:
    pcm = np.zeros(round(seconds * rate), "<i2").tobytes()
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})


def receive_until(ws, kind: str, limit: int = 200) -> list[dict]:
    events = [ws.receive_json()]
    while events[-1]["type"] != kind and len(events) < limit:
        events.append(ws.receive_json())
    assert events[-1]["type"] == kind, events
    return events


# -- settings ---------------------------------------------------------------------------------
def test_every_limit_is_a_validated_setting_with_a_variable():
    defaults = StreamLimits()
    assert (defaults.max_sessions, defaults.max_sessions_per_client, defaults.idle_timeout_s) == (32, 8, 60.0)
    assert (defaults.max_audio_rate, defaults.audio_burst_s, defaults.max_buffered_s) == (4.0, 20.0, 30.0)
    assert defaults.allowed_origins == ()
    for field, bad in (
        ("max_sessions", 0),
        ("idle_timeout_s", float("inf")),
        ("max_audio_rate", -1),
        ("max_buffered_s", 0.5),
    ):
        with pytest.raises(ConfigError, match=f"StreamLimits.{field}"):
            StreamLimits(**{field: bad})
    environ = {
        "WHISPERPOOL_STREAM_MAX_SESSIONS": "3",
        "WHISPERPOOL_STREAM_IDLE_TIMEOUT_S": "5",
        "WHISPERPOOL_ALLOWED_ORIGINS": "https://a.example, https://b.example/",
        "WHISPERPOOL_WYOMING_HOST": "::1",
    }
    settings = build_settings(env_overrides(environ))
    assert settings.streams.max_sessions == 3 and settings.streams.idle_timeout_s == 5.0
    assert settings.streams.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.wyoming_host == "::1"


def test_wyoming_binds_loopback_and_refuses_an_open_address_under_an_api_key():
    assert ServerSettings(host="0.0.0.0", wyoming_port=10300).wyoming_host == "127.0.0.1"
    with pytest.raises(ConfigError, match="Wyoming protocol has no authentication"):
        ServerSettings(api_key="k", wyoming_port=10300, wyoming_host="0.0.0.0")
    assert ServerSettings(api_key="k", wyoming_port=10300, wyoming_host="0.0.0.0", wyoming_insecure=True)
    assert ServerSettings(api_key="k", wyoming_port=10300, wyoming_host="::1")
    with pytest.raises(ConfigError):
        build_settings(env_overrides({"WHISPERPOOL_WYOMING_INSECURE": "perhaps"}))


def test_the_token_bucket_allows_a_burst_then_real_time_times_the_rate():
    now = [0.0]
    budget = AudioBudget(StreamLimits(max_audio_rate=4.0, audio_burst_s=10.0), clock=lambda: now[0])
    budget.take(10.0, 0.0)  # the burst
    with pytest.raises(LimitExceeded, match="4x real time") as info:
        budget.take(0.5, 0.0)
    assert info.value.code == "rate_limited"
    now[0] = 1.0  # a second later: 4 s more
    budget.take(4.0, 0.0)
    with pytest.raises(LimitExceeded, match="--stream-max-buffered-s") as info:
        AudioBudget(StreamLimits()).take(1.0, 29.5)
    assert info.value.code == "input_audio_buffer_too_large"


def test_json_depth_is_checked_without_parsing():
    check_json_depth(json.dumps({"audio": "[" * 5000}))  # brackets inside strings do not count
    check_json_depth(json.dumps({"a": [[1, 2], [3, {"b": [4]}]]}))
    with pytest.raises(LimitExceeded):
        check_json_depth("[" * 100_000 + "]" * 100_000)


# -- Realtime ---------------------------------------------------------------------------------
def test_sessions_over_the_caps_are_told_why_and_closed_with_1013():
    with app_with(max_sessions=2, max_sessions_per_client=2) as client:
        with client.websocket_connect(REALTIME) as a, client.websocket_connect(REALTIME) as b:
            assert a.receive_json()["type"] == b.receive_json()["type"] == "transcription_session.created"
            with client.websocket_connect(REALTIME) as c:
                error = c.receive_json()
                assert error["type"] == "error" and error["error"]["code"] == "session_limit"
                assert "--stream-max-sessions" in error["error"]["message"]
                with pytest.raises(WebSocketDisconnect) as info:
                    c.receive_json()
                assert info.value.code == 1013
        with client.websocket_connect(REALTIME) as again:  # the slots came back
            assert again.receive_json()["type"] == "transcription_session.created"
    with app_with(max_sessions=10, max_sessions_per_client=1) as client:
        with client.websocket_connect(REALTIME) as a:
            a.receive_json()
            with client.websocket_connect(REALTIME) as b:
                error = b.receive_json()["error"]
                assert error["code"] == "session_limit" and "per client address" in error["message"]


def test_an_idle_session_is_closed_after_the_timeout():
    with app_with(idle_timeout_s=0.5) as client:
        with client.websocket_connect(REALTIME) as ws:
            ws.receive_json()
            started = time.monotonic()
            error = ws.receive_json()  # nothing sent: the server speaks first
            assert error["error"]["code"] == "idle_timeout" and "--stream-idle-timeout-s" in error["error"]["message"]
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_json()
            assert info.value.code == 1000
            assert 0.4 < time.monotonic() - started < WAIT


@pytest.mark.parametrize(
    "origin,allowed,ok",
    [
        (None, (), True),  # not a browser
        ("https://evil.example", (), False),
        ("https://app.example", ("https://app.example",), True),
        ("https://evil.example", ("https://app.example",), False),
        ("https://any.example", ("*",), True),
    ],
)
def test_browser_origins_must_be_listed(origin, allowed, ok):
    headers = {"origin": origin} if origin else {}
    with app_with(allowed_origins=allowed) as client:
        if ok:
            with client.websocket_connect(REALTIME, headers=headers) as ws:
                assert ws.receive_json()["type"] == "transcription_session.created"
            return
        with pytest.raises(WebSocketDisconnect) as info:
            with client.websocket_connect(REALTIME, headers=headers) as ws:
                ws.receive_json()
        assert info.value.code == 1008 and "--allowed-origin" in info.value.reason


def test_a_flood_without_turn_detection_is_rate_limited_and_the_buffer_capped():
    """The probe: 30 minutes in seconds with turn_detection null (shortened: 2 minutes)."""
    with app_with(max_audio_rate=4.0, audio_burst_s=5.0, max_buffered_s=8.0) as client:
        assert wait_for(lambda: client.get("/health/ready").status_code == 200)
        with client.websocket_connect(REALTIME) as ws:
            ws.receive_json()
            ws.send_text(json.dumps({"type": "transcription_session.update", "session": {"turn_detection": None}}))
            assert ws.receive_json()["type"] == "transcription_session.updated"
            chunk = append(2.0)
            codes = []
            started = time.monotonic()
            for _ in range(60):  # 2 minutes of audio, as fast as the socket takes it
                ws.send_text(chunk)
            ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
            events = receive_until(ws, COMPLETED, limit=200)
            codes = [e["error"]["code"] for e in events if e["type"] == "error"]
            assert time.monotonic() - started < WAIT
            # Most of it was refused, each chunk with an error that names the limit.
            assert set(codes) <= {"rate_limited", "input_audio_buffer_too_large"} and "rate_limited" in codes
            assert len(codes) >= 56  # at most 8 s of the 120 s were taken
            completed = events[-1]
            assert completed["end_s"] - completed["start_s"] <= 8.0 + 0.1  # not 2 minutes
            # The session goes on: audio at a sane pace is transcribed.
            time.sleep(0.6)
            ws.send_text(append(1.0))
            ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
            assert receive_until(ws, COMPLETED)[-1]["type"] == COMPLETED
        status = client.get("/v1/pool").json()
    assert status["worker_crashes"] == 0 and status["warm_workers"] == 1


def test_appends_that_are_not_base64_cost_no_rate_budget():
    # 4 s of burst: six 2 s "chunks" of garbage of the right length are each refused as
    # not base64, and the 2 s of real audio after them still fits the burst
    with app_with(max_audio_rate=1.0, audio_burst_s=4.0) as client:
        assert wait_for(lambda: client.get("/health/ready").status_code == 200)
        with client.websocket_connect(REALTIME) as ws:
            ws.receive_json()
            ws.send_text(json.dumps({"type": "transcription_session.update", "session": {"turn_detection": None}}))
            assert ws.receive_json()["type"] == "transcription_session.updated"
            good = json.loads(append(2.0))["audio"]
            garbage = json.dumps({"type": "input_audio_buffer.append", "audio": "!" * len(good)})
            for _ in range(6):
                ws.send_text(garbage)
                event = ws.receive_json()
                assert event["type"] == "error" and event["error"]["code"] == "invalid_base64", event
            ws.send_text(append(2.0))
            ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
            events = receive_until(ws, COMPLETED)
    assert not [e for e in events if e["type"] == "error"], events


# -- the VAD off the event loop ---------------------------------------------------------------
def test_the_vad_runs_off_the_event_loop_in_order():
    speech = load_audio(clip("fox"))
    noise = np.random.default_rng(1).uniform(-0.3, 0.3, 16_000 * 20).astype(np.float32)
    noise[0] = 0.01  # not a fake-backend marker

    async def run():
        async with TranscriptionEngine(fake_config(pool_size=1)) as engine:
            # In order: chunk by chunk, the same events as the whole clip through one VAD.
            from whisperpool.streaming.vad import StreamingVad

            expected = [(e.speech, e.time_s) for e in StreamingVad().feed(speech)]
            session = engine.stream()
            for i in range(0, speech.size, 1600):
                session.feed(speech[i : i + 1600], 16_000)
            await session.close()
            seen = [type(e).__name__ for e in [e async for e in session]]
            # A flood of noise: feed() returns at once, the loop keeps ticking meanwhile.
            flood = engine.stream()
            started = time.perf_counter()
            for i in range(0, noise.size, 16_000):
                flood.feed(noise[i : i + 16_000], 16_000)
            fed = time.perf_counter() - started
            gaps, last = [], time.perf_counter()
            flushed = asyncio.ensure_future(flood.flush())
            for _ in range(2_000):  # bounded: at most 2000 ticks of 1 ms
                if flushed.done():
                    break
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
            await asyncio.wait_for(flushed, WAIT)
            flood.clear()
            await flood.close()
            return expected, seen, fed, gaps

    expected, seen, fed, gaps = asyncio.run(asyncio.wait_for(run(), 2 * WAIT))
    assert expected and expected[0][0] is True
    assert seen[0] == "SpeechStarted" and seen[-1] == "Final"
    assert fed < 0.5  # 20 s of audio queued, not analysed, by feed()
    assert max(gaps, default=0.0) < 0.5  # the loop was never held for the VAD's whole pass


def test_the_vad_backlog_is_bounded():
    from whisperpool.errors import QueueFull

    async def run():
        async with TranscriptionEngine(fake_config(pool_size=1)) as engine:
            session = engine.stream()
            session.max_backlog_s = 2.0
            session.feed(np.zeros(16_000 * 2, np.float32), 16_000)
            with pytest.raises(QueueFull, match="wait for the VAD"):
                session.feed(np.zeros(16_000, np.float32), 16_000)
            session.clear()
            await session.close()

    asyncio.run(asyncio.wait_for(run(), WAIT))
