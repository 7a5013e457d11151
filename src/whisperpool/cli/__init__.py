"""The ``whisperpool`` command. The only place that turns errors into exit codes.

Exit codes: 0 success; 1 some inputs failed (the others were still transcribed);
2 bad command line, or a command whose extra is not installed (``serve``, ``wyoming`` and
``load`` need ``whisperpool[server]``, ``ray`` needs ``whisperpool[ray]``); 3 the engine could not start (model missing,
every worker failed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console

from ..errors import ConfigError, MissingDependency
from .codes import EXIT_OK, EXIT_SOME_FAILED, EXIT_START_FAILED, EXIT_USAGE
from .parser import build_parser
from .ray_transcribe import batch_config, ray_transcribe
from .serve import _serve, serve_settings
from .stream import _stream, stream_config
from .transcribe import AUDIO_SUFFIXES, _transcribe, expand_inputs, transcribe_config

if TYPE_CHECKING:
    from ..bench import BenchOptions


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    try:
        if args.command == "transcribe":
            return asyncio.run(_transcribe(args, out, err))
        if args.command == "ray" and args.ray_command == "transcribe":
            return ray_transcribe(args, err)
        if args.command in ("serve", "wyoming"):
            return _serve(args, err)
        if args.command == "stream":
            return asyncio.run(_stream(args, out, err))
        if args.command == "ray" and args.ray_command == "serve":
            from .ray_serve import _ray_serve

            return _ray_serve(args, err)
        if args.command == "load":
            from ..loadtest import LoadOptions, run
            from ..server import require_extra

            require_extra()  # it starts a server, and speaks to it over HTTP

            load = LoadOptions(
                url=args.url,
                requests=args.requests,
                concurrency=args.concurrency,
                chaos_every_s=args.chaos_every,
                workers=args.workers,
                threads=args.threads,
                max_queue=args.max_queue,
                language=args.language,
                limit_s=args.limit,
                output=args.output,
                abuse=args.abuse,
                fake=args.fake,
                probe_s=args.probe_s,
                probe_count=args.probe_count,
                read_timeout_s=args.read_timeout,
                stream_max_sessions=args.stream_max_sessions,
            )
            result = run(load, out)
            good = result["ok"] if load.abuse else result["lost"] == 0
            return EXIT_OK if good else EXIT_SOME_FAILED
        from ..bench import run_bench

        run_bench(args.suite, bench_options(args), out, output=args.output)
        return EXIT_OK
    except (ConfigError, MissingDependency) as exc:
        err.print(f"whisperpool: {exc}", highlight=False, markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("whisperpool: interrupted", highlight=False)
        return 130


def bench_options(args: argparse.Namespace) -> BenchOptions:
    """``whisperpool bench``'s flags as the options its suites are told."""
    from ..bench import BenchOptions

    return BenchOptions(
        language=args.language,
        runs=args.runs,
        cold_runs=args.cold_runs,
        batch=args.batch,
        quiet_s=args.quiet,
        quick=args.quick,
        traces=args.traces,
        files=args.files,
        splits=("held-out", "tune") if args.split == "both" else (args.split,),
        stream_splits=("held-out", "tune") if args.stream_splits == "both" else ("held-out",),
        model=args.model,
        device=args.device,
        compute_type=args.compute_type,
    )


__all__ = [
    "AUDIO_SUFFIXES",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_START_FAILED",
    "EXIT_USAGE",
    "batch_config",
    "bench_options",
    "build_parser",
    "expand_inputs",
    "main",
    "serve_settings",
    "stream_config",
    "transcribe_config",
]
