"""The live dashboard: one page, its static files, a login, and one server-sent-events feed.

::

    GET  /, /dashboard              the page (without a valid session and with an API key
                                    set: the login form, status 401)
    GET  /dashboard/static/NAME     dashboard.js, dashboard.css (package data, no CDN)
    POST /dashboard/login           form field ``key``: sets the session cookie, back to /
    POST /dashboard/logout          clears it
    GET  /dashboard/session         204 with a valid session (or no key set), else 401
    GET  /v1/dashboard/events       server-sent events, one feed per page:

    engine events --(loop)--> Feed.publish --> one bounded asyncio.Queue per client
    ticker (1 s, only while a client watches) --> "status" snapshot ----^
                                                  each client's generator --> SSE

The feed sends a ``snapshot`` event first (every model's status and readiness), then
each pool event as it happens (``worker_state_changed``, ``worker_failed``, ...: the
payload of :mod:`whisperpool.events` as JSON, named by ``event:``), and a ``status``
event every ``period_s`` for the gauges. A client too slow to take its events (its queue
full) is dropped; its browser reconnects and starts again from a snapshot. At most
``max_clients`` feeds are open at once (more: 503). When nobody watches, events cost a
set lookup and no snapshot is taken.

Auth: with an API key configured, the login form posts the key; the server answers with
an ``HttpOnly``, ``SameSite=Strict`` cookie holding an HMAC of the key under a secret
made when the app is created (so the cookie never holds the key, and a restart logs every
page out). :meth:`DashboardAuth.authorized` checks that cookie in constant time; the app's
key check accepts it too, so the page's drop zone can post to
``/v1/audio/transcriptions`` (for a non-GET request only with the page's
``X-Whisperpool-Dashboard`` header, which a cross-site form cannot send). The key never
appears in a URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse

from ..engine import TranscriptionEngine
from ..errors import Unauthorized
from .auth import authorized as bearer_authorized
from .limits import session_slots
from .settings import ServerSettings

log = logging.getLogger(__name__)

COOKIE = "whisperpool_dashboard"
HEADER = "x-whisperpool-dashboard"  # the page's requests carry it: a cross-site form cannot
FEED_EVENTS = (
    "worker_state_changed",
    "worker_failed",
    "worker_restarted",
    "worker_recycled",
    "pool_scaled",
    "warm_up_failed",
    "ready",
)
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
MAX_KEY_FORM_BYTES = 4096


class DashboardAuth:
    """The session cookie: an HMAC of the API key under a per-app secret."""

    def __init__(self, api_key: str | None) -> None:
        self.api_key = api_key
        self._secret = secrets.token_bytes(32)
        self.token = self._sign(api_key) if api_key is not None else ""

    def _sign(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    def check_key(self, offered: str) -> bool:
        """True if ``offered`` is the API key (constant time)."""
        return self.api_key is not None and hmac.compare_digest(offered.encode(), self.api_key.encode())

    def authorized(self, request: Request) -> bool:
        """True if no key is set, or the request carries a valid session cookie (and, unless
        it is a GET or HEAD, the page's header)."""
        if self.api_key is None:
            return True
        if request.method not in ("GET", "HEAD") and request.headers.get(HEADER) != "1":
            return False
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), self.token.encode())


def _payload(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class _Client:
    __slots__ = ("queue", "dropped")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(size)
        self.dropped = False


class Feed:
    """Fans the engine's events and a periodic status out to the open dashboard feeds.

    Everything runs on the server's event loop (the engine delivers its events there), so
    no lock is needed. ``publish`` never blocks: a full queue drops its client.
    """

    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        *,
        max_clients: int = 16,
        queue_size: int = 256,
        period_s: float = 1.0,
    ) -> None:
        self._snapshot = snapshot
        self.max_clients = max_clients
        self.queue_size = queue_size
        self.period_s = period_s
        self.clients: set[_Client] = set()
        self.closing = False  # set at shutdown (from a signal handler): every feed ends
        self.dropped = 0
        self._ticker: asyncio.Task[None] | None = None

    def subscribe(self, engine: TranscriptionEngine) -> None:
        for name in FEED_EVENTS:
            engine.on(name, self._handler(name))

    def _handler(self, name: str) -> Callable[[Any], None]:
        def handle(payload: Any) -> None:
            if self.clients:
                self.publish(_sse(name, _payload(payload)))

        return handle

    def publish(self, message: bytes) -> None:
        for client in list(self.clients):
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                self._drop(client)

    def _drop(self, client: _Client) -> None:
        """A client that cannot keep up: empty its queue and end its feed."""
        self.clients.discard(client)
        client.dropped = True
        self.dropped += 1
        while not client.queue.empty():
            client.queue.get_nowait()
        client.queue.put_nowait(None)
        log.info("dropped a dashboard feed that fell %d events behind", self.queue_size)

    async def _tick(self) -> None:
        while self.clients and not self.closing:
            await asyncio.sleep(self.period_s)
            if self.clients:
                self.publish(_sse("status", self._snapshot()))
        self._ticker = None

    def open(self) -> _Client | None:
        """A new client's queue, primed with a snapshot; None if ``max_clients`` are open."""
        if len(self.clients) >= self.max_clients or self.closing:
            return None
        client = _Client(self.queue_size)
        client.queue.put_nowait(_sse("snapshot", self._snapshot()))
        self.clients.add(client)
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        return client

    def close(self, client: _Client) -> None:
        self.clients.discard(client)

    async def stream(self, client: _Client) -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            while not self.closing:
                try:
                    message = await asyncio.wait_for(client.queue.get(), timeout=max(self.period_s, 1.0) * 2)
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"  # also notices a client that went away
                    continue
                if message is None:
                    return
                yield message
        finally:
            self.close(client)


def _static_text(name: str) -> str:
    return resources.files("whisperpool.server").joinpath("static", name).read_text(encoding="utf-8")


def install_dashboard(
    app: FastAPI, engine: TranscriptionEngine, settings: ServerSettings, *, max_clients: int = 16
) -> DashboardAuth:
    """Add the dashboard's routes to ``app``; returns its :class:`DashboardAuth`, whose
    ``authorized`` the app's key check accepts as well."""
    auth = DashboardAuth(settings.api_key)
    slots = session_slots(engine, settings.streams)

    def snapshot() -> dict[str, Any]:
        statuses = engine.statuses()
        return {
            "default": engine.name,
            "models": {name: status.to_dict() for name, status in statuses.items()},
            "readiness": {name: engine.readiness(name).to_dict() for name in statuses},
            "live_streams": slots.total,
            "feed_clients": len(feed.clients),
        }

    feed = Feed(snapshot, max_clients=max_clients)
    feed.subscribe(engine)
    app.state.dashboard = feed
    page = _static_text("dashboard.html")

    def allowed(request: Request) -> bool:
        return auth.authorized(request) or bearer_authorized(request, settings.api_key)

    async def dashboard_page(request: Request) -> HTMLResponse:
        ok = allowed(request)
        body = page.replace("{{auth}}", "open" if settings.api_key is None else "ok" if ok else "login")
        headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
        return HTMLResponse(body, status_code=200 if ok else 401, headers=headers)

    app.add_api_route("/", dashboard_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/dashboard", dashboard_page, methods=["GET"], include_in_schema=False)

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:
            return JSONResponse({"error": {"message": "not found", "type": "invalid_request_error"}}, 404)
        return Response(_static_text(name), media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    @app.post("/dashboard/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_KEY_FORM_BYTES:
            raise Unauthorized("the login form is too large")
        from urllib.parse import parse_qs

        offered = (parse_qs(body.decode("utf-8", "replace")).get("key") or [""])[0]
        if auth.api_key is not None and not auth.check_key(offered):
            return RedirectResponse("/dashboard?wrong=1", status_code=303)
        response = RedirectResponse("/dashboard", status_code=303)
        if auth.api_key is not None:
            response.set_cookie(COOKIE, auth.token, httponly=True, samesite="strict", path="/")
        return response

    @app.post("/dashboard/logout", include_in_schema=False)
    async def logout() -> Response:
        response = RedirectResponse("/dashboard", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/dashboard/session", include_in_schema=False)
    async def session(request: Request) -> Response:
        return Response(status_code=204 if allowed(request) else 401)

    @app.get("/v1/dashboard/events", include_in_schema=False)
    async def events(request: Request) -> Response:
        if not allowed(request):
            raise Unauthorized("log in on the dashboard page (or send 'Authorization: Bearer <key>')")
        client = feed.open()
        if client is None:
            return JSONResponse(
                {
                    "error": {
                        "message": f"too many dashboard feeds open (at most {feed.max_clients})",
                        "type": "server_error",
                        "param": None,
                        "code": "feed_limit",
                    }
                },
                status_code=503,
                headers={"Retry-After": "5"},
            )
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(feed.stream(client), media_type="text/event-stream", headers=headers)

    return auth


__all__ = ["COOKIE", "FEED_EVENTS", "DashboardAuth", "Feed", "install_dashboard"]
