"""Malformed Realtime and Wyoming events (issue 13, item 5): each is answered with an
``error`` event naming the problem, and the session goes on and still transcribes.

First the probes as filed and the cases found beside them, as a table; then hypothesis
puts arbitrary JSON into every field of ``session.update``. The contract: a reply to every
event (an error or the update), never a closed socket or a dead worker.
"""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import WAIT, fake_config, wait_for
from whisperpool.server import ServerSettings, create_app

REALTIME = "/v1/realtime?intent=transcription"
COMPLETED = "conversation.item.input_audio_transcription.completed"
PCM = base64.b64encode(np.zeros(24_000, "<i2").tobytes()).decode()


def update(session: object, kind: str = "transcription_session.update") -> str:
    return json.dumps({"type": kind, "session": session})


def ga(**audio_input: object) -> str:
    return update({"type": "transcription", "audio": {"input": audio_input}}, "session.update")


# (raw event, expected code, a word the param or message must hold)
BAD = [
    # the five probes as filed
    (update({"turn_detection": {"type": "server_vad", "threshold": "abc"}}), "invalid_type", "threshold"),
    (update({"type": "transcription", "audio": "x"}, "session.update"), "invalid_type", "session.audio"),
    (update({"input_audio_transcription": "x"}), "invalid_type", "input_audio_transcription"),
    (
        '{"type": "transcription_session.update", "session": {"turn_detection": {"silence_duration_ms": 1e309}}}',
        "invalid_value",
        "silence_duration_ms",
    ),
    ("[" * 100_000 + "]" * 100_000, "too_deep", "nested"),
    # found beside them
    (
        '{"type": "transcription_session.update", "session": {"turn_detection": {"threshold": NaN}}}',
        "invalid_json",
        "NaN",
    ),
    ('{"type": "x", "n": ' + "9" * 5000 + "}", "invalid_json", "JSON"),
    (update({"turn_detection": {"threshold": True}}), "invalid_type", "threshold"),
    (update({"turn_detection": {"threshold": 2}}), "invalid_value", "threshold"),
    (update({"turn_detection": {"prefix_padding_ms": "300"}}), "invalid_type", "prefix_padding_ms"),
    (update({"turn_detection": {"silence_duration_ms": -5}}), "invalid_value", "silence_duration_ms"),
    (update({"turn_detection": "server_vad"}), "invalid_type", "turn_detection"),
    (update({"turn_detection": {"type": "semantic_vad"}}), "invalid_value", "turn_detection.type"),
    (update({"input_audio_format": 16000}), "invalid_value", "input_audio_format"),
    (update({"input_audio_format": "pcm16_" + "9" * 40}), "invalid_value", "input_audio_format"),
    (update({"input_audio_transcription": {"language": 5}}), "invalid_type", "language"),
    (update({"input_audio_transcription": {"language": "e n"}}), "invalid_value", "language"),
    (update({"input_audio_transcription": {"prompt": {"a": 1}}}), "invalid_type", "prompt"),
    (update({"input_audio_transcription": {"model": ["whisper-1"]}}), "invalid_type", "model"),
    (update({"include": "logprobs"}), "invalid_type", "include"),
    (update({"input_audio_transcription": {"prompt": "x" * 5000}}), "too_large", "prompt"),
    (update({"input_audio_transcription": {"model": "m" * 300}}), "too_large", "model"),
    (update({"include": ["a"] * 17}), "too_large", "include"),
    (update({"include": [1]}), "invalid_type", "include"),
    (update([]), "invalid_value", "session"),
    (ga(format="pcm"), "invalid_type", "format"),
    (ga(format={"type": "audio/pcm", "rate": 24_000.5}), "invalid_value", "rate"),
    (ga(format={"type": "audio/pcm", "rate": True}), "invalid_value", "rate"),
    (ga(transcription=[]), "invalid_type", "transcription"),
    (ga(turn_detection={"threshold": float("inf")}).replace("Infinity", "1e999"), "invalid_value", "threshold"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": 5}), "invalid_value", "audio"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "x"}), "invalid_base64", "audio"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA"}), "invalid_audio", "audio"),
    # not base64 though its length is: each named as such, before the rate budget is charged
    (json.dumps({"type": "input_audio_buffer.append", "audio": "AA=A"}), "invalid_base64", "audio"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "===="}), "invalid_base64", "audio"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "A==="}), "invalid_base64", "audio"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "AA!!AA!!"}), "invalid_base64", "audio"),
    (json.dumps({"type": 5}), "invalid_event", "type"),
    (json.dumps(["input_audio_buffer.commit"]), "invalid_event", "type"),
    ("{not json", "invalid_json", "JSON"),
    (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty", "buffer"),
]


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServerSettings(pool=fake_config(pool_size=1)))) as c:
        assert wait_for(lambda: c.get("/health/ready").status_code == 200)
        yield c


def transcribes(ws) -> bool:
    """The session still works: turn_detection null, a second of audio, a commit, a transcript."""
    ws.send_text(update({"turn_detection": None}))
    assert ws.receive_json()["type"] == "transcription_session.updated"
    ws.send_text(json.dumps({"type": "input_audio_buffer.append", "audio": PCM}))
    ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
    events = [ws.receive_json()]
    while events[-1]["type"] != COMPLETED and len(events) < 20:
        events.append(ws.receive_json())
    return events[0]["type"] == "input_audio_buffer.committed" and events[-1]["type"] == COMPLETED


def test_every_malformed_event_gets_an_error_and_the_session_goes_on(client):
    with client.websocket_connect(REALTIME) as ws:
        assert ws.receive_json()["type"] == "transcription_session.created"
        for raw, code, word in BAD:
            ws.send_text(raw)
            event = ws.receive_json()
            assert event["type"] == "error", (raw[:80], event)
            error = event["error"]
            assert error["code"] == code, (raw[:80], error)
            assert word in f"{error['param']} {error['message']}", (raw[:80], error)
        # Nothing bad changed the session's settings.
        ws.send_text(update({}))
        session = ws.receive_json()["session"]
        assert session["turn_detection"]["threshold"] == 0.5 and session["input_audio_format"] == "pcm16"
        assert transcribes(ws)
    status = client.get("/v1/pool").json()
    assert status["worker_crashes"] == 0 and status["warm_workers"] == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = [
    ("input_audio_format",),
    ("input_audio_transcription",),
    ("input_audio_transcription", "language"),
    ("input_audio_transcription", "prompt"),
    ("input_audio_transcription", "model"),
    ("turn_detection",),
    ("turn_detection", "threshold"),
    ("turn_detection", "silence_duration_ms"),
    ("turn_detection", "prefix_padding_ms"),
    ("include",),
]


def nest(path: tuple[str, ...], value: object) -> dict:
    for key in reversed(path):
        value = {key: value}
    return value  # type: ignore[return-value]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(FIELDS), value=json_values, ga_form=st.booleans())
def test_any_json_in_any_session_field_is_answered(client, path, value, ga_form):
    if ga_form:  # the same fields where the GA session.update puts them
        ga_path = {
            "input_audio_format": ("audio", "input", "format", "rate"),
            "input_audio_transcription": ("audio", "input", "transcription"),
            "turn_detection": ("audio", "input", "turn_detection"),
        }.get(path[0], (path[0],))
        session = {"type": "transcription", **nest(ga_path + path[1:], value)}
        raw = json.dumps({"type": "session.update", "session": session})
    else:
        raw = json.dumps({"type": "transcription_session.update", "session": nest(path, value)})
    with client.websocket_connect(REALTIME) as ws:
        ws.receive_json()
        ws.send_text(raw)
        event = ws.receive_json()
        assert event["type"] in ("error", "transcription_session.updated", "session.updated"), event
        if event["type"] == "error":
            assert event["error"]["message"] and event["error"]["code"] != "server_error", event
        ws.send_text(json.dumps({"type": "input_audio_buffer.clear"}))  # still answering
        assert ws.receive_json()["type"] == "input_audio_buffer.cleared"


# -- Wyoming: any frame, as bytes on the wire ---------------------------------------------------
@pytest.fixture(scope="module")
def wyoming_port():
    """A Wyoming server on the fake backend, in its own event loop on a thread."""
    import asyncio
    import socket
    import threading

    from whisperpool import TranscriptionEngine
    from whisperpool.server.settings import StreamLimits
    from whisperpool.server.wyoming import start_wyoming

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    async def serve():
        async with TranscriptionEngine(fake_config(pool_size=1)) as engine:
            server = await start_wyoming(engine, "127.0.0.1", port, limits=StreamLimits(idle_timeout_s=5.0))
            started.set()
            try:
                await stop.wait()
            finally:
                await server.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(WAIT)
    yield port
    loop.call_soon_threadsafe(stop.set)
    thread.join(WAIT)


def exchange(port: int, data: bytes, *, timeout: float = 2.0, until: bytes | None = None) -> bytes:
    """Send ``data``, then read what the server says within ``timeout`` (bounded), or until
    ``until`` arrives."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:  # the server closed first (a refused frame): fine
            pass
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(received) < 1 << 20:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, OSError):
                break
            if not chunk:
                break
            received += chunk
            if until is not None and until in received:
                break
        return received


headers = st.fixed_dictionaries(
    {
        "type": st.one_of(
            st.sampled_from(["audio-chunk", "audio-start", "audio-stop", "transcribe"]), st.text(max_size=12)
        )
    },
    optional={
        "data": json_values,
        "data_length": st.one_of(st.integers(-5, 1 << 30), json_values),
        "payload_length": st.one_of(st.integers(-5, 1 << 30), json_values),
    },
)
frames = st.one_of(
    st.binary(max_size=256).map(lambda b: b + b"\n"),
    st.tuples(headers, st.binary(max_size=64)).map(lambda h: json.dumps(h[0]).encode() + b"\n" + h[1]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=frames)
def test_any_wyoming_frame_is_answered_or_ends_the_connection_never_the_server(wyoming_port, frame):
    import io

    from wyoming.event import read_event

    replies = io.BytesIO(exchange(wyoming_port, frame, timeout=0.3))
    for _ in range(20):  # well-framed events, each an error (or info, for a describe)
        event = read_event(replies)
        if event is None:
            break
        assert event.type in ("error", "info", "transcript-start"), event
        if event.type == "error":
            assert event.data["text"] and event.data["code"] != "server_error", event
    # The server still serves: a describe gets its info.
    info = b'"type": "info"'
    assert info in exchange(wyoming_port, b'{"type": "describe"}\n', timeout=WAIT / 3, until=info)
