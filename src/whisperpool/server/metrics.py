"""Prometheus metrics. Each app has its own registry, so several can live in one process.

Request counts and latencies are recorded by :class:`MetricsMiddleware` (pure ASGI, so
streamed responses are timed to their last byte); pool gauges are read from the pool's
status at scrape time, so they are never stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..backends.faster_whisper import FALLBACK_REASONS
from ..pool import PoolStatus
from ..worker import WorkerState

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0, 120.0)


class _PoolCollector(Collector):
    def __init__(self, status: Callable[[], PoolStatus]) -> None:
        self._status = status

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        status = self._status()
        for name, doc, value in (
            ("whisperpool_worker_restarts", "Workers started to replace failed ones", status.worker_restarts),
            ("whisperpool_worker_crashes", "Warm workers that died or hung", status.worker_crashes),
            ("whisperpool_workers_recycled", "Workers retired as planned", status.workers_recycled),
            ("whisperpool_requests_retried", "Requests retried after their worker died", status.requests_retried),
            (
                "whisperpool_short_window_requests",
                "Requests answered by the short-audio window",
                status.short_window_requests,
            ),
        ):
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], value)
            yield counter
        fallbacks = CounterMetricFamily(
            "whisperpool_window_fallbacks",
            "Short-window decodings the guard sent to the full window",
            labels=["reason"],
        )
        for reason in FALLBACK_REASONS:
            fallbacks.add_metric([reason], status.window_fallbacks.get(reason, 0))
        yield fallbacks
        depth = GaugeMetricFamily("whisperpool_queue_depth", "Requests waiting for a worker")
        depth.add_metric([], status.queue_depth)
        yield depth
        by_state = GaugeMetricFamily("whisperpool_workers", "Workers by state", labels=["state"])
        for state in WorkerState:
            by_state.add_metric([state.value], sum(1 for w in status.workers if w.state is state))
        yield by_state
        progress = GaugeMetricFamily("whisperpool_warm_up_progress", "Warm-up progress, 0-100")
        progress.add_metric([], status.warm_up_progress)
        yield progress
        warm_up = GaugeMetricFamily(
            "whisperpool_worker_warm_up_seconds", "Seconds each worker took to warm up", labels=["worker"]
        )
        for w in status.workers:
            if w.warm_up_s is not None:
                warm_up.add_metric([str(w.id)], w.warm_up_s)
        yield warm_up


class Metrics:
    def __init__(self, status: Callable[[], PoolStatus]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "whisperpool_http_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "whisperpool_http_request_duration_seconds",
            "HTTP request latency, to the last byte",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "whisperpool_queue_wait_seconds", "Time requests waited for a worker", buckets=LATENCY_BUCKETS, registry=r
        )
        self.inference = Histogram(
            "whisperpool_inference_seconds", "Time workers spent transcribing", buckets=LATENCY_BUCKETS, registry=r
        )
        self.audio_seconds = Counter("whisperpool_audio_seconds", "Seconds of audio transcribed", registry=r)
        r.register(_PoolCollector(status))


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by a known endpoint (or "other")."""

    def __init__(self, app, metrics: Metrics, endpoints: Callable[[], set[str]]) -> None:
        self.app, self.metrics, self._endpoints = app, metrics, endpoints

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in self._endpoints() else "other"
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
