"""A real uvicorn server in a subprocess on a loopback port, driven by httpx and `openai`.

Every loop here is bounded in count and time, and traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import MAX_WER, clip, encode, pid_alive
from whisperpool.audio import load_audio
from whisperpool.wer import normalize, word_error_rate

pytestmark = pytest.mark.real_model
KEY = "test-key-123"
HEADERS = {"Authorization": f"Bearer {KEY}"}
START_WAIT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path, *extra: str, new_session: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        env = {**os.environ, "TMPDIR": str(tmp), "WHISPERPOOL_LANGUAGE": "en"}
        cmd = [sys.executable, "-m", "whisperpool.cli", "serve", "--port", str(self.port), "--api-key", KEY, *extra]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=new_session
        )
        self.ready_codes: list[tuple[int, dict]] = []

    def wait_ready(self) -> None:
        """Poll readiness (bounded) and keep what it said along the way."""
        deadline = time.monotonic() + START_WAIT
        with httpx.Client(base_url=self.url, timeout=5) as client:
            for _ in range(2000):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    break
                try:
                    r = client.get("/health/ready")
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                self.ready_codes.append((r.status_code, r.json()))
                if r.status_code == 200:
                    return
                time.sleep(0.05)
        raise AssertionError(f"server not ready: {self.stop()}")

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in httpx.get(f"{self.url}/v1/pool", headers=HEADERS).json()["workers"]]

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
        return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server-tmp")
    srv = Server(tmp, "--workers", "2", "--threads", "1", "--max-upload-mb", "2")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def openai_client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server.url}/v1", api_key=KEY, timeout=120, max_retries=0)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """About 70 s of speech: a long recording, decoded in pieces of up to 30 s on the workers."""
    parts = [load_audio(clip(n)) for n in ("weather", "library", "groceries", "fox") * 2]
    gap = np.zeros(8000, np.float32)
    audio = np.concatenate([x for p in parts for x in (p, gap)])
    return encode(audio, tmp_path_factory.mktemp("long") / "long.flac")  # under the fixture's 2 MB upload limit


def post(client, path: Path | None = None, **fields):
    path = path or clip("fox")
    return client.post(
        "/v1/audio/transcriptions",
        files={"file": (Path(path).name, Path(path).read_bytes(), "audio/wav")},
        data=fields,
    )


def cue_text(body: str) -> str:
    """The spoken text of a text, SRT or WebVTT body: no cue numbers, times or header."""
    skip = re.compile(r"^(\d+|WEBVTT|[\d:,.]+ --> [\d:,.]+)$")
    return " ".join(line for line in body.splitlines() if line.strip() and not skip.match(line.strip()))


def good(text: str, name: str, clip_texts) -> bool:
    return word_error_rate(clip_texts[name], text) <= MAX_WER


def test_readiness_went_from_503_to_200_during_warm_up(server):
    codes = [c for c, _ in server.ready_codes]
    assert codes[-1] == 200 and 503 in codes
    warming = [body for c, body in server.ready_codes if c == 503]
    assert warming[0]["status"] == "warming" and 0 <= warming[0]["warm_up_progress"] < 100
    assert httpx.get(f"{server.url}/health/live").json() == {"status": "ok"}


def test_every_response_format_with_the_openai_client(openai_client, clip_texts):
    with clip("fox").open("rb") as f:
        result = openai_client.audio.transcriptions.create(model="whisper-1", file=f)
    assert good(result.text, "fox", clip_texts)
    with clip("weather").open("rb") as f:
        verbose = openai_client.audio.transcriptions.create(
            model="base", file=f, response_format="verbose_json", timestamp_granularities=["word", "segment"]
        )
    assert good(verbose.text, "weather", clip_texts) and verbose.language == "en"
    assert abs(verbose.duration - 11.44) < 0.1 and len(verbose.segments) >= 1
    assert verbose.segments[0].start == 0.0 and verbose.segments[-1].end <= verbose.duration + 0.5
    assert [normalize(w.word)[0] for w in verbose.words[:2]] == ["good", "morning"]
    for fmt in ("text", "srt", "vtt"):
        with clip("fox").open("rb") as f:
            body = openai_client.audio.transcriptions.create(model="whisper-1", file=f, response_format=fmt)
        assert isinstance(body, str) and good(cue_text(body), "fox", clip_texts), body
        if fmt == "srt":
            assert body.startswith("1\n00:00:00,000 --> 00:00:0")
        if fmt == "vtt":
            assert body.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:0")


def test_json_shape_and_usage_with_httpx(client, clip_texts):
    r = post(client, clip("groceries"), model="whisper-1", response_format="json", language="en")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"text", "usage"} and good(body["text"], "groceries", clip_texts)
    assert body["usage"]["type"] == "duration" and abs(body["usage"]["seconds"] - 74352 / 16000) < 0.01


def test_translation_endpoint_serves_english_too(client, clip_texts):
    r = client.post("/v1/audio/translations", files={"file": ("fox.wav", clip("fox").read_bytes())})
    assert r.status_code == 200 and good(r.json()["text"], "fox", clip_texts)


def test_the_cli_transcribes_files_on_the_server(server, clip_texts, capsys):
    from whisperpool.cli import main

    files = [str(clip("fox")), str(clip("groceries"))]
    assert main(["transcribe", "--url", server.url, "--api-key", KEY, "--model", "whisper-1", "--json", *files]) == 0
    fox, groceries = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert fox["file"] == files[0] and good(fox["text"], "fox", clip_texts)
    assert good(groceries["text"], "groceries", clip_texts) and abs(groceries["duration"] - 74352 / 16000) < 0.01
    assert main(["transcribe", "--url", server.url, files[0]]) == 1  # no key
    assert "HTTP 401" in capsys.readouterr().err


def test_sse_deltas_arrive_before_the_final_event(server, long_clip, openai_client):
    arrivals: list[tuple[float, dict]] = []
    started = time.monotonic()
    with (
        httpx.Client(timeout=120) as c,
        c.stream(
            "POST",
            f"{server.url}/v1/audio/transcriptions",
            headers=HEADERS,
            files={"file": ("long.wav", long_clip.read_bytes(), "audio/wav")},
            data={"model": "whisper-1", "stream": "true"},
        ) as r,
    ):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.monotonic() - started, json.loads(line[6:])))
    kinds = [e["type"] for _, e in arrivals]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.delta") >= 3
    assert set(kinds[:-1]) == {"transcript.text.delta"}
    first_delta, done = arrivals[0][0], arrivals[-1][0]
    assert done - first_delta > 0.3, arrivals  # the first pieces' words came while the rest was decoding
    joined = "".join(e["delta"] for _, e in arrivals[:-1]).strip()
    assert joined == arrivals[-1][1]["text"] and "mountains" in joined
    # The openai client reads the same stream.
    with long_clip.open("rb") as f:
        events = list(openai_client.audio.transcriptions.create(model="whisper-1", file=f, stream=True))
    assert events[-1].type == "transcript.text.done" and events[0].type == "transcript.text.delta"


def test_api_key_is_enforced(server):
    files = {"file": ("fox.wav", clip("fox").read_bytes())}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.post(f"{server.url}/v1/audio/transcriptions", headers=headers, files=files, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    models = httpx.get(f"{server.url}/v1/models", headers=HEADERS).json()
    assert {m["id"] for m in models["data"]} == {"base", "whisper-1"}


def test_oversized_uploads_get_413_declared_or_streamed(server, client):
    big = os.urandom(3 * 1024 * 1024)
    r = client.post("/v1/audio/transcriptions", files={"file": ("big.wav", big)})
    assert r.status_code == 413 and r.json()["error"]["param"] == "file"

    boundary = "wpboundary"

    def chunked():  # no Content-Length: the limit must hold while streaming
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'.encode()
        for i in range(0, len(big), 256 * 1024):
            yield big[i : i + 256 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(
        "/v1/audio/transcriptions",
        content=chunked(),
        headers={**HEADERS, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413


def test_bad_files_and_parameters_get_400_and_the_server_still_transcribes(server, client, clip_texts, tmp_path):
    pids = sorted(server.worker_pids())
    cases = {
        "notes.txt": b"hello, this is not audio\n" * 40,
        "empty.wav": b"",
        "cut.wav": clip("fox").read_bytes()[:30],
    }
    for name, data in cases.items():
        r = client.post("/v1/audio/transcriptions", files={"file": (name, data)})
        assert r.status_code == 400, (name, r.text)
        error = r.json()["error"]
        assert error["param"] == "file" and name in error["message"] and error["type"] == "invalid_request_error"
    for fields, param in [
        ({"response_format": "xml"}, "response_format"),
        ({"temperature": "hot"}, "temperature"),
        ({"language": "e n"}, "language"),
        ({"stream": "maybe"}, "stream"),
    ]:
        r = post(client, **fields)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    r = post(client, model="gpt-4o-transcribe")
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    r = client.post("/v1/audio/transcriptions", data={"model": "whisper-1"})
    assert r.status_code == 400
    r = post(client, clip("groceries"))
    assert r.status_code == 200 and good(r.json()["text"], "groceries", clip_texts)
    assert sorted(server.worker_pids()) == pids  # no worker was lost
    # (onnxruntime, under the workers' Silero VAD, keeps a small ".ses" file in TMPDIR: not an upload)
    leftovers = [p for p in server.tmp.rglob("*") if p.is_file() and p.name != ".ses"]
    assert leftovers == []  # every upload was removed


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_move(server, client):
    before = httpx.get(f"{server.url}/metrics").text
    assert post(client).status_code == 200
    after = httpx.get(f"{server.url}/metrics").text
    path = "/v1/audio/transcriptions"
    counted = "whisperpool_http_requests_total"
    assert (
        metric(after, counted, endpoint=path, status="200") == metric(before, counted, endpoint=path, status="200") + 1
    )
    assert metric(after, "whisperpool_audio_seconds_total") - metric(before, "whisperpool_audio_seconds_total") == (
        pytest.approx(3.44, abs=0.05)
    )
    assert (
        metric(after, "whisperpool_queue_wait_seconds_count")
        == metric(before, "whisperpool_queue_wait_seconds_count") + 1
    )
    assert metric(after, "whisperpool_workers", state="warm") == 3  # two and the default express worker
    assert metric(after, "whisperpool_express_workers") == 1
    assert metric(after, "whisperpool_worker_warm_up_seconds", worker="0") > 0
    assert (
        "whisperpool_http_request_duration_seconds_bucket" in after
        and 'whisperpool_queue_depth{model="base"} 0.0' in after
    )


@pytest.mark.parametrize("target", ["server", "process group"])
def test_sigterm_during_a_request_lets_it_finish_and_leaves_no_process(tmp_path, long_clip, clip_texts, target):
    # systemd, `timeout` and a terminal's Ctrl-C signal the whole process group: the
    # workers must leave shutdown to the server, which drains its in-flight request.
    srv = Server(tmp_path, "--workers", "1", "--grace", "60", new_session=target == "process group")
    try:
        srv.wait_ready()
        pids = srv.worker_pids()
        outcome: dict = {}

        def request():
            with httpx.Client(timeout=120) as c:
                r = c.post(
                    f"{srv.url}/v1/audio/transcriptions",
                    headers=HEADERS,
                    files={"file": ("long.wav", long_clip.read_bytes())},
                )
                outcome["response"] = r

        thread = threading.Thread(target=request)
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the request is on the worker
            busy = httpx.get(f"{srv.url}/v1/pool", headers=HEADERS).json()["busy_workers"]
            if busy:
                break
            time.sleep(0.05)
        if target == "server":
            srv.proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(srv.proc.pid, signal.SIGTERM)
        thread.join(timeout=120)
        # uvicorn re-raises the signal once shut down, so the exit status says "terminated".
        assert srv.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        out = srv.stop()
    response = outcome["response"]
    assert response.status_code == 200, out
    assert "mountains" in response.json()["text"]
    assert "exited unexpectedly" not in out and "retrying" not in out, out
    deadline = time.monotonic() + 5
    while any(map(pid_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(pid_alive, pids))


def test_nothing_from_nothing_over_http(server, client, tmp_path):
    from test_no_speech import wav_bytes
    from whisperpool.audio import TOO_SHORT

    silence = wav_bytes(np.zeros(5 * 16_000, np.float32))
    r = client.post("/v1/audio/transcriptions", files={"file": ("silence.wav", silence)}, data={"model": "whisper-1"})
    assert r.status_code == 200 and r.json()["text"] == ""
    r = client.post(
        "/v1/audio/transcriptions",
        files={"file": ("silence.wav", silence)},
        data={"model": "whisper-1", "response_format": "verbose_json"},
    )
    assert (r.json()["text"], r.json()["segments"], r.json()["language"]) == ("", [], "en")
    tiny = wav_bytes(np.zeros(8, np.float32), declared_s=10.0)  # a header promising 10 s, 8 samples in it
    r = client.post("/v1/audio/transcriptions", files={"file": ("tiny.wav", tiny)}, data={"model": "whisper-1"})
    error = r.json()["error"]
    assert r.status_code == 400 and error["code"] == "audio_too_short" and error["param"] == "file"
    assert TOO_SHORT in error["message"] and "tiny.wav" in error["message"]
    cut = wav_bytes(load_audio(clip("fox")), declared_s=10.0)
    r = client.post(
        "/v1/audio/transcriptions",
        files={"file": ("cut.wav", cut)},
        data={"model": "whisper-1", "response_format": "verbose_json"},
    )
    assert r.status_code == 200 and "fox" in r.json()["text"].lower()
    assert "truncated" in r.headers["x-whisperpool-warning"] and "truncated" in r.json()["warnings"][0]


def test_the_cli_reports_a_file_under_a_tenth_of_a_second(tmp_path, capsys):
    from test_no_speech import wav_bytes
    from whisperpool.cli import main

    tiny = tmp_path / "tiny.wav"
    tiny.write_bytes(wav_bytes(np.zeros(8, np.float32), declared_s=10.0))
    good = tmp_path / "fox.wav"
    good.write_bytes(clip("fox").read_bytes())
    code = main(["transcribe", "--workers", "1", "--language", "en", "--no-progress", str(tiny), str(good)])
    out, err = capsys.readouterr()
    assert code == 1 and "Minimum audio length is 0.1 seconds" in err and "tiny.wav" in err
    assert "fox" in out.lower()
