"""The HTTP face under attack (issue 13, item 6), on the fake backend.

Each probe first reproduces what an attacker got, then checks the clear error or bounded
cost it gets now. The in-process ones use ``TestClient``; connection limits, slow and
abandoned uploads need a real uvicorn on a free loopback port, with the server's own
protocol and limits (:func:`whisperpool.server.uvicorn_config`). Every wait is bounded
and all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import WAIT, encode, fake_config, wait_for
from whisperpool.config import DecodeOptions
from whisperpool.errors import ConfigError
from whisperpool.server import ServerSettings, create_app, uvicorn_config
from whisperpool.server.uploads import UPLOAD_DIR_PREFIX, make_upload_dir


def wav(tmp_path, seconds: float = 0.5) -> bytes:
    return encode(np.zeros(int(16000 * seconds), np.float32), tmp_path / "clip.wav").read_bytes()


def upload(client, data: bytes, filename: str = "clip.wav", **fields):
    return client.post("/v1/audio/transcriptions", files={"file": (filename, data)}, data=fields)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServerSettings(pool=fake_config(pool_size=1)))) as c:
        assert wait_for(lambda: c.get("/health/ready").status_code == 200)
        yield c


@pytest.mark.parametrize("language", ["xx", "english", "e1", "zz"])
def test_an_unknown_language_is_400_naming_the_field(client, tmp_path, language):
    r = upload(client, wav(tmp_path), language=language)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "language" and error["code"] == "invalid_parameter"
    assert "language" in error["message"] and repr(language) in error["message"]


@pytest.mark.parametrize("language", ["en", " DE ", "yue", ""])
def test_whisper_language_codes_are_accepted_and_empty_means_detect(client, tmp_path, language):
    assert upload(client, wav(tmp_path), language=language).status_code == 200


def test_decode_options_know_whispers_languages():
    assert DecodeOptions(language=None).language is None  # detect
    assert DecodeOptions(language="haw").language == "haw"
    for bad in ("xx", "EN", "english", ""):
        with pytest.raises(ConfigError, match="DecodeOptions.language"):
            DecodeOptions(language=bad)


@pytest.mark.parametrize("temperature", ["nan", "NaN", "inf", "-inf", "-0.5", "1.5", "1e9"])
def test_a_temperature_that_is_not_0_to_1_is_400(client, tmp_path, temperature):
    r = upload(client, wav(tmp_path), temperature=temperature)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "temperature" and "from 0 to 1" in error["message"]


@pytest.mark.parametrize("temperature", ["0", "0.0", "0.3", "1"])
def test_a_temperature_from_0_to_1_is_served(client, tmp_path, temperature):
    assert upload(client, wav(tmp_path), temperature=temperature).status_code == 200


def test_400_messages_name_the_clients_file_never_the_servers_path(client):
    folder = str(client.app.state.upload_dir)
    for data in (b"not audio at all, just text", b"RIFF\x00\x00\x00\x00WAVEfmt "):
        r = upload(client, data, filename="my recording.wav")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_audio"
        message = r.json()["error"]["message"]
        assert message.startswith("my recording.wav: ") and folder not in message
        assert UPLOAD_DIR_PREFIX not in message and ".upload" not in message


def test_metrics_are_open_by_default_and_behind_the_key_when_asked():
    key = {"Authorization": "Bearer k1"}
    for metrics_auth, anonymous in ((False, 200), (True, 401)):
        settings = ServerSettings(pool=fake_config(pool_size=1), api_key="k1", metrics_auth=metrics_auth)
        with TestClient(create_app(settings)) as c:
            r = c.get("/metrics")
            assert r.status_code == anonymous
            if anonymous == 401:
                assert r.json()["error"]["code"] == "invalid_api_key"
            assert c.get("/metrics", headers=key).status_code == 200
            assert c.get("/v1/pool").status_code == 401  # the rest of /v1 is always behind the key


def test_a_grace_under_a_second_is_honoured_and_limits_reach_uvicorn():
    settings = ServerSettings(pool=fake_config(), grace_s=0.5, max_connections=7, max_uploads=3)
    config = uvicorn_config(settings, app=None)
    assert config.timeout_graceful_shutdown == 0.5 and config.limit_concurrency == 7
    assert uvicorn_config(ServerSettings(pool=fake_config(), grace_s=0), app=None).timeout_graceful_shutdown == 0


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"read_timeout_s": 0}, "read_timeout_s"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_uploads": 0}, "max_uploads"),
        ({"max_uploads": 8, "max_connections": 8}, "max_uploads"),
    ],
)
def test_bad_limits_name_the_setting(changes, field):
    with pytest.raises(ConfigError, match=f"ServerSettings.{field}"):
        ServerSettings(**changes)


def test_a_new_server_removes_the_upload_folders_of_dead_servers(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f"{UPLOAD_DIR_PREFIX}{dead_pid}-abc123"
    stale.mkdir(mode=0o700)
    (stale / "x.upload").write_bytes(b"\0" * 1000)
    alive = tmp_path / f"{UPLOAD_DIR_PREFIX}{os.getppid()}-def456"  # a live process's folder stays
    alive.mkdir()
    other = tmp_path / f"{UPLOAD_DIR_PREFIX}notapid"  # not ours to judge: stays
    other.mkdir()
    folder = make_upload_dir(tmp_path)
    assert not stale.exists() and alive.exists() and other.exists()
    assert folder.name.startswith(f"{UPLOAD_DIR_PREFIX}{os.getpid()}-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


# --- a real uvicorn on loopback, with the server's connection limits --------------------

READ_TIMEOUT_S = 1.5


class LoopbackServer:
    """The app under :func:`uvicorn_config` in a thread, on a free 127.0.0.1 port."""

    def __init__(self, settings: ServerSettings) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.app = create_app(settings)
        self.server = uvicorn.Server(uvicorn_config(settings, self.app, port=self.port))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        assert wait_for(lambda: self.server.started)
        assert wait_for(lambda: httpx.get(f"{self.url}/health/ready").status_code == 200)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)

    def raw(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        return sock

    def files(self) -> list[str]:
        return os.listdir(self.app.state.upload_dir)

    def status_count(self, status: int) -> float:
        text = httpx.get(f"{self.url}/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("whisperpool_http_requests_total") and f'status="{status}"' in line
        )


@pytest.fixture(scope="module")
def loopback():
    settings = ServerSettings(
        pool=fake_config(pool_size=1), read_timeout_s=READ_TIMEOUT_S, max_connections=6, max_uploads=2, port=0
    )
    with LoopbackServer(settings) as srv:
        yield srv


def partial_upload(srv: LoopbackServer, declared: int = 1_000_000, sent: int = 20_000) -> socket.socket:
    """A multipart upload that declares ``declared`` bytes and sends only ``sent``."""
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.wav"\r\nContent-Type: audio/wav\r\n\r\n'
    sock = srv.raw()
    sock.sendall(
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: " + str(declared).encode() + b"\r\n\r\n" + head + b"\0" * sent
    )
    return sock


def read_answer(sock: socket.socket, limit_s: float = WAIT) -> bytes:
    sock.settimeout(limit_s)
    data = b""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def test_a_client_gone_mid_upload_is_499_without_a_traceback_and_its_file_is_removed(loopback, tmp_path, caplog):
    before = loopback.status_count(499)
    with caplog.at_level(logging.INFO):
        sock = partial_upload(loopback)
        assert wait_for(lambda: len(loopback.files()) == 1, timeout=5)
        sock.close()
        assert wait_for(lambda: loopback.status_count(499) == before + 1, timeout=5)
    assert wait_for(lambda: loopback.files() == [], timeout=5)
    assert loopback.status_count(500) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
    assert any("disconnected during its upload" in r.getMessage() for r in caplog.records)
    assert httpx.post(f"{loopback.url}/v1/audio/transcriptions", files={"file": ("a.wav", wav(tmp_path))}).is_success


def test_an_upload_that_stalls_is_cut_with_408_and_its_file_removed(loopback, tmp_path):
    started = time.monotonic()
    sock = partial_upload(loopback)
    answer = read_answer(sock)
    sock.close()
    took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"code":"upload_timeout"' in answer and b"read_timeout_s" in answer
    assert READ_TIMEOUT_S - 0.2 < took < READ_TIMEOUT_S + 3
    assert wait_for(lambda: loopback.files() == [], timeout=5)
    assert httpx.post(f"{loopback.url}/v1/audio/transcriptions", files={"file": ("a.wav", wav(tmp_path))}).is_success


def test_headers_sent_a_byte_at_a_time_are_cut_with_408(loopback):
    sock = loopback.raw()
    started = time.monotonic()
    sent = 0
    for byte in b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n":  # slow-loris: never finishes
        if time.monotonic() - started > READ_TIMEOUT_S + 3:
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        sent += 1
        time.sleep(0.1)
    answer = read_answer(sock, limit_s=READ_TIMEOUT_S + 3)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started < READ_TIMEOUT_S + 4


def test_connections_over_the_limit_get_503_and_idle_ones_are_closed_in_time(loopback):
    idle = [loopback.raw() for _ in range(6)]  # the limit, each sending nothing
    try:
        time.sleep(0.2)
        r = httpx.get(f"{loopback.url}/health/live")
        assert r.status_code == 503
        # The header deadline closes the idle connections, and the server serves again.
        assert wait_for(lambda: httpx.get(f"{loopback.url}/health/live").status_code == 200, timeout=READ_TIMEOUT_S + 5)
        assert all(read_answer(s, limit_s=2).startswith(b"HTTP/1.1 408 ") for s in idle)
    finally:
        for s in idle:
            s.close()


def test_uploads_over_max_uploads_get_503_so_disk_stays_bounded(loopback, tmp_path):
    slow = [partial_upload(loopback) for _ in range(2)]  # max_uploads=2
    try:
        assert wait_for(lambda: len(loopback.files()) == 2, timeout=5)
        r = httpx.post(f"{loopback.url}/v1/audio/transcriptions", files={"file": ("a.wav", wav(tmp_path))})
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_full"
        assert "max_uploads=2" in r.json()["error"]["message"] and r.headers["retry-after"]
        assert len(loopback.files()) == 2
    finally:
        for s in slow:
            s.close()
    assert wait_for(lambda: loopback.files() == [], timeout=5)
    r = httpx.post(f"{loopback.url}/v1/audio/transcriptions", files={"file": ("a.wav", wav(tmp_path))})
    assert r.status_code == 200


def test_the_folder_of_a_sigkilled_server_is_removed_by_the_next_one(tmp_path):
    """End to end: ``whisperpool serve`` (fake backend) SIGKILLed, then started again."""
    import signal

    env = {**os.environ, "TMPDIR": str(tmp_path), "WHISPERPOOL_BACKEND": "fake"}

    def start() -> tuple[subprocess.Popen, str]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "whisperpool.cli", "serve", "--port", str(port), "--workers", "1"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/health/live", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        assert wait_for(ready, timeout=60), "the server did not start"
        return proc, url

    first, _ = start()
    try:
        folders = list(tmp_path.glob(f"{UPLOAD_DIR_PREFIX}{first.pid}-*"))
        assert len(folders) == 1
        (folders[0] / "left.upload").write_bytes(b"\0" * 1000)  # as an upload cut short by the kill
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(WAIT)
    assert folders[0].exists()  # a SIGKILLed server cannot clean up
    second, _ = start()
    try:
        assert not folders[0].exists()
        assert len(list(tmp_path.glob(f"{UPLOAD_DIR_PREFIX}{second.pid}-*"))) == 1
    finally:
        second.terminate()
        second.wait(WAIT)
    assert wait_for(lambda: not list(tmp_path.glob(f"{UPLOAD_DIR_PREFIX}*")), timeout=10)  # a clean stop removes it
