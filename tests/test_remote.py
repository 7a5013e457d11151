"""The remote client (``transcribe --url``) sends a file again only when the server could
not answer it: against a real uvicorn that answers as a busy server or a proxy would."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from conftest import WAIT, serving
from whisperpool import InvalidAudio, WhisperPoolError
from whisperpool.remote import RemoteEngine

VERBOSE = {"text": "hello", "segments": [], "language": "en", "duration": 1.0}


def scripted(answers: list) -> tuple[FastAPI, list[int]]:
    """An app that answers its n-th transcription with ``answers[n]`` (the last one after)."""
    app, calls = FastAPI(), []

    @app.post("/v1/audio/transcriptions")
    async def transcribe(request: Request):
        await request.body()
        calls.append(1)
        return answers[min(len(calls), len(answers)) - 1]()

    return app, calls


def busy():
    return JSONResponse(
        {"error": {"message": "full", "code": "queue_full"}}, status_code=503, headers={"Retry-After": "0"}
    )


def proxy_500():
    return PlainTextResponse("Internal Server Error", status_code=500)


def own_500():
    return JSONResponse({"error": {"message": "the worker crashed on it", "code": "worker_crashed"}}, status_code=500)


def bad_audio():
    return JSONResponse({"error": {"message": "not audio", "code": "invalid_audio"}}, status_code=400)


def ok():
    return JSONResponse(VERBOSE)


def run(url: str, path, retries: int = 2):
    async def go():
        async with RemoteEngine(url, retries=retries) as remote:
            return await remote.transcribe(path)

    return asyncio.run(asyncio.wait_for(go(), WAIT))


@pytest.mark.parametrize("first", [busy, proxy_500], ids=["503 Retry-After", "a proxy's 500"])
def test_a_file_is_sent_again_when_the_server_could_not_answer(tmp_path, first):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF....")
    app, calls = scripted([first, first, ok])
    with serving(app) as url:
        assert run(url, audio) == VERBOSE
    assert len(calls) == 3


def test_retries_are_bounded_and_the_last_answer_is_raised(tmp_path):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF....")
    app, calls = scripted([busy])
    with serving(app) as url, pytest.raises(WhisperPoolError, match="503"):
        run(url, audio, retries=1)
    assert len(calls) == 2


@pytest.mark.parametrize(("answer", "error"), [(bad_audio, InvalidAudio), (own_500, WhisperPoolError)])
def test_errors_about_the_request_itself_are_not_retried(tmp_path, answer, error):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF....")
    app, calls = scripted([answer, ok])
    with serving(app) as url, pytest.raises(error):
        run(url, audio)
    assert len(calls) == 1
