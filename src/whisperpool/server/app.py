"""The HTTP API: OpenAI-compatible transcription, truthful health, pool status, metrics.

::

    POST /v1/audio/transcriptions   multipart, as OpenAI's (json, text, srt, vtt,
                                    verbose_json, and stream=true as server-sent events)
    POST /v1/audio/translations     the same, translated to English
    GET  /v1/models                 the models served
    GET  /v1/pool                   the pool status
    GET  /health/live               200 while the process serves
    GET  /health/ready              200 once a worker is warm, else 503
    GET  /metrics                   Prometheus
    WS   /v1/realtime               OpenAI's Realtime transcription protocol (see realtime.py)
    GET  /, /dashboard              the live dashboard, its feed /v1/dashboard/events (see dashboard.py)

The port is bound at once; the pool warms in the background, and a request that arrives
meanwhile waits for the first warm worker within its timeout. Every endpoint goes through
the :class:`~whisperpool.engine.TranscriptionEngine`: the ``model`` field is routed by
:meth:`~whisperpool.engine.TranscriptionEngine.resolve_model` (an unknown name is a 404
``model_not_found`` in OpenAI's error shape).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .._version import __version__
from ..config import DecodeOptions
from ..engine import OPENAI_ALIAS, TranscriptionEngine
from ..errors import ClientDisconnected, ConfigError, InvalidParameter, Unauthorized, WhisperPoolError
from ..results import Segment, TranscriptionResult
from . import errors, formats
from .auth import authorized
from .dashboard import install_dashboard
from .metrics import Metrics, MetricsMiddleware
from .realtime import realtime_endpoint
from .settings import ServerSettings
from .uploads import Upload, UploadSlots, make_upload_dir, receive_upload

log = logging.getLogger(__name__)

TRANSCRIBE_PATH = "/v1/audio/transcriptions"
TRANSLATE_PATH = "/v1/audio/translations"
ENDPOINTS = {
    TRANSCRIBE_PATH,
    TRANSLATE_PATH,
    "/v1/models",
    "/v1/pool",
    "/health/live",
    "/health/ready",
    "/metrics",
}


def create_app(settings: ServerSettings, *, engine: TranscriptionEngine | None = None) -> FastAPI:
    engine = engine or settings.engine()
    metrics = Metrics(engine.statuses)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        folder = make_upload_dir()  # mode 0700; removes the folders of servers that were killed
        app.state.upload_dir = folder
        await engine.start(wait=False)
        wyoming = None
        try:
            if settings.wyoming_port is not None:
                from .wyoming import start_wyoming

                wyoming = await start_wyoming(
                    engine, settings.wyoming_host, settings.wyoming_port, limits=settings.streams
                )
            yield
        finally:
            if wyoming is not None:
                await wyoming.stop()
            await engine.close(drain=True, timeout=settings.grace_s)
            shutil.rmtree(folder, ignore_errors=True)

    app = FastAPI(title="whisperpool", version=__version__, lifespan=lifespan)
    app.state.engine = engine
    app.state.metrics = metrics
    slots = UploadSlots(settings.max_uploads)
    errors.install(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics, endpoints=lambda: ENDPOINTS)
    dashboard = install_dashboard(app, engine, settings)  # its session cookie is a key too

    def check_key(request: Request) -> None:
        if not (authorized(request, settings.api_key) or dashboard.authorized(request)):
            raise Unauthorized("missing or wrong API key: send the header 'Authorization: Bearer <key>'")

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        readiness = engine.readiness()
        return JSONResponse(readiness.to_dict(), status_code=200 if readiness.ready else 503)

    @app.get("/v1/pool")
    async def pool_status(request: Request) -> dict[str, Any]:
        check_key(request)
        statuses = engine.statuses()
        data = engine.status().to_dict()
        if len(statuses) > 1:
            data["models"] = {name: status.to_dict() for name, status in statuses.items()}
        return data

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_key(request)
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "whisperpool"}
            for name in engine.model_names
        ]
        return {"object": "list", "data": data}

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        if settings.metrics_auth:
            check_key(request)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def transcribe_upload(request: Request, task: str) -> Response:
        check_key(request)
        async with receive_upload(
            request,
            app.state.upload_dir,
            max_bytes=settings.max_upload_bytes,
            timeout_s=settings.read_timeout_s,
            slots=slots,
        ) as upload:
            params = _Params.parse(upload, engine, task)
            # Decode while the file exists; from here on only samples are kept.
            samples = await engine.decode(upload.path, model=params.model, name=upload.filename)
        if params.stream:
            return _sse(engine, samples, params, metrics)
        future = engine.submit(samples, model=params.model, options=params.options)
        result = await _result_unless_disconnected(request, future)
        _observe(metrics, result)
        response = params.render(result)
        response.headers["Server-Timing"] = _server_timing(result)
        if result.warnings:  # every format: the header; verbose_json also has them in its body
            response.headers["X-Whisperpool-Warning"] = "; ".join(result.warnings).encode("ascii", "replace").decode()
        return response

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket) -> None:
        await realtime_endpoint(websocket, engine, settings)

    @app.post(TRANSCRIBE_PATH)
    async def transcriptions(request: Request) -> Response:
        return await transcribe_upload(request, "transcribe")

    @app.post(TRANSLATE_PATH)
    async def translations(request: Request) -> Response:
        return await transcribe_upload(request, "translate")

    return app


@dataclass(frozen=True, slots=True)
class _Params:
    """The form fields of a transcription request, checked, as decoding options."""

    options: DecodeOptions
    model: str
    response_format: str
    stream: bool
    words: bool
    task: str

    @classmethod
    def parse(cls, upload: Upload, engine: TranscriptionEngine, task: str) -> _Params:
        if upload.path is None:
            raise InvalidParameter("the request has no 'file' part with a file name", "file")
        model = engine.resolve_model(upload.get("model") or None)  # UnknownModel: 404
        response_format = upload.get("response_format") or "json"
        if response_format not in formats.FORMATS:
            raise InvalidParameter(
                f"response_format must be one of {', '.join(formats.FORMATS)}, got {response_format!r}",
                "response_format",
            )
        stream = _boolean(upload.get("stream"), "stream")
        granularities = set(
            upload.fields.get("timestamp_granularities[]", []) + upload.fields.get("timestamp_granularities", [])
        )
        if granularities - {"word", "segment"}:
            raise InvalidParameter("timestamp_granularities[] takes 'word' and 'segment'", "timestamp_granularities[]")
        changes: dict[str, Any] = {
            "task": task,
            "word_timestamps": "word" in granularities,
            # only these formats show segments' times (events carry text); without them a
            # long upload's pieces skip their sentence alignment
            "segment_timestamps": response_format in formats.TIMED and not stream,
        }
        language = (upload.get("language") or "").strip().lower()
        if language:  # empty: detect
            changes["language"] = language
        window = upload.get("window")  # ours, not OpenAI's: "auto" or "full"
        if window:
            changes["window"] = window
        prompt = upload.get("prompt")
        if prompt:
            changes["initial_prompt"] = prompt
        temperature = upload.get("temperature")
        if temperature:
            try:
                value = float(temperature)
            except ValueError:
                raise InvalidParameter(f"temperature must be a number, got {temperature!r}", "temperature") from None
            if not (math.isfinite(value) and 0 <= value <= 1):  # NaN compares false: refuse it by name
                raise InvalidParameter(f"temperature must be a number from 0 to 1, got {temperature!r}", "temperature")
            if value > 0:  # 0 keeps Whisper's fallback schedule, as OpenAI's API does
                changes["temperature"] = (value,)
        try:
            options = engine.options(model, **changes)
        except ConfigError as exc:
            field = next(
                (name for name in ("language", "temperature", "window") if f"DecodeOptions.{name}" in str(exc)), None
            )
            raise InvalidParameter(str(exc), field) from None
        return cls(options, model, response_format, stream, "word" in granularities, task)

    def render(self, result: TranscriptionResult) -> Response:
        if self.response_format == "json":
            return JSONResponse(formats.json_body(result))
        if self.response_format == "verbose_json":
            return JSONResponse(formats.verbose_json(result, task=self.task, words=self.words))
        if self.response_format == "srt":
            return PlainTextResponse(formats.srt(result))
        if self.response_format == "vtt":
            return PlainTextResponse(formats.vtt(result), media_type="text/vtt")
        return PlainTextResponse(result.text)


async def _result_unless_disconnected(
    request: Request, result: asyncio.Future[TranscriptionResult]
) -> TranscriptionResult:
    """Await the result, but drop the request from the queue if the client goes away."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({result, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if result.done():
        return result.result()
    result.cancel()  # a queued request leaves the queue; a running one finishes on its worker
    raise ClientDisconnected("the client disconnected before its transcription was ready")


def _boolean(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidParameter(f"{name} must be true or false, got {value!r}", name)


def _server_timing(result: TranscriptionResult) -> str:
    """Where the time went, in the standard Server-Timing header (milliseconds)."""
    t = result.timings
    return f"queue;dur={t.queue_wait_s * 1000:.1f}, inference;dur={t.inference_s * 1000:.1f}, pool;dur={t.total_s * 1000:.1f}"


def _observe(metrics: Metrics, result: TranscriptionResult) -> None:
    metrics.queue_wait.observe(result.timings.queue_wait_s)
    metrics.inference.observe(result.timings.inference_s)
    metrics.audio_seconds.inc(result.duration)


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _sse(engine: TranscriptionEngine, samples, params: _Params, metrics: Metrics) -> StreamingResponse:
    """Submit now (so a full queue is still a 503), then stream each segment as it decodes."""
    segments: asyncio.Queue[Segment] = asyncio.Queue()
    result_future = engine.submit(samples, model=params.model, options=params.options, on_segment=segments.put_nowait)

    async def events() -> AsyncIterator[str]:
        try:
            while True:
                getter = asyncio.ensure_future(segments.get())
                done, _ = await asyncio.wait({getter, result_future}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield _event({"type": "transcript.text.delta", "delta": getter.result().text})
                    continue
                getter.cancel()
                while not segments.empty():  # segments always arrive before the result
                    yield _event({"type": "transcript.text.delta", "delta": segments.get_nowait().text})
                try:
                    result = result_future.result()
                except WhisperPoolError as exc:
                    body = errors.to_response(exc).body
                    yield _event({"type": "error", **json.loads(body)})
                    return
                _observe(metrics, result)
                yield _event({"type": "transcript.text.done", "text": result.text, "usage": formats.usage(result)})
                return
        finally:
            if not result_future.done():
                result_future.cancel()  # a queued request leaves the queue; a running one finishes alone

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


__all__ = ["ENDPOINTS", "OPENAI_ALIAS", "create_app"]
