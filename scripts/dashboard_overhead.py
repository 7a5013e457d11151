"""What the dashboard's feed costs a request: p50 latency with 0 and with 5 open feeds.

Starts ``whisperpool serve`` (fake backend by default, so the server's own overhead is
not hidden behind a model; ``--real`` for the packaged model) on a free loopback port,
then alternates rounds of sequential short requests with no feed open and with five
feeds open (each read by its own ``curl`` process, as five dashboards would), and prints the p50
of each condition and their ratio as JSON. Usage::

    .venv/bin/python scripts/dashboard_overhead.py [--requests 40] [--rounds 4] [--real]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import time
import wave

import httpx
import numpy as np

from whisperpool.loadtest import start_server


def wav_bytes(seconds: float = 1.0) -> bytes:
    audio = (np.sin(np.arange(int(16000 * seconds)) / 8) * 3000).astype(np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(audio.tobytes())
    return buf.getvalue()


def open_feeds(url: str, n: int) -> list[subprocess.Popen]:
    """``n`` feeds, each read by its own curl process (so the readers cost this process nothing)."""
    cmd = ["curl", "-sfN", f"{url}/v1/dashboard/events", "-o", os.devnull]
    return [subprocess.Popen(cmd) for _ in range(n)]


def round_of_requests(client: httpx.Client, data: bytes, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        r = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", data)}, data={"language": "en"})
        r.raise_for_status()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each condition, alternating")
    parser.add_argument("--feeds", type=int, default=5)
    parser.add_argument("--real", action="store_true", help="the packaged model instead of the fake backend")
    args = parser.parse_args()
    proc, url = start_server(2, 1, "en", fake=not args.real)
    data = wav_bytes()
    samples: dict[int, list[float]] = {0: [], args.feeds: []}
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if client.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not become ready")
                time.sleep(0.2)
            round_of_requests(client, data, 10)  # warm the connection and the workers
            for _ in range(args.rounds):
                samples[0] += round_of_requests(client, data, args.requests)
                feeds = open_feeds(url, args.feeds)
                time.sleep(1.5)  # every feed has its snapshot and a status or two
                assert all(f.poll() is None for f in feeds), "a feed was refused"
                samples[args.feeds] += round_of_requests(client, data, args.requests)
                for f in feeds:
                    f.terminate()
                    f.wait(5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    p50 = {n: statistics.median(v) * 1000 for n, v in samples.items()}
    print(
        json.dumps(
            {
                "backend": "real" if args.real else "fake",
                "requests_each": len(samples[0]),
                "p50_ms_0_feeds": round(p50[0], 2),
                f"p50_ms_{args.feeds}_feeds": round(p50[args.feeds], 2),
                "ratio": round(p50[args.feeds] / p50[0], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
