"""Live transcription on the real model: the engine's session and the Realtime WebSocket."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from conftest import CLIPS, clip
from test_server import KEY, Server
from whisperpool import DecodeOptions, PoolConfig, TranscriptionEngine
from whisperpool.audio import load_audio
from whisperpool.streaming.client import play_local, play_realtime
from whisperpool.wer import normalize

pytestmark = pytest.mark.real_model
RATE = 16_000
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"


def spoken() -> tuple[np.ndarray, list[tuple[float, float, set[str]]]]:
    """Three sentences with pauses; returns the audio and each one's (start, end, key words)."""
    parts = [
        (load_audio(clip("fox")), {"quick", "brown", "fox", "dog"}),  # "lazy" is often misheard
        (load_audio(clip("groceries")), {"remind", "milk", "bananas", "home"}),
        (load_audio(CLIPS / "short" / "s3-pasta.wav"), {"timer", "pasta", "kitchen"}),
    ]
    gap = np.zeros(int(1.2 * RATE), np.float32)
    pieces, spans, t = [gap[: RATE // 2]], [], 0.5
    for audio, words in parts:
        pieces += [audio, gap]
        spans.append((t, t + audio.size / RATE, words))
        t += audio.size / RATE + gap.size / RATE
    return np.concatenate(pieces), spans


def check_items(events: list[tuple[float, dict]], spans) -> None:
    """One completed item per sentence, with its words; deltas (if any) before it."""
    finals = [e for _, e in events if e["type"] == COMPLETED]
    assert len(finals) == len(spans), [f["transcript"] for f in finals]
    for final, (_, _, words) in zip(finals, spans, strict=True):
        assert words <= set(normalize(final["transcript"])), final["transcript"]
        kinds = [e["type"] for _, e in events if e.get("item_id") == final["item_id"]]
        assert kinds.index(COMPLETED) == len(kinds) - 1  # nothing about an item after it completes
        assert kinds[0] == "input_audio_buffer.speech_started"


def test_engine_stream_commits_each_utterance_with_its_words_and_times():
    audio, spans = spoken()

    async def run():
        config = PoolConfig(pool_size=2, threads_per_worker=1, decode=DecodeOptions(language="en"))
        async with TranscriptionEngine(config) as engine:
            session = engine.stream()
            return [record async for record in play_local(session, audio, pace=1.5)]

    events = asyncio.run(asyncio.wait_for(run(), 180))
    check_items(events, spans)
    finals = [e for _, e in events if e["type"] == COMPLETED]
    for final, (start, end, _) in zip(finals, spans, strict=True):
        # The VAD ends an utterance on the pause after it, not later.
        assert abs(final["start_s"] - start) < 0.6 and abs(final["end_s"] - end) < 0.6, (final, start, end)
    # Partial text grows while the long sentence is spoken, before its final.
    groceries = finals[1]["item_id"]
    partials = [e for _, e in events if e["type"] == "partial" and e["item_id"] == groceries]
    assert partials and any(p["stable"] for p in partials)
    for p in partials:
        assert p["text"].startswith(p["stable"])


def test_speculative_finals_are_sent_in_the_pause_and_read_as_a_late_final_would():
    """Each final is decoded once, sent after 0.1 s of silence (before the VAD's 0.4 s stop);
    decoding its samples again, as a final sent after the stop would, gives the same text."""
    audio, spans = spoken()
    sent: list[tuple[float, np.ndarray, DecodeOptions, object]] = []

    async def run():
        config = PoolConfig(pool_size=2, threads_per_worker=1, decode=DecodeOptions(language="en"))
        async with TranscriptionEngine(config) as engine:
            session = engine.stream()
            submit = engine.pool.submit

            def spy(samples, options=None, **kw):
                fut = submit(samples, options, **kw)
                if options.beam_size > 1:  # a final's options (partials are greedy)
                    sent.append((session.time_s, samples, options, fut))
                return fut

            engine.pool.submit = spy
            events = [record async for record in play_local(session, audio)]
            used = {" ".join(normalize(f.result().text)): (t, a, o) for t, a, o, f in sent if not f.cancelled()}
            again = {k: (await engine.transcribe(a, options=o)).text for k, (_, a, o) in used.items()}
            return events, used, again

    events, used, again = asyncio.run(asyncio.wait_for(run(), 180))
    check_items(events, spans)
    stops = {e["item_id"]: e["audio_end_ms"] / 1000 for _, e in events if e["type"].endswith("speech_stopped")}
    for _, final in [(t, e) for t, e in events if e["type"] == COMPLETED]:
        key = " ".join(normalize(final["transcript"]))
        assert key in used, (final["transcript"], list(used))  # the text of one decoding, not stitched
        sent_at = used[key][0]
        # Sent before the VAD can hear the stop: 0.384 s (12 frames) after the last speech
        # frame; the stop time is that frame + 0.3 s.
        assert sent_at < stops[final["item_id"]] + 0.08
        assert normalize(again[key]) == normalize(final["transcript"])  # same samples, same text
    # More decodings than finals may be sent: a pause inside a sentence (a comma) sends a
    # speculative final that speech then makes stale (a partial; see test_streaming_finals).
    assert len(sent) >= len(spans)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("rt"), "--workers", "2", "--threads", "1")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_realtime_websocket_streams_deltas_then_completed_transcripts(server):
    audio, spans = spoken()

    async def run():
        return [r async for r in play_realtime(server.url, audio, pace=1.5, api_key=KEY, language="en")]

    events = asyncio.run(asyncio.wait_for(run(), 180))
    types = [e["type"] for _, e in events]
    assert types[0] == "transcription_session.created" and "session.updated" in types
    check_items(events, spans)
    # Committed words arrive as deltas before the transcript completes, and add up to it.
    for final in (e for _, e in events if e["type"] == COMPLETED):
        deltas = [e["delta"] for _, e in events if e["type"] == DELTA and e["item_id"] == final["item_id"]]
        assert deltas and "".join(deltas).strip() == final["transcript"]
    assert types.count("input_audio_buffer.committed") == len(spans)
    assert types.count("input_audio_buffer.speech_stopped") == len(spans)


def test_realtime_client_commits_when_turn_detection_is_off(server):
    audio = load_audio(clip("groceries"))

    async def run():
        return [r async for r in play_realtime(server.url, audio, pace=3.0, api_key=KEY, vad=False, rate=16_000)]

    events = [e for _, e in asyncio.run(asyncio.wait_for(run(), 120))]
    types = [e["type"] for e in events]
    assert "input_audio_buffer.speech_started" not in types
    finals = [e for e in events if e["type"] == COMPLETED]
    assert len(finals) == 1 and {"remind", "milk", "bananas"} <= set(normalize(finals[0]["transcript"]))


def test_bad_frames_get_errors_and_the_session_goes_on(server):
    import base64

    import websockets

    async def run():
        url = server.url.replace("http", "ws") + "/v1/realtime?intent=transcription"
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            assert json.loads(await ws.recv())["type"] == "transcription_session.created"
            bad = [
                "{not json",
                json.dumps({"type": "input_audio_buffer.append", "audio": "!!!not base64!!!"}),
                json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x01\x02\x03").decode()}),
                json.dumps({"type": "no.such.event"}),
                json.dumps({"type": "input_audio_buffer.commit"}),
            ]
            codes = []
            for frame in bad:
                await ws.send(frame)
                event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert event["type"] == "error" and event["error"]["message"]
                codes.append(event["error"]["code"])
            await ws.send(json.dumps({"type": "transcription_session.update", "session": {"turn_detection": None}}))
            assert json.loads(await ws.recv())["type"] == "transcription_session.updated"
            pcm = (load_audio(clip("fox")) * 32767).astype("<i2")
            # 16 kHz audio declared as 24 kHz would be wrong: say what it is first.
            await ws.send(
                json.dumps({"type": "transcription_session.update", "session": {"input_audio_format": "pcm16_16000"}})
            )
            assert json.loads(await ws.recv())["type"] == "transcription_session.updated"
            for i in range(0, pcm.size, 8000):
                chunk = base64.b64encode(pcm[i : i + 8000].tobytes()).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            for _ in range(50):
                event = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if event["type"] == COMPLETED:
                    return codes, event["transcript"]
            raise AssertionError("no transcript")

    codes, transcript = asyncio.run(asyncio.wait_for(run(), 120))
    assert codes == [
        "invalid_json",
        "invalid_base64",
        "invalid_audio",
        "unknown_event",
        "input_audio_buffer_commit_empty",
    ]
    assert {"quick", "fox", "lazy", "dog"} <= set(normalize(transcript))


def test_the_stream_command_prints_events_as_json_lines():
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "whisperpool.cli", "stream", str(clip("groceries")), "--pace", "4"]
    cmd += ["--json", "--workers", "1", "--language", "en"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "input_audio_buffer.speech_started" and types[-1] == COMPLETED
    assert "partial" in types
    assert {"remind", "milk", "bananas"} <= set(normalize(events[-1]["transcript"]))
    assert all(a["t"] <= b["t"] for a, b in zip(events, events[1:], strict=False))


def test_the_stream_command_speaks_realtime_to_a_server_model(server):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "whisperpool.cli", "stream", str(clip("groceries")), "--pace", "4", "--json"]
    cmd += ["--url", server.url, "--api-key", KEY, "--model", "base", "--language", "en"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    updated = next(e for e in events if e["type"] == "session.updated")
    assert "'model': 'base'" in str(updated["session"])  # the model the server now uses for this session
    assert events[-1]["type"] == COMPLETED
    assert {"remind", "milk", "bananas"} <= set(normalize(events[-1]["transcript"]))


@pytest.mark.parametrize(
    "name,audio",
    [
        ("digital zero", np.zeros(3 * 16_000, np.float32)),
        ("hiss", (np.random.default_rng(4).standard_normal(3 * 16_000) * 0.01).astype(np.float32)),
    ],
)
def test_a_committed_turn_without_speech_is_completed_empty(server, name, audio):
    async def run():
        return [r async for r in play_realtime(server.url, audio, pace=3.0, api_key=KEY, vad=False, rate=16_000)]

    events = [e for _, e in asyncio.run(asyncio.wait_for(run(), 120))]
    finals = [e for e in events if e["type"] == COMPLETED]
    assert [f["transcript"] for f in finals] == [""], (name, events)
    assert not [e for e in events if e["type"] == "conversation.item.input_audio_transcription.delta"]
