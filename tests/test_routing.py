"""Several model configurations at once, each on its own pool, routed by the request's model."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import WAIT, encode, fake_config, samples, serving, wait_for
from whisperpool import TranscriptionEngine
from whisperpool.errors import ConfigError, UnknownModel
from whisperpool.server import ServerSettings, build_settings, create_app


def test_the_engine_routes_by_model_and_reports_each_pool():
    models = {"second": fake_config(pool_size=1)}

    async def run():
        async with TranscriptionEngine(fake_config(pool_size=2), models=models) as engine:
            assert set(engine.pools) == {"base", "second"}
            await engine.transcribe(samples(1600), model="second")
            await engine.transcribe(samples(1600), model="second")
            await engine.transcribe(samples(1600))
            with pytest.raises(UnknownModel, match="'third' is not served"):
                await engine.transcribe(samples(1600), model="third")
            assert wait_for(lambda: engine.status("second").warm_workers == 1)
            return {name: s for name, s in engine.statuses().items()}

    statuses = asyncio.run(asyncio.wait_for(run(), WAIT))
    assert statuses["second"].requests_completed == 2 and statuses["second"].total_workers == 1
    assert statuses["base"].requests_completed == 1 and statuses["base"].total_workers == 2


def test_extra_models_parse_from_the_command_line_form():
    settings = build_settings({"extra_models": ["base-f32=base:float32:1", "tiny=/models/tiny"]})
    assert settings.models["base-f32"].compute_type == "float32" and settings.models["base-f32"].pool_size == 1
    assert settings.models["tiny"].model == "/models/tiny" and settings.models["tiny"].compute_type == "int8"
    for bad in ("noequals", "x=", "x=a:b:c:d", "x=base:int8:two"):
        with pytest.raises(ConfigError):
            build_settings({"extra_models": [bad]})


def test_the_server_routes_lists_and_measures_each_model(tmp_path):
    settings = ServerSettings(pool=fake_config(pool_size=1), models={"second": fake_config(pool_size=1)})
    wav = encode(samples(8000), tmp_path / "a.wav").read_bytes()

    def post(model: str | None):
        data = {"model": model} if model else {}
        return client.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)}, data=data)

    with TestClient(create_app(settings)) as client:
        assert wait_for(lambda: client.get("/v1/pool").json()["models"]["second"]["warm_workers"] == 1)
        ids = {m["id"] for m in client.get("/v1/models").json()["data"]}
        assert ids == {"base", "second", "whisper-1"}
        assert post("second").status_code == 200
        assert post("whisper-1").status_code == 200 and post(None).status_code == 200
        r = post("third")
        assert r.status_code == 404 and r.json()["error"]["param"] == "model"
        pool = client.get("/v1/pool").json()
        metrics = client.get("/metrics").text
    assert pool["models"]["second"]["requests_completed"] == 1
    assert pool["models"]["base"]["requests_completed"] == 2 == pool["requests_completed"]
    assert 'whisperpool_workers{model="second",state="warm"} 1.0' in metrics
    assert 'whisperpool_workers{model="base",state="warm"} 1.0' in metrics


@pytest.fixture
def live_server():
    """A fake-backend server with two models, in a thread, on a loopback port."""
    settings = ServerSettings(pool=fake_config(pool_size=1), models={"second": fake_config(pool_size=1)})
    with serving(create_app(settings)) as url:
        assert wait_for(lambda: httpx.get(f"{url}/v1/pool").json()["models"]["second"]["warm_workers"] == 1)
        yield url


def test_the_cli_routes_files_to_a_server_model(live_server, tmp_path, capsys):
    from whisperpool.cli import main

    a = encode(samples(8000), tmp_path / "a.wav")
    b = encode(samples(16000), tmp_path / "b.wav")
    assert main(["transcribe", "--url", live_server, "--model", "second", "--json", str(a), str(b)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["file"], x["text"], x["model"]) for x in lines] == [
        (str(a), "8000 samples", "second"),
        (str(b), "16000 samples", "second"),
    ]
    assert main(["transcribe", "--url", live_server, str(a)]) == 0  # the server's default model
    assert "8000 samples" in capsys.readouterr().out
    pool = httpx.get(f"{live_server}/v1/pool").json()
    assert pool["models"]["second"]["requests_completed"] == 2 and pool["models"]["base"]["requests_completed"] == 1
    # A model the server lacks fails that file, with the server's reason; the rest still run.
    missing = tmp_path / "missing.wav"
    assert main(["transcribe", "--url", live_server, "--model", "third", str(a)]) == 1
    assert "model 'third' is not served here" in capsys.readouterr().err
    assert main(["transcribe", "--url", live_server, "--json", str(missing), str(a)]) == 1
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["error"]["type"] == "InvalidAudio" and "missing.wav" in first["error"]["message"]
    assert second["text"] == "8000 samples"


def test_the_cli_says_when_no_server_answers(tmp_path, capsys):
    import socket

    from whisperpool.cli import main

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a = encode(samples(8000), tmp_path / "a.wav")
    assert main(["transcribe", "--url", f"127.0.0.1:{port}", str(a)]) == 3
    assert f"no answer from the server at http://127.0.0.1:{port}" in capsys.readouterr().err


# -- one routing behaviour on every face -----------------------------------------------------


def test_the_engine_resolves_every_served_name_and_alias_and_nothing_else():
    engine = TranscriptionEngine(fake_config(pool_size=1), models={"second": fake_config(pool_size=1)}, name="mine")
    assert engine.served_models == ("mine", "second")
    assert engine.model_names == ("base", "mine", "second", "whisper-1")
    for name, served in [
        (None, "mine"),
        ("mine", "mine"),
        ("base", "mine"),
        ("whisper-1", "mine"),
        ("second", "second"),
    ]:
        assert engine.resolve_model(name) == served
    with pytest.raises(UnknownModel) as info:
        engine.resolve_model("third")
    assert info.value.code == "model_not_found"
    assert str(info.value) == "model 'third' is not served here; available: base, mine, second, whisper-1"
    assert engine.options("second", language="en").language == "en"
    with pytest.raises(ConfigError, match="language"):
        engine.options(language="e n")


def test_the_http_face_answers_an_unknown_model_with_openais_404(tmp_path):
    settings = ServerSettings(pool=fake_config(pool_size=1), model_name="mine")
    wav = encode(samples(8000), tmp_path / "a.wav").read_bytes()
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)}, data={"model": "third"})
        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert r.status_code == 404
    assert r.json()["error"] == {
        "message": "model 'third' is not served here; available: base, mine, whisper-1",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert ids == ["base", "mine", "whisper-1"]


def _receive_until(ws, kind: str) -> list[dict]:
    """Events up to and including the first of type ``kind`` (bounded)."""
    events = []
    for _ in range(200):
        events.append(ws.receive_json())
        if events[-1]["type"] == kind:
            return events
    raise AssertionError(f"no {kind} in {[e['type'] for e in events]}")


def test_the_realtime_face_refuses_an_unknown_model_and_serves_an_extra_one():
    import base64

    settings = ServerSettings(pool=fake_config(pool_size=1), models={"second": fake_config(pool_size=1)})
    pcm = base64.b64encode(np.zeros(24_000, "<i2").tobytes()).decode()

    def update(model: str) -> str:
        session = {"input_audio_transcription": {"model": model}, "turn_detection": None}
        return json.dumps({"type": "transcription_session.update", "session": session})

    with TestClient(create_app(settings)) as client:
        assert wait_for(lambda: client.get("/v1/pool").json()["models"]["second"]["warm_workers"] == 1)
        with client.websocket_connect("/v1/realtime?intent=transcription") as ws:
            assert ws.receive_json()["type"] == "transcription_session.created"
            ws.send_text(update("third"))
            error = ws.receive_json()
            # No silent fallback: an error, and the session goes on with its settings.
            assert error["type"] == "error" and error["error"]["code"] == "model_not_found"
            assert error["error"]["param"] == "session.input_audio_transcription.model"
            assert "'third' is not served here" in error["error"]["message"]
            ws.send_text(update("second"))
            updated = ws.receive_json()
            assert updated["type"] == "transcription_session.updated"
            assert updated["session"]["input_audio_transcription"]["model"] == "second"
            ws.send_text(json.dumps({"type": "input_audio_buffer.append", "audio": pcm}))
            ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
            events = _receive_until(ws, "conversation.item.input_audio_transcription.completed")
        assert events[0]["type"] == "input_audio_buffer.committed" and events[0]["previous_item_id"] is None
        assert events[-1]["item_id"] == events[0]["item_id"]  # the fake backend gives no words: text is ""
        pool = client.get("/v1/pool").json()
    assert pool["models"]["second"]["requests_completed"] >= 1
    assert pool["models"]["base"]["requests_completed"] == 0
