"""The server's error mapping and readiness, in-process, with the fake backend's faults."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import WAIT, encode, fake_config, serving, wait_for
from whisperpool import DecodeOptions
from whisperpool.server import ServerSettings, create_app
from whisperpool.testing import FakeBehavior

MARKERS = FakeBehavior()


def wav(tmp_path, first: float = 0.0, seconds: float = 0.5) -> bytes:
    audio = np.zeros(int(16000 * seconds), np.float32)
    audio[0] = first
    return encode(audio, tmp_path / f"clip-{first}.wav").read_bytes()


def app_for(**pool_changes):
    return create_app(ServerSettings(pool=fake_config(**pool_changes)))


def upload(client, data: bytes, **fields):
    return client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", data)}, data=fields)


def test_a_full_queue_is_503_with_retry_after(tmp_path):
    app = app_for(pool_size=1, max_queue=0, fake=FakeBehavior(inference_delay_s=1.5))
    with TestClient(app) as client:
        assert wait_for(lambda: client.get("/health/ready").status_code == 200)
        first: dict = {}
        thread = threading.Thread(target=lambda: first.setdefault("r", upload(client, wav(tmp_path))))
        thread.start()
        assert wait_for(lambda: client.get("/v1/pool").json()["busy_workers"] == 1)
        r = upload(client, wav(tmp_path))
        thread.join(WAIT)
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert r.json()["error"]["code"] == "queue_full" and r.json()["error"]["type"] == "server_error"
    assert first["r"].status_code == 200 and first["r"].json()["text"] == "8000 samples"


def test_a_hung_request_is_504_and_a_crash_is_500_and_others_are_served(tmp_path):
    app = app_for(pool_size=2, request_timeout_s=1.0)
    with TestClient(app) as client:
        assert wait_for(lambda: client.get("/health/ready").status_code == 200)
        r = upload(client, wav(tmp_path, MARKERS.hang_marker))
        assert r.status_code == 504 and r.json()["error"]["code"] == "request_timeout"
        assert wait_for(lambda: client.get("/health/ready").json()["warm_workers"] == 2)  # replaced
        r = upload(client, wav(tmp_path, MARKERS.crash_marker))
        assert r.status_code == 500 and r.json()["error"]["code"] == "worker_crashed"
        assert "poison" in r.json()["error"]["message"]
        # Every worker that died was replaced, and the pool serves again.
        assert wait_for(lambda: client.get("/v1/pool").json()["worker_restarts"] == 3)
        assert wait_for(lambda: client.get("/health/ready").json()["warm_workers"] == 2)
        assert upload(client, wav(tmp_path)).status_code == 200


def test_backend_errors_are_500_and_the_worker_keeps_serving(tmp_path):
    with TestClient(app_for(pool_size=1)) as client:
        assert wait_for(lambda: client.get("/health/ready").status_code == 200)
        r = upload(client, wav(tmp_path, MARKERS.error_marker))
        assert r.status_code == 500 and r.json()["error"]["code"] == "transcription_error"
        r = upload(client, wav(tmp_path), response_format="text")
        assert r.status_code == 200 and r.text == "8000 samples"
        assert "inference;dur=" in r.headers["server-timing"]


def test_a_request_during_warm_up_waits_or_gets_503_when_its_time_runs_out(tmp_path):
    app = app_for(pool_size=1, request_timeout_s=1.0, fake=FakeBehavior(load_delay_s=4.0))
    with TestClient(app) as client:
        warming = client.get("/health/ready")
        assert warming.status_code == 503 and warming.json()["status"] == "warming"
        r = upload(client, wav(tmp_path))
        assert r.status_code == 503 and r.headers["retry-after"] and r.json()["error"]["code"] == "pool_not_ready"
    app = app_for(pool_size=1, request_timeout_s=30.0, fake=FakeBehavior(load_delay_s=1.5))
    with TestClient(app) as client:
        assert client.get("/health/ready").status_code == 503
        r = upload(client, wav(tmp_path))  # waits for the first warm worker
        assert r.status_code == 200 and r.json()["text"] == "8000 samples"


def test_all_workers_failed_reads_failed(tmp_path):
    app = app_for(pool_size=2, fake=FakeBehavior(fail_warmup_workers={0, 1}))
    with TestClient(app) as client:
        assert wait_for(lambda: client.get("/health/ready").json()["status"] == "failed")
        r = upload(client, wav(tmp_path))
        assert r.status_code == 503 and r.json()["error"]["code"] == "pool_failed"
        assert client.get("/health/live").status_code == 200


@pytest.mark.parametrize(
    "body,content_type,param",
    [
        (b"not multipart", "text/plain", "file"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x", None),
    ],
)
def test_malformed_bodies_are_400(body, content_type, param):
    with TestClient(app_for(pool_size=1)) as client:
        r = client.post("/v1/audio/transcriptions", content=body, headers={"content-type": content_type})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        if param:
            assert r.json()["error"]["param"] == param


def test_a_client_that_disconnects_while_queued_leaves_the_queue(tmp_path):
    import httpx

    app = app_for(pool_size=1, fake=FakeBehavior(inference_delay_s=2.0))
    with serving(app) as url:
        assert wait_for(lambda: httpx.get(f"{url}/health/ready").status_code == 200)
        files = {"file": ("a.wav", wav(tmp_path))}
        first: dict = {}
        runner = threading.Thread(
            target=lambda: first.setdefault("r", httpx.post(f"{url}/v1/audio/transcriptions", files=files, timeout=30))
        )
        runner.start()
        assert wait_for(lambda: httpx.get(f"{url}/v1/pool").json()["busy_workers"] == 1)
        with pytest.raises(httpx.ReadTimeout):  # gives up while its request waits in the queue
            httpx.post(f"{url}/v1/audio/transcriptions", files=files, timeout=0.5)
        assert wait_for(lambda: httpx.get(f"{url}/v1/pool").json()["queue_depth"] == 0, timeout=1.2)
        assert httpx.get(f"{url}/v1/pool").json()["busy_workers"] == 1  # before the first one ends
        runner.join(WAIT)
        assert first["r"].status_code == 200
        status = httpx.get(f"{url}/v1/pool").json()
        assert status["requests_completed"] == 1 and status["workers"][0]["requests_served"] == 1
        assert 'status="499"' in httpx.get(f"{url}/metrics").text
        # One that gives up mid-inference leaves the worker to finish, unharmed.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/audio/transcriptions", files=files, timeout=0.5)
        assert wait_for(lambda: httpx.get(f"{url}/v1/pool").json()["requests_completed"] == 2)
        r = httpx.post(f"{url}/v1/audio/transcriptions", files=files, timeout=30)
        assert r.status_code == 200 and r.json()["text"] == "8000 samples"
        status = httpx.get(f"{url}/v1/pool").json()
        assert status["worker_crashes"] == 0 and status["workers"][0]["requests_served"] == 3


def test_window_fallbacks_reach_the_metrics_and_a_bad_window_is_400(tmp_path):
    with TestClient(app_for(pool_size=1)) as client:
        assert wait_for(lambda: client.get("/health/ready").status_code == 200)
        assert upload(client, wav(tmp_path, MARKERS.fallback_marker)).status_code == 200
        assert upload(client, wav(tmp_path, MARKERS.retry_marker)).status_code == 200
        assert upload(client, wav(tmp_path)).status_code == 200
        assert upload(client, wav(tmp_path), window="full").status_code == 200
        r = upload(client, wav(tmp_path), window="tiny")
        assert r.status_code == 400 and r.json()["error"]["param"] == "window"
        metrics = client.get("/metrics").text
    assert 'whisperpool_window_fallbacks_total{model="base",reason="log_probability"} 1.0' in metrics
    assert 'whisperpool_window_fallbacks_total{model="base",reason="repetition"} 0.0' in metrics
    assert 'whisperpool_window_retries_total{model="base",reason="repetition"} 1.0' in metrics
    assert 'whisperpool_window_retries_total{model="base",reason="no_end_timestamp"} 0.0' in metrics
    assert 'whisperpool_window_retries_total{model="base",reason="log_probability"}' not in metrics  # never retried
    assert 'whisperpool_short_window_requests_total{model="base"} 2.0' in metrics


def test_sse_streams_segments_through_the_engine_and_an_unknown_model_is_404_before_the_stream(tmp_path):
    import json

    with TestClient(app_for(pool_size=1)) as client:
        assert wait_for(lambda: client.get("/health/ready").status_code == 200)
        r = upload(client, wav(tmp_path), stream="true", model="whisper-1")
        missing = upload(client, wav(tmp_path), stream="true", model="third")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line.removeprefix("data: ")) for line in r.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events] == ["transcript.text.delta", "transcript.text.done"]
    assert events[0]["delta"] == "8000 samples" and events[1]["text"] == "8000 samples"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("fields", "timed"),
    [
        ({}, False),
        ({"response_format": "text"}, False),
        ({"response_format": "srt"}, True),
        ({"response_format": "vtt"}, True),
        ({"response_format": "verbose_json"}, True),
        ({"response_format": "verbose_json", "stream": "true"}, False),  # events carry text only
    ],
)
def test_only_the_formats_that_show_segment_times_ask_for_them(tmp_path, fields, timed):
    app = app_for(pool_size=1, decode=DecodeOptions(segment_timestamps=not timed))  # the format decides
    engine, seen = app.state.engine, []
    submit = engine.submit

    def noting(*args, **kwargs):
        seen.append(kwargs["options"])
        return submit(*args, **kwargs)

    engine.submit = noting
    with TestClient(app) as client:
        assert wait_for(lambda: client.get("/health/ready").status_code == 200)
        assert upload(client, wav(tmp_path), **fields).status_code == 200
    assert [o.segment_timestamps for o in seen] == [timed]


def test_readiness_comes_from_the_engine():
    with TestClient(app_for(pool_size=1, fake=FakeBehavior(fail_warmup_workers=frozenset({0, 1, 2})))) as client:
        assert wait_for(lambda: client.get("/health/ready").json()["status"] == "failed")
        r = client.get("/health/ready")
    assert r.status_code == 503 and r.json()["failed_workers"] == 1 and r.json()["warm_workers"] == 0


def test_a_tiny_upload_that_decodes_to_hours_is_refused_and_the_server_goes_on(tmp_path):
    # A few kilobytes of FLAC can declare (or decode to) hours of silence: the server
    # refuses it with 400 at a bounded cost, whether the header says so or not.
    from whisperpool.testing import silent_flac

    app = app_for(pool_size=1, max_audio_s=60)
    with TestClient(app) as client:
        assert wait_for(lambda: client.get("/health/ready").status_code == 200)
        for data in (silent_flac(600), silent_flac(600, declare_length=False)):
            assert len(data) < 200_000
            r = upload(client, data)
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["code"] == "audio_too_long" and error["param"] == "file"
            assert "limit of 60 s" in error["message"] and str(tmp_path) not in error["message"]
        assert upload(client, wav(tmp_path)).json()["text"] == "8000 samples"


def test_the_express_worker_shows_in_the_pool_status_and_the_metrics():
    with TestClient(app_for(pool_size=1, express_workers=None)) as client:  # the default: one on a CPU
        assert wait_for(lambda: client.get("/v1/pool").json()["warm_workers"] == 2)
        status = client.get("/v1/pool").json()
        metrics = client.get("/metrics").text
    assert status["express_workers"] == 1
    assert sorted(w["express"] for w in status["workers"]) == [False, True]
    assert 'whisperpool_express_workers{model="base"} 1.0' in metrics


def test_a_client_that_disconnects_during_a_long_recording_leaves_nothing_behind(tmp_path):
    import httpx

    long = {"split_above_s": 3.0, "piece_s": 2.0, "piece_batch": 1, "express_workers": 0}
    app = app_for(pool_size=1, fake=FakeBehavior(inference_delay_s=0.5), **long)
    with serving(app) as url:
        assert wait_for(lambda: httpx.get(f"{url}/health/ready").status_code == 200)
        files = {"file": ("long.wav", wav(tmp_path, seconds=20.0))}
        with pytest.raises(httpx.ReadTimeout):  # gives up while the recording's pieces decode
            httpx.post(f"{url}/v1/audio/transcriptions", files=files, timeout=1.5)
        # Its queued pieces leave, and the recording (its audio too) is no longer held or listed.
        assert wait_for(lambda: httpx.get(f"{url}/v1/pool").json()["queue_depth"] == 0)
        assert wait_for(lambda: httpx.get(f"{url}/v1/pool").json()["busy_workers"] == 0)
        status = httpx.get(f"{url}/v1/pool").json()
        assert status["requests"] == [] and status["pieces_completed"] < 10
        r = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("a.wav", wav(tmp_path))}, timeout=30)
        assert r.status_code == 200 and r.json()["text"] == "8000 samples"
