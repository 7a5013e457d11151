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

from ..engine import PoolStatus, WorkerState
from ..results import FALLBACK_REASONS, RETRIED_REASONS

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0, 120.0)


_COUNTERS = (
    ("whisperpool_worker_restarts", "Workers started to replace failed ones", "worker_restarts"),
    ("whisperpool_worker_crashes", "Warm workers that died or hung", "worker_crashes"),
    ("whisperpool_workers_recycled", "Workers retired as planned", "workers_recycled"),
    ("whisperpool_requests_retried", "Requests retried after their worker died", "requests_retried"),
    ("whisperpool_short_window_requests", "Requests answered by the short-audio window", "short_window_requests"),
    ("whisperpool_scale_ups", "Workers started because of load", "scale_ups"),
    ("whisperpool_scale_downs", "Idle workers retired", "scale_downs"),
    ("whisperpool_background_inferences", "Re-warms and health-check inferences", "background_inferences"),
    ("whisperpool_long_requests", "Recordings decoded in pieces", "long_requests"),
    ("whisperpool_pieces", "Pieces of long recordings decoded", "pieces_completed"),
    ("whisperpool_batches", "Batches of requests decoded together", "batches"),
    ("whisperpool_batched_requests", "Requests decoded in a batch", "batched_requests"),
)


class _PoolCollector(Collector):
    """Every pool metric, labelled by the model configuration it belongs to."""

    def __init__(self, statuses: Callable[[], dict[str, PoolStatus]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        statuses = self._statuses()
        for name, doc, attr in _COUNTERS:
            counter = CounterMetricFamily(name, doc, labels=["model"])
            for model, status in statuses.items():
                counter.add_metric([model], getattr(status, attr))
            yield counter
        fallbacks = CounterMetricFamily(
            "whisperpool_window_fallbacks",
            "Short-window decodings the guard sent to the full window",
            labels=["model", "reason"],
        )
        retries = CounterMetricFamily(
            "whisperpool_window_retries",
            "Short-window decodings the guard rejected that a retry on the short window mended",
            labels=["model", "reason"],
        )
        depth = GaugeMetricFamily("whisperpool_queue_depth", "Requests waiting for a worker", labels=["model"])
        by_state = GaugeMetricFamily("whisperpool_workers", "Workers by state", labels=["model", "state"])
        express = GaugeMetricFamily(
            "whisperpool_express_workers",
            "Workers kept for requests that are not a long recording's pieces",
            labels=["model"],
        )
        progress = GaugeMetricFamily("whisperpool_warm_up_progress", "Warm-up progress, 0-100", labels=["model"])
        rate = GaugeMetricFamily("whisperpool_arrival_rate", "Requests per second, moving average", labels=["model"])
        warm_up = GaugeMetricFamily(
            "whisperpool_worker_warm_up_seconds", "Seconds each worker took to warm up", labels=["model", "worker"]
        )
        check = GaugeMetricFamily(
            "whisperpool_worker_check_seconds",
            "Seconds the last re-warm or health-check inference took",
            labels=["model", "worker"],
        )
        ping = GaugeMetricFamily(
            "whisperpool_worker_ping_seconds", "Last health-ping round trip", labels=["model", "worker"]
        )
        for model, status in statuses.items():
            for reason in FALLBACK_REASONS:
                fallbacks.add_metric([model, reason], status.window_fallbacks.get(reason, 0))
            for reason in RETRIED_REASONS:
                retries.add_metric([model, reason], status.window_retries.get(reason, 0))
            depth.add_metric([model], status.queue_depth)
            for state in WorkerState:
                by_state.add_metric([model, state.value], sum(1 for w in status.workers if w.state is state))
            express.add_metric([model], status.express_workers)
            progress.add_metric([model], status.warm_up_progress)
            rate.add_metric([model], status.arrival_rate)
            for w in status.workers:
                if w.warm_up_s is not None:
                    warm_up.add_metric([model, str(w.id)], w.warm_up_s)
                if w.check_ms is not None:
                    check.add_metric([model, str(w.id)], w.check_ms / 1000)
                if w.ping_rtt_ms is not None:
                    ping.add_metric([model, str(w.id)], w.ping_rtt_ms / 1000)
        yield from (fallbacks, retries, depth, by_state, express, progress, rate, warm_up, check, ping)


class Metrics:
    def __init__(self, statuses: Callable[[], dict[str, PoolStatus]]) -> None:
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
        r.register(_PoolCollector(statuses))


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
