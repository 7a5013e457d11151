"""``whisperpool ray serve``: the HTTP API on Ray Serve (see :mod:`whisperpool.cluster.serve`).

The server's flags and ``WHISPERPOOL_*`` variables fill each replica's settings, as for
``whisperpool serve``; the flags here say how many replicas, of how many workers.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from rich.console import Console

from ..errors import ModelError
from ..models import resolve_model
from ..server.settings import DEFAULTS
from .codes import EXIT_OK, EXIT_START_FAILED
from .pool_options import add_backend_option
from .serve import serve_settings


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_serve_parser(sub: Any) -> None:
    """The ``serve`` sub-command of ``whisperpool ray``."""
    p = sub.add_parser(
        "serve",
        help="the OpenAI-compatible HTTP API on Ray Serve, each replica a warm pool",
        description="Joins the Ray cluster RAY_ADDRESS names, or starts a local one, and deploys the HTTP API "
        "of 'whisperpool serve' on Ray Serve: each replica holds its own warm workers; Ray routes a replica "
        "traffic once it is warm, replaces one that dies, and scales between --min-replicas and --max-replicas. "
        "WHISPERPOOL_* variables fill the server settings, as for 'serve'. Ctrl-C or SIGTERM deletes the app "
        "(and stops the local cluster if this command started it).",
    )
    count = p.add_mutually_exclusive_group()
    count.add_argument("--replicas", type=_positive_int, default=None, help="a fixed number of replicas (default: 1)")
    count.add_argument(
        "--min-replicas", type=int, default=None, help="autoscale: fewest replicas (with --max-replicas)"
    )
    p.add_argument("--max-replicas", type=_positive_int, default=None, help="autoscale: most replicas")
    p.add_argument(
        "--workers-per-replica",
        dest="workers",
        type=_positive_int,
        default=None,
        help=f"worker processes in each replica (default: {DEFAULTS.pool.pool_size})",
    )
    p.add_argument(
        "--replica-cpus", type=float, default=None, help="CPUs Ray reserves per replica (default: its workers)"
    )
    p.add_argument(
        "--max-queued-requests",
        type=_positive_int,
        default=None,
        help="requests that may wait at a Ray proxy; more get 503 with Retry-After (default: 64)",
    )
    p.add_argument("--host", default=None, help=f"address Ray's proxy binds (default: {DEFAULTS.host}, loopback only)")
    p.add_argument("--port", type=int, default=None, help=f"port of Ray's proxy (default: {DEFAULTS.port})")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1 (default: none)")
    p.add_argument("--model", default=None, help="'base' (packaged), a CTranslate2 folder, or a faster-whisper name")
    add_backend_option(p)
    p.add_argument("--threads", type=_positive_int, default=None, help="threads per worker (default: CPUs / workers)")
    p.add_argument(
        "--compute-type", default=None, help=f"CTranslate2 compute type (default: {DEFAULTS.pool.compute_type})"
    )
    p.add_argument("--language", default=None, help="default language of requests (default: detect)")
    p.add_argument(
        "--extra-model",
        dest="extra_models",
        action="append",
        default=None,
        metavar="NAME=MODEL[:COMPUTE[:WORKERS[:BACKEND]]]",
        help="serve another model configuration too, in every replica (e.g. cpp=base-q8_0::1:whispercpp); "
        "repeat for more",
    )


def ray_serve_settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Any:
    """The :class:`~whisperpool.cluster.serve.RayServeSettings` the flags (and variables) describe."""
    from ..cluster.serve import RayServeSettings

    cluster = {
        name: getattr(args, flag)
        for flag, name in (
            ("replicas", "replicas"),
            ("min_replicas", "min_replicas"),
            ("max_replicas", "max_replicas"),
            ("replica_cpus", "replica_cpus"),
            ("max_queued_requests", "max_queued_requests"),
        )
        if getattr(args, flag) is not None
    }
    return RayServeSettings(server=serve_settings(args, environ), **cluster)


def _ray_serve(args: argparse.Namespace, err: Console) -> int:
    from ..cluster import require_extra

    require_extra()
    from ..cluster import serve as cluster_serve

    settings = ray_serve_settings(args)
    server = settings.server
    try:
        for config in (server.pool, *server.models.values()):
            if config.backend != "fake":  # fail before starting Ray, with the model's own message
                resolve_model(config.model, config.model_cache_dir, config.backend)
    except ModelError as exc:
        err.print(f"whisperpool: cannot start: {exc}", highlight=False, markup=False)
        return EXIT_START_FAILED
    started = cluster_serve.connect()
    stop, serving = threading.Event(), threading.Event()

    def on_signal(*_: Any) -> None:  # only flags, except while deploying: then interrupt the wait
        stop.set()
        if not serving.is_set():
            raise KeyboardInterrupt

    # after connecting: ray.init installs handlers of its own that abort the process on SIGTERM
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    where = "a local Ray cluster" if started else "the Ray cluster at RAY_ADDRESS"
    err.print(
        f"deploying on {where}: {settings.replicas or settings.min_replicas or 1} replica(s) x "
        f"{settings.workers_per_replica} worker(s); warming up ...",
        highlight=False,
    )
    try:
        url = cluster_serve.run(settings)
        serving.set()
        err.print(f"whisperpool serving on {url}/v1 through Ray Serve; Ctrl-C stops", highlight=False)
        stop.wait()
    finally:
        serving.set()  # a signal during the clean-up only sets the flag
        cluster_serve.stop(settings, started_cluster=started)
    err.print("whisperpool: stopped", highlight=False)
    return EXIT_OK
