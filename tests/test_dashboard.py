"""The dashboard's feed and login, without a browser: a real uvicorn in a thread (the
feed is an endless stream, which the in-process TestClient cannot read), fake backend.

The browser itself is driven in tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import WAIT, encode, fake_config, samples, serving, wait_for
from whisperpool.server import ServerSettings, create_app
from whisperpool.server.dashboard import COOKIE, Feed

KEY = "sesame-0123456789"


@pytest.fixture
def live():
    settings = ServerSettings(pool=fake_config(pool_size=2), api_key=KEY)
    app = create_app(settings)
    with serving(app) as url:
        try:
            yield url, app
        finally:
            app.state.dashboard.closing = True  # as `whisperpool serve` does on SIGTERM: the feeds end


def events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """The (event, data) pairs of a server-sent-events response, as they arrive."""
    name, data = "message", ""
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line and data:
            yield name, json.loads(data)
            name, data = "message", ""


def until(stream: Iterator[tuple[str, dict]], predicate, timeout: float = WAIT) -> tuple[str, dict]:
    deadline = time.monotonic() + timeout
    for name, data in stream:  # the feed sends a status every second, so this loop turns
        if predicate(name, data):
            return name, data
        assert time.monotonic() < deadline, "the event did not come"
    raise AssertionError("the feed ended")


def login(url: str) -> httpx.Cookies:
    r = httpx.post(f"{url}/dashboard/login", data={"key": KEY}, follow_redirects=False)
    assert r.status_code == 303
    return r.cookies


def test_without_a_session_the_page_is_the_login_form_and_the_feed_is_refused(live):
    url, _ = live
    page = httpx.get(f"{url}/")
    assert page.status_code == 401 and 'data-auth="login"' in page.text and 'name="key"' in page.text
    assert httpx.get(f"{url}/dashboard").status_code == 401
    r = httpx.get(f"{url}/v1/dashboard/events")
    assert r.status_code == 401 and "log in" in r.json()["error"]["message"]
    assert httpx.get(f"{url}/dashboard/session").status_code == 401
    wrong = httpx.post(f"{url}/dashboard/login", data={"key": "nope"}, follow_redirects=False)
    assert wrong.status_code == 303 and "wrong=1" in wrong.headers["location"] and COOKIE not in wrong.cookies
    # the static files hold no secrets; anything else under static/ is not served
    assert httpx.get(f"{url}/dashboard/static/dashboard.js").status_code == 200
    assert httpx.get(f"{url}/dashboard/static/..%2f..%2fapp.py").status_code == 404


def test_the_login_sets_a_strict_httponly_cookie_that_is_not_the_key(live, tmp_path):
    url, _ = live
    r = httpx.post(f"{url}/dashboard/login", data={"key": KEY}, follow_redirects=False)
    set_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie.replace("Strict", "strict")
    assert KEY not in set_cookie and KEY not in r.headers["location"]
    cookies = r.cookies
    page = httpx.get(f"{url}/dashboard", cookies=cookies)
    assert page.status_code == 200 and 'data-auth="ok"' in page.text
    assert httpx.get(f"{url}/dashboard/session", cookies=cookies).status_code == 204
    assert httpx.get(f"{url}/v1/pool", cookies=cookies).status_code == 200
    # an upload with the cookie needs the page's header too (a cross-site form cannot send it)
    wav = encode(samples(8000), tmp_path / "a.wav").read_bytes()
    files = {"file": ("a.wav", wav)}
    assert wait_for(lambda: httpx.get(f"{url}/health/ready").status_code == 200)
    r = httpx.post(f"{url}/v1/audio/transcriptions", files=files, cookies=cookies)
    assert r.status_code == 401
    headers = {"X-Whisperpool-Dashboard": "1"}
    r = httpx.post(f"{url}/v1/audio/transcriptions", files=files, cookies=cookies, headers=headers, timeout=WAIT)
    assert r.status_code == 200 and r.json()["text"] == "8000 samples"
    # a forged cookie is refused; logging out clears it
    forged = httpx.Cookies({COOKIE: "0" * 64})
    assert httpx.get(f"{url}/dashboard/session", cookies=forged).status_code == 401
    out = httpx.post(f"{url}/dashboard/logout", cookies=cookies, follow_redirects=False)
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]


def test_the_feed_starts_with_a_snapshot_then_sends_pool_events(live):
    url, app = live
    cookies = login(url)
    timeout = httpx.Timeout(WAIT)
    with httpx.stream("GET", f"{url}/v1/dashboard/events", cookies=cookies, timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        stream = events(r)
        name, first = next(stream)
        assert name == "snapshot"
        assert set(first) >= {"default", "models", "readiness", "live_streams"}
        assert first["models"][first["default"]]["total_workers"] == 2
        _, status = until(
            stream, lambda n, d: n in ("status", "snapshot") and d["models"][d["default"]]["warm_workers"] == 2
        )
        workers = status["models"][status["default"]]["workers"]
        assert {w["state"] for w in workers} == {"warm"} and all(w["pid"] for w in workers)
        victim = workers[0]
        os.kill(victim["pid"], signal.SIGKILL)
        _, changed = until(
            stream, lambda n, d: n == "worker_state_changed" and d["worker_id"] == victim["id"] and d["new"] == "failed"
        )
        assert changed["old"] == "warm"
        _, failed = until(stream, lambda n, d: n == "worker_failed")
        assert failed["worker_id"] == victim["id"] and failed["reason"]
        _, restarted = until(stream, lambda n, d: n == "worker_restarted")
        assert restarted["replaces"] == victim["id"]
        until(
            stream,
            lambda n, d: (
                n == "worker_state_changed" and d["worker_id"] == restarted["worker_id"] and d["new"] == "warm"
            ),
        )
        assert len(app.state.dashboard.clients) == 1
    # the client went away: its queue is dropped (at the next event it misses at the latest)
    assert wait_for(lambda: not app.state.dashboard.clients, timeout=10)


def test_without_a_key_the_page_is_open():
    from fastapi.testclient import TestClient

    with TestClient(create_app(ServerSettings(pool=fake_config(pool_size=1)))) as client:
        page = client.get("/")
        assert page.status_code == 200 and 'data-auth="open"' in page.text
        assert client.get("/dashboard/session").status_code == 204
        css = client.get("/dashboard/static/dashboard.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_the_bearer_key_opens_the_feed_too(live):
    url, _ = live
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("GET", f"{url}/v1/dashboard/events", headers=headers, timeout=WAIT) as r:
        assert r.status_code == 200
        assert next(events(r))[0] == "snapshot"


def test_the_feed_is_bounded_slow_clients_are_dropped_and_clients_are_capped():
    async def main() -> None:
        feed = Feed(lambda: {"n": 1}, max_clients=2, queue_size=3, period_s=60)
        a = feed.open()
        b = feed.open()
        assert a is not None and b is not None and feed.open() is None  # over the cap
        for i in range(3):  # a has the snapshot and takes nothing: full after two more
            feed.publish(f"event: x\ndata: {i}\n\n".encode())
            await b.queue.get()  # b keeps up
        assert a not in feed.clients and a.dropped and feed.dropped == 1
        assert a.queue.qsize() == 1 and a.queue.get_nowait() is None  # its feed ends
        assert b in feed.clients and not b.dropped
        chunks = []
        feed.publish(b"event: y\ndata: 1\n\n")
        feed.closing = True
        async for chunk in feed.stream(b):
            chunks.append(chunk)
            if len(chunks) > 3:
                break
        assert chunks[0].startswith(b"retry:") and b not in feed.clients

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_pool_events_reach_every_feed_as_named_json_events():
    from whisperpool.engine import TranscriptionEngine
    from whisperpool.events import PoolScaled, WarmUpFailedEvent

    engine = TranscriptionEngine(fake_config(pool_size=1))  # not started: no process

    async def main() -> None:
        feed = Feed(lambda: {"n": 1}, period_s=60)
        feed.subscribe(engine)
        engine.emitter.emit("pool_scaled", PoolScaled("up", 1, 2, "queue depth 3", (7,)))  # nobody watches
        a, b = feed.open(), feed.open()
        engine.emitter.emit("pool_scaled", PoolScaled("up", 1, 2, "queue depth 3", (7,)))
        engine.emitter.emit("warm_up_failed", WarmUpFailedEvent(3, "boom"))
        for client in (a, b):
            assert client.queue.get_nowait().startswith(b"event: snapshot\n")
            scaled = client.queue.get_nowait().decode()
            assert scaled.startswith("event: pool_scaled\ndata: ") and scaled.endswith("\n\n")
            assert json.loads(scaled.split("data: ", 1)[1]) == {
                "direction": "up",
                "workers_before": 1,
                "workers_after": 2,
                "reason": "queue depth 3",
                "worker_ids": [7],
            }
            failed = client.queue.get_nowait().decode()
            assert json.loads(failed.split("data: ", 1)[1]) == {"worker_id": 3, "error": "boom"}
            assert client.queue.empty()
        feed.closing = True

    asyncio.run(asyncio.wait_for(main(), WAIT))
