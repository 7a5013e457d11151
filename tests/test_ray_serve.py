"""The HTTP API on Ray Serve, on a real local Ray cluster started here (marker ``ray``).

One cluster for the module (a start costs ~5 s, each app ~7 s more): the real-model app
(2 replicas x 1 worker) serves the OpenAI client and survives a replica's death; small
fake-backend apps show warm-up gating and Ray's backpressure. Every wait is bounded.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import threading
import time

import httpx
import pytest

from conftest import MAX_WER, clip, wait_for
from whisperpool.server.settings import build_settings
from whisperpool.testing import FakeBehavior
from whisperpool.wer import word_error_rate

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'whisperpool[ray]'")
from ray import serve  # noqa: E402

from whisperpool.cluster.serve import DEPLOYMENT, RayServeSettings, build_app  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_command_serves_on_a_local_cluster_and_stops_it():
    """``whisperpool ray serve`` starts its own cluster (fake backend) and SIGTERM takes it all down.

    First in the module: it runs before the module's cluster starts, not beside it."""
    import subprocess
    import sys

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"WHISPERPOOL_BACKEND": "fake"}
    cmd = [sys.executable, "-m", "whisperpool.cli", "ray", "serve", "--replicas", "1", "--workers-per-replica", "1"]
    cmd += ["--replica-cpus", "0.5", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # ends with the process
    reader.start()
    try:
        # the command says so once serve.run returned; from then on SIGTERM is a clean stop
        assert wait_for(lambda: any("serving on" in line for line in lines), 180), "".join(lines)[-2000:]
        assert ready()
        assert "base" in [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
        reader.join(10)
        stderr = "".join(lines)
        assert f"serving on http://127.0.0.1:{port}/v1" in stderr and "stopped" in stderr, stderr[-2000:]
        assert not ready()  # the local cluster went with it
    finally:
        if proc.poll() is None:  # SIGTERM first: the command takes its local cluster down with it
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster with Serve's proxy on a free loopback port; yields its URL."""
    # 4 logical CPUs on CI's 2 cores: the real app's 2 replicas reserve 1 each, the fake
    # apps 0.25, and a replacement replica may start while the dead one is still counted
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def _deploy(settings: RayServeSettings) -> None:
    serve.run(build_app(settings), name=settings.app_name, route_prefix=settings.route_prefix)


def _fake(app: str, behavior: FakeBehavior, server_values: dict | None = None, **cluster) -> RayServeSettings:
    values = {"pool.pool_size": 1, "pool.backend": "fake", "pool.fake": behavior, **(server_values or {})}
    server = build_settings(values)
    return RayServeSettings(server=server, app_name=app, route_prefix=f"/{app}", replica_cpus=0.25, **cluster)


@pytest.fixture(scope="module")
def asr(cluster):
    """The real-model app, 2 replicas x 1 worker, at the root of the proxy."""
    settings = RayServeSettings(
        server=build_settings({"pool.pool_size": 1, "decode.language": "en"}), replicas=2, app_name="asr"
    )
    _deploy(settings)
    yield cluster
    serve.delete("asr")


def _replicas(app: str) -> set[int]:
    """The pids of the app's live replica processes: Ray titles each ``ray::ServeReplica:APP:DEPLOYMENT``."""
    title = f"ServeReplica:{app}:{DEPLOYMENT}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if title in f.read() and _alive(int(entry)):
                        found.add(int(entry))
            except OSError:
                continue
    return found


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc: no psutil needed)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


@pytest.mark.real_model
def test_the_openai_client_transcribes_through_ray_serve(asr, clip_texts):
    from openai import OpenAI

    client = OpenAI(base_url=f"{asr}/v1", api_key="unused", timeout=60, max_retries=0)
    with open(clip("fox"), "rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert word_error_rate(clip_texts["fox"], result.text) <= MAX_WER
    # the server's SSE passes through Ray's proxy: deltas, then the whole text
    with open(clip("weather"), "rb") as f:
        events = list(client.audio.transcriptions.create(model="whisper-1", file=f, stream=True))
    assert [e.type for e in events][-1] == "transcript.text.done"
    assert any(e.type == "transcript.text.delta" for e in events)
    assert word_error_rate(clip_texts["weather"], events[-1].text) <= MAX_WER
    # the server's errors, in OpenAI's shape, from the replica
    response = httpx.post(f"{asr}/v1/audio/transcriptions", files={"file": ("x.wav", b"not audio")}, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_audio"


@pytest.mark.real_model
def test_a_realtime_session_streams_through_ray_serves_proxy(asr, clip_texts):
    """The Realtime WebSocket passes through Ray's proxy to a replica: a clip streamed
    (3x real time, committed at its end) comes back as its final transcript."""
    import asyncio

    from whisperpool.audio import load_audio
    from whisperpool.streaming.client import play_realtime
    from whisperpool.streaming.realtime import COMPLETED

    audio = load_audio(clip("fox"))

    async def session() -> list[dict]:
        return [e async for _, e in play_realtime(asr, audio, pace=3.0, language="en", vad=False, rate=16_000)]

    events = asyncio.run(asyncio.wait_for(session(), 120))
    types = [e["type"] for e in events]
    assert types and types[0].endswith("session.created"), types[:5]
    assert "error" not in types, [e for e in events if e["type"] == "error"]
    finals = [e for e in events if e["type"] == COMPLETED]
    assert len(finals) == 1, types
    assert word_error_rate(clip_texts["fox"], finals[0]["transcript"]) <= MAX_WER


def test_an_open_realtime_session_holds_one_of_its_replicas_slots(cluster):
    """What the docs tell an app that streams: Ray counts a WebSocket as an ongoing request
    of its replica for as long as it is open (here the only slot: an upload waits)."""
    import asyncio

    import websockets

    _deploy(_fake("ws", FakeBehavior(), max_ongoing_requests=1, max_queued_requests=4))
    url = f"{cluster}/ws"
    wav = clip("fox").read_bytes()

    def post(timeout: float) -> int | None:
        try:
            return httpx.post(
                f"{url}/v1/audio/transcriptions", files={"file": ("a.wav", wav)}, timeout=timeout
            ).status_code
        except httpx.TimeoutException:
            return None

    async def scenario() -> list[int | None]:
        codes = [await asyncio.to_thread(post, 30)]
        ws_url = url.replace("http", "ws") + "/v1/realtime?intent=transcription"
        async with websockets.connect(ws_url) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "transcription_session.created"
            codes.append(await asyncio.to_thread(post, 3))  # held at the proxy while the session is open
        codes.append(await asyncio.to_thread(post, 30))
        return codes

    try:
        assert asyncio.run(asyncio.wait_for(scenario(), 90)) == [200, None, 200]
    finally:
        serve.delete("ws")


def test_a_replica_takes_traffic_only_once_warm(cluster):
    """While the only replica warms (4 s), /health/ready never reaches it: no 'warming' answer."""
    settings = _fake("warming", FakeBehavior(load_delay_s=4.0))
    deploy = threading.Thread(target=_deploy, args=(settings,), daemon=True)
    started = time.monotonic()
    deploy.start()
    answers: list[tuple[float, int | None, str]] = []
    try:
        with httpx.Client(timeout=1.0) as http:
            for _ in range(300):  # bounded: 300 polls of at most 1 s
                try:
                    r = http.get(f"{cluster}/warming/health/ready")
                    answers.append((time.monotonic() - started, r.status_code, r.text))
                except httpx.TimeoutException:  # Ray holds the request while no replica runs
                    answers.append((time.monotonic() - started, None, ""))
                if answers[-1][1] == 200 or time.monotonic() - started > 60:
                    break
                time.sleep(0.1)
        deploy.join(60)
        assert answers[-1][1] == 200, answers[-5:]
        first_ready = answers[-1][0]
        assert first_ready >= 4.0, "ready before the worker could have warmed up"
        assert len(answers) > 1, "no answer while warming: the test saw nothing"
        assert not any('"warming"' in text for _, _, text in answers), "a cold replica was routed a request"
        assert '"warm_workers":1' in answers[-1][2]
    finally:
        deploy.join(60)
        serve.delete("warming")


def test_a_full_proxy_queue_answers_503_with_retry_after(cluster):
    """Ray's backpressure, and the server's API key and upload limit, through the proxy."""
    settings = _fake(
        "busy",
        FakeBehavior(inference_delay_s=1.5),
        max_ongoing_requests=1,
        max_queued_requests=1,
        server_values={"api_key": "s3cret", "max_upload_mb": 1.0},
    )
    _deploy(settings)
    try:
        audio = clip("fox").read_bytes()
        url = f"{cluster}/busy/v1/audio/transcriptions"
        key = {"Authorization": "Bearer s3cret"}
        r = httpx.post(url, files={"file": ("a.wav", audio)}, timeout=60)
        assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
        r = httpx.post(url, files={"file": ("a.wav", b"\0" * 1_200_000)}, headers=key, timeout=60)
        assert r.status_code == 413 and r.json()["error"]["param"] == "file"

        def post(_):
            r = httpx.post(url, files={"file": ("a.wav", audio)}, headers=key, timeout=60)
            return r.status_code, r.headers.get("retry-after")

        with concurrent.futures.ThreadPoolExecutor(6) as executor:
            answers = list(executor.map(post, range(6)))
        assert (200, None) in answers
        rejected = [a for a in answers if a[0] == 503]
        assert rejected and all(retry == "2" for _, retry in rejected), answers
        assert {code for code, _ in answers} <= {200, 503}, answers
    finally:
        serve.delete("busy")


@pytest.mark.real_model
def test_killing_a_replica_under_load_loses_no_retried_request(asr, clip_texts):
    """SIGKILL one replica's process mid-load: its in-flight requests fail with 5xx, the
    OpenAI client retries them (transcription is idempotent), Ray routes them to the live
    replica and starts a new one; the dead replica's workers exit with it."""
    from openai import OpenAI

    failed: list[int] = []  # the answers that the client retried

    def record(response: httpx.Response) -> None:
        if response.status_code >= 500:
            failed.append(response.status_code)

    http = httpx.Client(event_hooks={"response": [record]})
    client = OpenAI(base_url=f"{asr}/v1", api_key="unused", timeout=60, max_retries=4, http_client=http)
    before = _replicas("asr")
    assert len(before) == 2
    victim = min(before)
    workers = _children(victim)
    assert workers, "the replica has no worker processes"
    done = threading.Semaphore(0)

    def transcribe(i: int) -> str:
        with open(clip("fox"), "rb") as f:
            text = client.audio.transcriptions.create(model="whisper-1", file=f).text
        done.release()
        return text

    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        futures = [executor.submit(transcribe, i) for i in range(12)]
        for _ in range(2):  # the load is under way on both replicas
            assert done.acquire(timeout=60)
        os.kill(victim, signal.SIGKILL)
        texts = [f.result(timeout=180) for f in futures]
    assert all(word_error_rate(clip_texts["fox"], t) <= MAX_WER for t in texts), texts
    print("answers retried after the kill:", failed)
    assert failed, "the kill hit no request: the test proved nothing"
    assert wait_for(lambda: not any(_alive(p) for p in workers), 30), "the dead replica's workers outlived it"
    assert wait_for(lambda: len(_replicas("asr")) == 2 and victim not in _replicas("asr"), 90)
    with open(clip("fox"), "rb") as f:
        assert client.audio.transcriptions.create(model="whisper-1", file=f).text


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_settings_map_to_ray_serves_options(capsys):
    from whisperpool.cli import build_parser
    from whisperpool.cli.ray_serve import ray_serve_settings
    from whisperpool.errors import ConfigError

    args = build_parser().parse_args(
        ["ray", "serve", "--min-replicas", "1", "--max-replicas", "6", "--workers-per-replica", "3", "--port", "9000"]
    )
    settings = ray_serve_settings(args, environ={"WHISPERPOOL_LANGUAGE": "en"})
    options = settings.deployment_options()
    scaling = options["autoscaling_config"]
    assert (scaling.min_replicas, scaling.max_replicas, scaling.target_ongoing_requests) == (1, 6, 3)
    assert "num_replicas" not in options and options["max_ongoing_requests"] == 6
    assert options["ray_actor_options"] == {"num_cpus": 3}
    assert options["backpressure_config"].retry_after_s == 2 and options["max_queued_requests"] == 64
    assert settings.http_options() == {"host": "127.0.0.1", "port": 9000}  # loopback unless told
    server = settings.replica_server()
    assert server.pool.pool_size == 3 and server.pool.threads_per_worker == 1  # the replica's CPUs, not the node's
    assert server.pool.decode.language == "en"
    fixed = ray_serve_settings(build_parser().parse_args(["ray", "serve", "--replicas", "2"]), environ={})
    assert fixed.deployment_options()["num_replicas"] == 2
    with pytest.raises(SystemExit):  # argparse: one or the other
        build_parser().parse_args(["ray", "serve", "--replicas", "2", "--min-replicas", "1"])
    with pytest.raises(ConfigError, match="both min_replicas and max_replicas"):
        ray_serve_settings(build_parser().parse_args(["ray", "serve", "--min-replicas", "1"]), environ={})
    from whisperpool.cli import main

    assert main(["ray", "serve", "--model", "/nonexistent/folder"]) == 3  # checked before Ray starts
    # ... by the backend the flag names: whisper.cpp's own message, not faster-whisper's
    assert main(["ray", "serve", "--backend", "whispercpp", "--model", "/nonexistent/x.bin"]) == 3
    assert "the whisper.cpp backend loads" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="Wyoming"):
        ray_serve_settings(build_parser().parse_args(["ray", "serve"]), environ={"WHISPERPOOL_WYOMING_PORT": "10300"})


def test_check_health_fails_without_a_warm_worker_after_the_grace():
    """The replica's health check on a real engine (fake backend), without Ray calling it."""
    import asyncio
    import dataclasses

    from whisperpool.cluster.serve import Whisperpool
    from whisperpool.errors import PoolFailed, PoolNotReady

    def replica(behavior: FakeBehavior, grace_s: float) -> Whisperpool:
        server = build_settings({"pool.pool_size": 1, "pool.backend": "fake", "pool.fake": behavior})
        server = dataclasses.replace(server, pool=dataclasses.replace(server.pool, warmup_timeout_s=10.0))
        r = Whisperpool.__new__(Whisperpool)  # the constructor's own warm-up is what we hold back
        r._settings, r._unready_grace_s, r._unready_since = server, grace_s, None
        r._engine = server.engine()
        return r

    async def scenario() -> None:
        warming = replica(FakeBehavior(load_delay_s=1.0), grace_s=0.3)
        await warming._engine.start(wait=False)
        try:
            warming.check_health()  # warming, within the grace: healthy
            await asyncio.sleep(0.5)
            with pytest.raises(PoolNotReady):
                warming.check_health()
            await asyncio.wait_for(asyncio.wrap_future(warming._engine.pool.warmed_future), 20)
            warming.check_health()  # warm: healthy again
            assert warming._unready_since is None
        finally:
            await warming._engine.close()
        failed = replica(FakeBehavior(fail_warmup_workers=frozenset(range(8))), grace_s=60.0)
        await failed._engine.start(wait=False)
        try:  # the pool runs in its own thread: a blocking, bounded wait is fine here
            assert wait_for(lambda: failed._engine.readiness().state == "failed", 20)
            with pytest.raises(PoolFailed):  # at once, whatever the grace
                failed.check_health()
        finally:
            await failed._engine.close()

    asyncio.run(scenario())
