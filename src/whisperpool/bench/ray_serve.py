"""The HTTP API on Ray Serve against ``whisperpool serve``, on this machine, in one run.

Both are up at once (idle workers cost no CPU) and take turns, so the machine's noise
falls on both: Ray Serve with 2 replicas x 1 worker on a local Ray cluster against
``whisperpool serve --workers 2``, the same threads per worker.

* latency - one 3 s clip at a time, alternating paths; the overhead of a request is its
  wall time minus the worker's inference time (the ``Server-Timing`` header), so the
  model's own run-to-run noise cancels out; the target is the Ray path's p50 overhead
  beyond the plain server's
* throughput - ``2 x batch`` requests of the 3 s clip, 4 in flight, in alternating rounds;
  the target is the Ray path's clips per second over the plain server's

Needs the ``ray`` extra (``pip install 'whisperpool[ray]'``).
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import time
from typing import Any

import httpx
from rich.console import Console

from ..config import available_cores
from .common import CLIPS, Target, header, median, pct, table

CLIP = "fox"  # about 3 s of speech
IN_FLIGHT = 4  # requests at once in the throughput rounds: two per worker
ROUNDS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready in {limit_s:.0f} s")


def _post(client: httpx.Client, data: bytes) -> tuple[float, float]:
    """One request: (wall seconds, the worker's inference seconds)."""
    t = time.perf_counter()
    response = client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", data, "audio/wav")})
    wall = time.perf_counter() - t
    response.raise_for_status()
    timing = dict(item.strip().split(";dur=") for item in response.headers["server-timing"].split(","))
    return wall, float(timing["inference"]) / 1000


def _round(url: str, data: bytes, requests: int) -> float:
    """``requests`` requests, IN_FLIGHT at a time; returns clips per second."""
    clients = [httpx.Client(base_url=url, timeout=300) for _ in range(IN_FLIGHT)]
    try:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
            list(pool.map(lambda i: _post(clients[i % IN_FLIGHT], data), range(requests)))
        return requests / (time.perf_counter() - started)
    finally:
        for client in clients:
            client.close()


def measure(options: Any, log: Console) -> dict[str, Any]:
    from ..cluster import require_extra

    require_extra()
    from ..cluster import serve as cluster_serve
    from ..loadtest import start_server
    from ..server.settings import build_settings

    cores = available_cores()
    threads = max(1, cores // 2)
    out: dict[str, Any] = header()
    out["load_average_before"] = list(os.getloadavg())
    # other work on the machine when the run started (a 1-minute load of half the cores or more)
    out["machine_shared"] = out["load_average_before"][0] >= cores / 2
    out["settings"] = {"clip": CLIP, "threads_per_worker": threads, "in_flight": IN_FLIGHT, "rounds": ROUNDS}
    data = (CLIPS / f"{CLIP}.wav").read_bytes()

    log.print("[dim]starting whisperpool serve (2 workers) and Ray Serve (2 replicas x 1 worker) ...[/dim]")
    server, serve_url = start_server(2, threads, options.language, extra=["--express-workers", "0"])
    started_cluster = cluster_serve.connect(num_cpus=cores)
    values: dict[str, Any] = {"pool.pool_size": 1, "pool.threads_per_worker": threads, "port": _free_port()}
    if options.language:
        values["decode.language"] = options.language
    settings = cluster_serve.RayServeSettings(
        server=build_settings(values), replicas=2, replica_cpus=cores / 2, app_name="bench"
    )
    try:
        t = time.perf_counter()
        ray_url = cluster_serve.run(settings)
        out["ray_deploy_s"] = time.perf_counter() - t
        _wait_ready(serve_url)
        paths = {"serve": serve_url, "ray": ray_url}
        latency: dict[str, dict[str, list[float]]] = {p: {"wall_s": [], "overhead_s": []} for p in paths}
        log.print("[dim]latency: one request at a time, alternating ...[/dim]")
        clients = {p: httpx.Client(base_url=u, timeout=300) for p, u in paths.items()}
        try:
            for i in range(options.runs * 3 + 1):
                order = ("serve", "ray") if i % 2 else ("ray", "serve")
                for p in order:
                    wall, inference = _post(clients[p], data)
                    if i:  # the first pair warms the connections and both paths
                        latency[p]["wall_s"].append(wall)
                        latency[p]["overhead_s"].append(wall - inference)
        finally:
            for client in clients.values():
                client.close()
        out["latency"] = latency
        log.print(f"[dim]throughput: {ROUNDS} rounds of {2 * options.batch} requests per path ...[/dim]")
        throughput: dict[str, list[float]] = {p: [] for p in paths}
        for i in range(ROUNDS):
            for p in ("serve", "ray") if i % 2 == 0 else ("ray", "serve"):
                throughput[p].append(_round(paths[p], data, 2 * options.batch))
        out["throughput_clips_per_s"] = throughput
    finally:
        cluster_serve.stop(settings, started_cluster=started_cluster)
        server.terminate()
        server.wait(timeout=60)
    out["load_average_after"] = list(os.getloadavg())
    return out


def _overhead_ms(r: dict[str, Any]) -> float:
    lat = r["latency"]
    return 1000 * (median(lat["ray"]["overhead_s"]) - median(lat["serve"]["overhead_s"]))


def _throughput_ratio(r: dict[str, Any]) -> float:
    tp = r["throughput_clips_per_s"]
    return median([ray / serve for ray, serve in zip(tp["ray"], tp["serve"], strict=True)])


def targets(r: dict[str, Any]) -> list[Target]:
    return [
        Target("Ray Serve p50 overhead beyond whisperpool serve (3 s clip)", _overhead_ms(r), 15.0, False, "ms"),
        Target("Ray Serve 2 x 1 throughput / whisperpool serve 2 workers", _throughput_ratio(r), 0.9, True),
    ]


def report(r: dict[str, Any], out: Console) -> None:
    t = table("Ray Serve (2 replicas x 1 worker) vs whisperpool serve (2 workers)", ("measure", "serve", "ray"))
    lat, tp = r["latency"], r["throughput_clips_per_s"]
    t.add_row(
        "latency p50, 3 s clip, s", f"{median(lat['serve']['wall_s']):.3f}", f"{median(lat['ray']['wall_s']):.3f}"
    )
    t.add_row(
        "latency p95, 3 s clip, s", f"{pct(lat['serve']['wall_s'], 95):.3f}", f"{pct(lat['ray']['wall_s'], 95):.3f}"
    )
    t.add_row(
        "wall minus inference, p50, ms",
        f"{1000 * median(lat['serve']['overhead_s']):.1f}",
        f"{1000 * median(lat['ray']['overhead_s']):.1f}",
    )
    t.add_row("throughput, clips/s (median round)", f"{median(tp['serve']):.2f}", f"{median(tp['ray']):.2f}")
    out.print(t)
    before, after = r["load_average_before"][0], r["load_average_after"][0]
    shared = "; the machine was shared" if r["machine_shared"] else ""
    out.print(
        f"load average (1 min) before {before:.2f}, after {after:.2f}{shared}; Ray deploy {r['ray_deploy_s']:.1f} s"
    )


__all__ = ["measure", "report", "targets"]
