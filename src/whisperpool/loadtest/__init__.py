"""``whisperpool load``: a bounded load (and chaos) run against a server on loopback.

It starts its own server on a free 127.0.0.1 port (or uses ``--url``, which must be a
loopback address), sends a fixed number of requests at a fixed concurrency with a mix of
short and long clips, and counts every request into exactly one bucket:

* accepted - answered 200 with a transcript;
* rejected - answered with a clear error (503 queue full, 504, 500 with its message);
* lost     - no answer at all (connection dropped, client timeout). Must be 0.

With ``--chaos-every S`` it SIGKILLs a random worker of that server every S seconds
during the run. Every loop is bounded in count and time; the run stops by itself.

With ``--abuse`` it replays the attacks of issue 13 instead (:func:`run_abuse`): it
measures a normal short request at idle, then runs each probe for a bounded time while a
trickle of normal requests goes on, and reports what each probe got, the normal
requests' p95 during it against idle, and the server's memory. ``--fake`` starts the
server on the fake backend (no model; for the test that keeps this working).

From Python: ``run(LoadOptions(requests=30), Console())`` returns the result as a dict
(``result["lost"]`` must be 0); the CLI builds the :class:`LoadOptions` from its flags.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from .abuse import EXPECTED, _raw_answer, report_abuse, run_abuse
from .load import report, run_load
from .options import LOOPBACK, LoadOptions
from .server import clips, free_port, start_server


def run(options: LoadOptions, out: Console) -> dict[str, Any]:
    """Run the load (or with ``options.abuse`` the probes), print its table to ``out``,
    write ``options.output``; return the result."""
    server = None
    url = options.url
    wyoming_port = None  # the Wyoming probes run only against a server started here
    if url is None:
        extra = []
        if options.abuse:
            wyoming_port = free_port()
            extra = [
                "--read-timeout", str(options.read_timeout_s), "--max-connections", str(options.max_connections),
                "--max-uploads", str(options.max_uploads), "--max-audio-s", str(options.max_audio_s),
                "--stream-max-sessions", str(options.stream_max_sessions),
                "--stream-max-buffered-s", str(options.stream_max_buffered_s), "--wyoming-port", str(wyoming_port),
            ]  # fmt: skip
        server, url = start_server(
            options.workers, options.threads, options.language, options.max_queue, fake=options.fake, extra=extra
        )
    try:
        if options.abuse:
            pid = server.pid if server is not None else None
            result = asyncio.run(run_abuse(url, options, pid, wyoming_port))
        else:
            result = asyncio.run(
                run_load(url, options.requests, options.concurrency, options.chaos_every_s, options.limit_s)
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=120)
    (report_abuse if options.abuse else report)(result, out)
    if options.output is not None:
        output = Path(options.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
    return result


__all__ = [
    "EXPECTED",
    "_raw_answer",
    "report_abuse",
    "LOOPBACK",
    "LoadOptions",
    "clips",
    "free_port",
    "report",
    "run",
    "run_abuse",
    "start_server",
]
