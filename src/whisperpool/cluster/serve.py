"""The OpenAI-compatible HTTP API on Ray Serve: one deployment, each replica a warm engine.

::

    client -> Ray Serve proxy (every node)                   max_queued_requests: 503 + Retry-After
                 |  picks a replica with a free slot         max_ongoing_requests per replica
                 v
    replica = Whisperpool (a Ray actor)                      autoscaling_config: min..max replicas,
                 FastAPI app of whisperpool.server.app         target_ongoing_requests
                 TranscriptionEngine -> pool_size workers    check_health: a warm worker per model

A replica's constructor warms its engine before it returns, so Ray routes a replica no
request before it is warm; :meth:`Whisperpool.check_health` fails once a served model has
had no warm worker for ``unready_grace_s`` (or at once when its workers all failed), and
Ray replaces the replica. The routes are the server's own (:func:`whisperpool.server.create_app`,
reached through ``serve.ingress``): same formats, SSE, errors, API key and upload limit.

Several models are one routed app: every replica serves every configured model and the
engine routes by the request's ``model`` field, as ``whisperpool serve`` does. One
deployment per model would need a router deployment in front that repeats that routing.

Start it with :func:`run` (``whisperpool ray serve``) or from a Serve config file whose
``import_path`` is ``whisperpool.cluster.serve:app_builder`` (``serve run`` / ``serve deploy``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve
from ray.serve.config import AutoscalingConfig, BackpressureConfig

from ..errors import ConfigError, PoolFailed, PoolNotReady
from ..server import create_app
from ..server.errors import RETRY_AFTER_S
from ..server.settings import DEFAULT_MAX_QUEUE, ServerSettings, build_settings, env_overrides

log = logging.getLogger(__name__)

DEPLOYMENT = "Whisperpool"  # the deployment's name in Ray: a Serve config's `deployments:` overrides use it


@dataclass(frozen=True, kw_only=True, slots=True)
class RayServeSettings:
    """How the server's app runs on Ray Serve; ``server`` is what each replica serves.

    ``server.pool.pool_size`` is the workers of one replica. ``replicas`` fixes the number
    of replicas; ``min_replicas`` and ``max_replicas`` (both or neither) autoscale between
    them instead, aiming at ``target_ongoing_requests`` requests per replica (default: its
    workers, so a replica is added when every worker is busy and requests wait).
    ``max_ongoing_requests`` (default: twice the workers) is how many requests Ray sends a
    replica at once: one decoding on each worker and one waiting for it, so a worker never
    idles between requests while the rest wait at the proxy, free to go to whichever
    replica frees first. Past ``max_queued_requests`` waiting at a proxy, Ray answers 503
    with ``Retry-After``. ``replica_cpus`` (default: the workers) is the CPUs Ray reserves
    for a replica; each worker gets an equal share of them as threads unless
    ``server.pool.threads_per_worker`` says otherwise. A replica is unhealthy once a
    model has had no warm worker for ``unready_grace_s`` (a pool re-warming a crashed
    worker takes seconds), and at once when all its workers failed; Ray checks every
    ``health_check_period_s``. ``host`` and ``port`` are the proxy's (``server.host`` and
    ``server.port`` by default); a replica's in-flight requests get ``server.grace_s``
    at shutdown.
    """

    server: ServerSettings = dataclasses.field(default_factory=ServerSettings)
    replicas: int | None = None  # default: 1, unless min/max replicas are given
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None
    max_ongoing_requests: int | None = None
    max_queued_requests: int = DEFAULT_MAX_QUEUE
    replica_cpus: float | None = None
    unready_grace_s: float = 30.0
    health_check_period_s: float = 5.0
    app_name: str = "whisperpool"
    route_prefix: str = "/"

    def __post_init__(self) -> None:
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ConfigError("RayServeSettings: give both min_replicas and max_replicas, or neither")
        if self.replicas is not None and self.min_replicas is not None:
            raise ConfigError("RayServeSettings: replicas is a fixed count; it cannot go with min/max_replicas")
        for name in ("replicas", "max_replicas", "max_ongoing_requests"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"RayServeSettings.{name} must be an integer >= 1, got {value!r}")
        if self.min_replicas is not None and not (
            isinstance(self.min_replicas, int) and 0 <= self.min_replicas <= self.max_replicas  # type: ignore[operator]
        ):
            raise ConfigError(
                f"RayServeSettings.min_replicas must be 0..max_replicas ({self.max_replicas}), got {self.min_replicas!r}"
            )
        if not isinstance(self.max_queued_requests, int) or self.max_queued_requests < 1:
            raise ConfigError(f"RayServeSettings.max_queued_requests must be >= 1, got {self.max_queued_requests!r}")
        for name in ("target_ongoing_requests", "replica_cpus", "unready_grace_s", "health_check_period_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"RayServeSettings.{name} must be a finite number > 0, got {value!r}")
        if self.server.wyoming_port is not None or not self.server.http:
            raise ConfigError(
                "RayServeSettings: Wyoming is not served on Ray (every replica would bind its port); "
                "run 'whisperpool wyoming' beside it instead"
            )
        if not self.route_prefix.startswith("/"):
            raise ConfigError(f"RayServeSettings.route_prefix must start with '/', got {self.route_prefix!r}")

    @property
    def workers_per_replica(self) -> int:
        return self.server.pool.pool_size

    def replica_server(self) -> ServerSettings:
        """The settings a replica serves: threads per worker from the replica's CPUs, not the
        node's, and no express worker unless asked for (Ray reserves CPUs per worker; a
        short request goes to a replica with a free worker instead)."""
        pool = self.server.pool
        if pool.express_workers is None:
            pool = dataclasses.replace(pool, express_workers=0)
        if pool.threads_per_worker is None:
            processes = self.workers_per_replica + pool.express_size
            cpus = self.replica_cpus or processes
            pool = dataclasses.replace(pool, threads_per_worker=max(1, int(cpus // processes)))
        return dataclasses.replace(self.server, pool=pool)

    def deployment_options(self) -> dict[str, Any]:
        """Ray Serve's options for the deployment, mapped from these settings."""
        workers = self.workers_per_replica
        options: dict[str, Any] = {
            "name": DEPLOYMENT,
            "max_ongoing_requests": self.max_ongoing_requests or 2 * workers,
            "max_queued_requests": self.max_queued_requests,
            "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=RETRY_AFTER_S),
            "ray_actor_options": {"num_cpus": self.replica_cpus or workers + self.replica_server().pool.express_size},
            "health_check_period_s": self.health_check_period_s,
            # in-flight requests get the server's grace, and Ray waits that long before a kill
            "graceful_shutdown_timeout_s": self.server.grace_s + 5.0,
        }
        if self.min_replicas is None:
            options["num_replicas"] = self.replicas or 1
        else:
            options["autoscaling_config"] = AutoscalingConfig(
                min_replicas=self.min_replicas,
                initial_replicas=max(1, self.min_replicas),
                max_replicas=self.max_replicas,
                target_ongoing_requests=self.target_ongoing_requests or workers,
            )
        return options

    def http_options(self) -> dict[str, Any]:
        return {"host": self.server.host, "port": self.server.port}


class Whisperpool:
    """One replica: a warm engine behind the server's FastAPI app.

    Made a Ray Serve ingress deployment below (the app is built per replica, around this
    replica's engine, by ``__serve_build_asgi_app__``); :func:`build_app` sets its options.
    """

    async def __init__(self, settings: ServerSettings, unready_grace_s: float) -> None:
        self._settings = settings
        self._unready_grace_s = unready_grace_s
        self._unready_since: float | None = None
        self._engine = settings.engine()
        # Ray routes nothing to a replica until its constructor returns: warm up first.
        # PoolFailed (every worker failed) fails the constructor, which Ray retries.
        await self._engine.start(wait=True)
        log.info("replica warm: %s", ", ".join(self._engine.served_models))

    def __serve_build_asgi_app__(self) -> Any:
        # the app's lifespan starts the engine again (a no-op: it is started) and closes it,
        # draining for grace_s, when Ray stops the replica
        return create_app(self._settings, engine=self._engine)

    def check_health(self) -> None:
        """Raise while a served model has no warm worker (after a grace while re-warming)."""
        unready = [(name, self._engine.readiness(name)) for name in self._engine.served_models]
        unready = [(name, r) for name, r in unready if not r.ready]
        if not unready:
            self._unready_since = None
            return
        name, readiness = unready[0]
        if readiness.state in ("failed", "unavailable"):
            raise PoolFailed(f"model {name!r} has no worker left ({readiness.state})")
        now = time.monotonic()
        self._unready_since = self._unready_since or now
        if now - self._unready_since > self._unready_grace_s:
            raise PoolNotReady(f"model {name!r} has had no warm worker for {now - self._unready_since:.0f} s")


WhisperpoolDeployment = serve.deployment(serve.ingress()(Whisperpool), name=DEPLOYMENT)


def build_app(settings: RayServeSettings) -> serve.Application:
    """The Serve application: the deployment with the options these settings map to."""
    deployment = WhisperpoolDeployment.options(**settings.deployment_options())
    return deployment.bind(settings.replica_server(), settings.unready_grace_s)


# keys of a config file's ``args`` that are RayServeSettings fields; the rest are the
# server's settings by dotted name, as WHISPERPOOL_* variables fill them
_CLUSTER_KEYS = {f.name for f in dataclasses.fields(RayServeSettings)} - {"server"}


def settings_from_args(args: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> RayServeSettings:
    """Settings from a Serve config file's ``args``: ``WHISPERPOOL_*`` variables, then the args.

    ``{"workers_per_replica": 1, "min_replicas": 1, "max_replicas": 4, "pool.model": "base",
    "decode.language": "en"}``: cluster keys are :class:`RayServeSettings` fields,
    ``workers_per_replica`` is ``pool.pool_size``, anything else a server setting by
    dotted name (``api_key``, ``max_upload_mb``, ``pool.compute_type``, ...).
    """
    values = env_overrides(environ)
    cluster: dict[str, Any] = {}
    for key, value in args.items():
        if key in _CLUSTER_KEYS:
            cluster[key] = value
        elif key == "workers_per_replica":
            values["pool.pool_size"] = value
        else:
            values[key] = value
    return RayServeSettings(server=build_settings(values), **cluster)


def app_builder(args: dict[str, Any]) -> serve.Application:
    """The ``import_path`` of a Serve config file (``deploy/serve-config.yaml``)."""
    return build_app(settings_from_args(args))


def connect(*, num_cpus: float | None = None) -> bool:
    """Join the cluster ``RAY_ADDRESS`` names, or start a local one; True if started here.

    ``num_cpus`` sizes a local cluster (default: this machine's cores).
    """
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)
        return False
    # "local" always starts a new cluster, never an unrelated one found on this machine
    ray.init(
        address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False
    )
    return True


def run(settings: RayServeSettings) -> str:
    """Deploy the app (waiting until every replica is warm) and return its URL.

    Serve's proxy listens on ``settings.http_options()``; on a cluster where Serve already
    runs, its proxy keeps the options it was started with.
    """
    serve.start(http_options=settings.http_options())
    serve.run(build_app(settings), name=settings.app_name, route_prefix=settings.route_prefix)
    host, port = settings.server.host, settings.server.port
    return f"http://{host}:{port}{settings.route_prefix.rstrip('/')}"


def stop(settings: RayServeSettings, *, started_cluster: bool) -> None:
    """Delete the app; shut Serve and Ray down too if this process started the cluster."""
    serve.delete(settings.app_name)
    if started_cluster:
        serve.shutdown()
        ray.shutdown()


__all__ = [
    "DEPLOYMENT",
    "RayServeSettings",
    "Whisperpool",
    "WhisperpoolDeployment",
    "app_builder",
    "build_app",
    "connect",
    "run",
    "settings_from_args",
    "stop",
]
