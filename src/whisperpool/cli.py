"""The ``whisperpool`` command. The only place that turns errors into exit codes.

Exit codes: 0 success; 1 some inputs failed (the others were still transcribed);
2 bad command line, or a command whose extra is not installed (``serve``, ``wyoming`` and
``load`` need ``whisperpool[server]``); 3 the engine could not start (model missing,
every worker failed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._version import __version__
from .audio import load_audio
from .config import DecodeOptions, PoolConfig
from .engine import PoolStatus, TranscriptionEngine
from .errors import ConfigError, MissingDependency, ModelError, PoolNotReady, WhisperPoolError
from .results import TranscriptionResult
from .server.settings import DEFAULT_WYOMING_PORT, DEFAULTS, ServerSettings, build_settings, env_overrides
from .streaming.realtime import COMPLETED, DELTA, FAILED, PARTIAL

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_START_FAILED = 3


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_pool_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pool")
    g.add_argument(
        "--model",
        default=None,
        help="'base' (packaged, offline), a CTranslate2 model folder, or a faster-whisper model name (default: "
        "base); with --url, one of the server's models (default: its default)",
    )
    g.add_argument(
        "--workers", type=_positive_int, default=2, help="worker processes, each with the model loaded (default: 2)"
    )
    g.add_argument(
        "--threads", type=_positive_int, default=None, help="threads per worker (default: cores / workers, at least 1)"
    )
    g.add_argument(
        "--compute-type",
        default="int8",
        help="CTranslate2 compute type: int8, int8_float32, float32, ... (default: int8)",
    )
    g.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="(default: cpu)")
    g.add_argument(
        "--timeout", type=float, default=300.0, help="seconds a request may take, queue wait included (default: 300)"
    )
    d = p.add_argument_group("decoding")
    d.add_argument(
        "--language", default=None, help="language code such as 'en'; saves detection (~0.4 s a file). Default: detect"
    )
    d.add_argument(
        "--beam-size",
        type=_positive_int,
        default=1,
        help="1 is greedy and fastest; 5 is faster-whisper's default (default: 1)",
    )
    d.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    d.add_argument("--initial-prompt", default=None, help="text that primes vocabulary and style")
    d.add_argument("--word-timestamps", action="store_true", help="add per-word times to segments")
    d.add_argument("--vad-filter", action="store_true", help="skip non-speech with Silero VAD")
    d.add_argument(
        "--window",
        choices=["auto", "full"],
        default=None,
        help="encoder window: 'auto' sizes it to audio up to 24 s (several times faster), 'full' is always 30 s "
        "(default: auto; with --url, the server's)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whisperpool",
        description="Low-latency local speech-to-text on a pool of warm Whisper worker processes.",
    )
    parser.add_argument("--version", action="version", version=f"whisperpool {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug) to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser(
        "transcribe",
        help="transcribe audio files on a warm pool",
        description="Warm a pool, spread the files over its workers, print each transcript in order. "
        "A long file is cut at its silences into pieces that all the workers decode at once. "
        "Any format FFmpeg decodes works (wav, flac, ogg, mp3, m4a, ...). A file that fails is "
        "reported and the others still run; the exit code is 1 if any failed. With --url the files "
        "go to a running server instead, to the model --model names.",
    )
    t.add_argument(
        "files", nargs="+", metavar="FILE", help="audio files, or folders of them (their audio files, sorted)"
    )
    t.add_argument(
        "--url", default=None, help="a running whisperpool server, e.g. http://127.0.0.1:8000 (default: a local pool)"
    )
    t.add_argument("--api-key", default=None, help="with --url: the server's API key")
    t.add_argument("--json", action="store_true", help="print one JSON object per file per line")
    t.add_argument("--status", action="store_true", help="print the pool status after the transcripts")
    t.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_pool_options(t)

    pool = DEFAULTS.pool  # the server's defaults, from the one table
    s = sub.add_parser(
        "serve",
        help="run the OpenAI-compatible HTTP server on a warm pool",
        description="Binds at once and warms the pool in the background. Every option can also come from "
        "a WHISPERPOOL_* environment variable (WHISPERPOOL_PORT, WHISPERPOOL_WORKERS, WHISPERPOOL_API_KEY, ...); "
        "a flag wins over the variable. SIGTERM or SIGINT lets in-flight requests finish within --grace seconds.",
    )
    s.add_argument("--host", default=None, help=f"address to bind (default: {DEFAULTS.host}, loopback only)")
    s.add_argument("--port", type=int, default=None, help=f"port (default: {DEFAULTS.port})")
    s.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1 (default: none)")
    s.add_argument(
        "--max-upload-mb",
        type=float,
        default=None,
        help=f"largest upload accepted (default: {DEFAULTS.max_upload_mb:g})",
    )
    s.add_argument(
        "--max-queue", type=int, default=None, help=f"requests that may wait; more get 503 (default: {pool.max_queue})"
    )
    s.add_argument(
        "--max-audio-s",
        type=float,
        default=None,
        help=f"longest audio a request may decode to, in seconds; longer is refused with 400 "
        f"(default: {pool.max_audio_s:g})",
    )
    s.add_argument(
        "--grace",
        type=float,
        default=None,
        help=f"seconds in-flight requests get at shutdown (default: {DEFAULTS.grace_s:g})",
    )
    s.add_argument(
        "--read-timeout",
        type=float,
        default=None,
        help=f"seconds a client gets to send its request headers, and again its body; past it 408 "
        f"(default: {DEFAULTS.read_timeout_s:g})",
    )
    s.add_argument(
        "--max-connections",
        type=_positive_int,
        default=None,
        help=f"open connections at once; more are answered 503 (default: {DEFAULTS.max_connections})",
    )
    s.add_argument(
        "--max-uploads",
        type=_positive_int,
        default=None,
        help=f"uploads received or decoded at once, so disk holds at most this times --max-upload-mb; "
        f"more get 503 (default: {DEFAULTS.max_uploads})",
    )
    s.add_argument(
        "--metrics-auth",
        action="store_true",
        default=None,
        help="require the API key on /metrics too (default: /metrics is open, for key-less scrapers)",
    )
    s.add_argument("--model", default=None, help="'base' (packaged), a CTranslate2 folder, or a faster-whisper name")
    s.add_argument("--workers", type=_positive_int, default=None, help=f"worker processes (default: {pool.pool_size})")
    s.add_argument("--threads", type=_positive_int, default=None, help="threads per worker (default: cores / workers)")
    s.add_argument("--compute-type", default=None, help=f"CTranslate2 compute type (default: {pool.compute_type})")
    s.add_argument("--device", default=None, choices=["cpu", "cuda", "auto"], help=f"(default: {pool.device})")
    s.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds a request may take, queue included (default: {pool.request_timeout_s:g})",
    )
    s.add_argument("--language", default=None, help="default language of requests (default: detect)")
    s.add_argument(
        "--window", default=None, choices=["auto", "full"], help="encoder window of requests (default: auto)"
    )
    s.add_argument(
        "--wyoming-port", type=int, default=None, help="also serve the Wyoming protocol on this TCP port (e.g. 10300)"
    )
    s.add_argument(
        "--wyoming-host",
        default=None,
        help=f"address Wyoming binds, whatever --host is (default: {DEFAULTS.wyoming_host}); Wyoming has no "
        "authentication: see --wyoming-insecure",
    )
    _add_stream_limits(s)
    s.add_argument("--min-workers", type=_positive_int, default=None, help="adaptive sizing: fewest workers")
    s.add_argument("--max-workers", type=_positive_int, default=None, help="adaptive sizing: most workers")
    s.add_argument("--max-total-rss-mb", type=float, default=None, help="memory budget of all workers, MiB")
    s.add_argument("--state-file", default=None, help="warm-start record of warm-up timings (JSON)")
    s.add_argument(
        "--extra-model",
        dest="extra_models",
        action="append",
        default=None,
        metavar="NAME=MODEL[:COMPUTE[:WORKERS]]",
        help="serve another model configuration too, chosen by the request's model field "
        "(e.g. base-f32=base:float32:1); repeat for more",
    )

    st = sub.add_parser(
        "stream",
        help="play a file into live transcription at real-time pace, showing partial and final text",
        description="Plays FILE in 100 ms chunks at real-time pace (--pace to change) into a streaming session: "
        "on a local warm pool, or with --url to a running server over OpenAI's Realtime protocol. Partial text "
        "updates in place; each utterance's final line is printed with its times once committed.",
    )
    st.add_argument("file", metavar="FILE", help="an audio file")
    st.add_argument("--url", default=None, help="a whisperpool server, e.g. ws://127.0.0.1:8000 (default: local pool)")
    st.add_argument("--realtime", action="store_true", help="speak the Realtime protocol (implied by --url)")
    st.add_argument("--api-key", default=None, help="the server's API key")
    st.add_argument("--pace", type=float, default=1.0, help="times real time (default: 1)")
    st.add_argument("--language", default=None, help="language code (default: detect)")
    st.add_argument(
        "--model", default=None, help="local pool model (default: base); with --url, one of the server's models"
    )
    st.add_argument("--workers", type=_positive_int, default=2, help="local pool workers (default: 2)")
    st.add_argument("--threads", type=_positive_int, default=None, help="local pool threads per worker")
    st.add_argument("--json", action="store_true", help="print every event as a JSON line instead")

    wy = sub.add_parser(
        "wyoming",
        help="serve only the Wyoming protocol (Home Assistant) on a warm pool",
        description=f"Serves Wyoming speech-to-text on TCP (default {DEFAULTS.host}:{DEFAULT_WYOMING_PORT}) "
        "with transcript streaming. "
        "Takes the serve command's pool options and WHISPERPOOL_* variables.",
    )
    wy.add_argument(
        "--host",
        dest="wyoming_host",
        default=None,
        help=f"address to bind (default: {DEFAULTS.wyoming_host}, loopback only; also WHISPERPOOL_WYOMING_HOST)",
    )
    wy.add_argument(
        "--port",
        dest="wyoming_port",
        type=int,
        default=DEFAULT_WYOMING_PORT,
        help=f"TCP port (default: {DEFAULT_WYOMING_PORT})",
    )
    for flag in ("model", "compute_type", "device", "language"):
        wy.add_argument(f"--{flag.replace('_', '-')}", default=None)
    wy.add_argument("--workers", type=_positive_int, default=None, help=f"worker processes (default: {pool.pool_size})")
    wy.add_argument("--threads", type=_positive_int, default=None, help="threads per worker (default: cores / workers)")
    _add_stream_limits(wy, origins=False)

    ld = sub.add_parser(
        "load",
        help="a bounded load (and chaos) run against a server on loopback",
        description="Starts a server on a free 127.0.0.1 port (or uses --url, loopback only), sends a fixed "
        "number of requests mixing 3 s and 30 s clips, and reports accepted, rejected and lost requests "
        "(lost must be 0) and latency percentiles. Exit code 1 if any request was lost.",
    )
    ld.add_argument("--url", default=None, help="a running server on loopback (default: start one)")
    ld.add_argument("--requests", type=_positive_int, default=300, help="requests to send (default: 300)")
    ld.add_argument("--concurrency", type=_positive_int, default=16, help="requests in flight (default: 16)")
    ld.add_argument("--chaos-every", type=float, default=None, help="SIGKILL a random worker every S seconds")
    ld.add_argument("--workers", type=_positive_int, default=2, help="workers of the started server (default: 2)")
    ld.add_argument("--threads", type=_positive_int, default=None, help="threads per worker of the started server")
    ld.add_argument(
        "--max-queue",
        type=int,
        default=pool.max_queue,
        help=f"queue limit of the started server (default: {pool.max_queue})",
    )
    ld.add_argument("--language", default="en", help="language of the started server (default: en)")
    ld.add_argument("--limit", type=float, default=1800.0, help="stop after this many seconds (default: 1800)")
    ld.add_argument("--output", type=Path, default=None, help="write the result as JSON here")
    ld.add_argument(
        "--abuse",
        action="store_true",
        help="replay the attack probes (bad fields, slow and abandoned uploads, connection floods, a tiny file "
        "that decodes to hours) while normal requests go on; exit code 1 if the server stopped serving or a "
        "probe got an unexpected answer",
    )
    ld.add_argument("--fake", action="store_true", help="start the server on the fake backend (no model; for tests)")
    ld.add_argument("--probe-s", type=float, default=5.0, help="--abuse: seconds each probe runs at least (default: 5)")
    ld.add_argument(
        "--probe-count", type=_positive_int, default=8, help="--abuse: requests or connections a probe (default: 8)"
    )
    ld.add_argument(
        "--read-timeout",
        type=float,
        default=2.0,
        help="--abuse: the started server's --read-timeout; with --url, the server's, to bound the waits (default: 2)",
    )

    b = sub.add_parser(
        "bench",
        help="benchmarks: the warm pool (default), --windows, --streaming, --adaptive, --throughput, --accuracy",
        description=(
            "Runs a benchmark suite on the packaged model and the example clips; prints tables and writes JSON. "
            "Default suite: cold, warm and direct latency, start-up, throughput, memory, HTTP overhead."
        ),
    )
    suite = b.add_mutually_exclusive_group()
    suite.add_argument(
        "--windows",
        dest="suite",
        action="store_const",
        const="windows",
        help="the short-audio encoder window vs the full 30 s window, by clip length: latency and WER",
    )
    suite.add_argument(
        "--streaming",
        dest="suite",
        action="store_const",
        const="streaming",
        help="live streams at real-time pace: final latency, first partial, WER vs offline, concurrent streams",
    )
    suite.add_argument(
        "--adaptive",
        dest="suite",
        action="store_const",
        const="adaptive",
        help="a bursty trace on fixed and adaptive pools (latency, worker-seconds); re-warm after quiet",
    )
    suite.add_argument(
        "--throughput",
        dest="suite",
        action="store_const",
        const="throughput",
        help="long recordings in pieces on all workers vs faster-whisper sequential and batched; fairness",
    )
    suite.add_argument(
        "--accuracy",
        dest="suite",
        action="store_const",
        const="accuracy",
        help="WER on the dev set (voices, lengths, noise, languages): auto vs full, stream finals vs offline",
    )
    b.set_defaults(suite="pool")
    b.add_argument("--quick", action="store_true", help="--accuracy: a few clips only, for a smoke test")
    b.add_argument(
        "--stream-splits",
        choices=("held-out", "both"),
        default="held-out",
        help="--accuracy: which half of the dev set to stream, besides transcribing all (default: held-out)",
    )
    b.add_argument(
        "--quiet", type=float, default=120.0, help="--adaptive: seconds of quiet before the re-warm test (default: 120)"
    )
    b.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON file to write (default: benchmarks/results/SUITE.json)",
    )
    b.add_argument("--runs", type=_positive_int, default=7, help="timed runs per steady-state measure (default: 7)")
    b.add_argument("--cold-runs", type=_positive_int, default=3, help="new processes for the cold measure (default: 3)")
    b.add_argument("--batch", type=_positive_int, default=8, help="clips in the throughput batch (default: 8)")
    b.add_argument("--language", default="en", help="decoding language (default: en)")
    return parser


def stream_config(args: argparse.Namespace) -> PoolConfig:
    """The local pool of ``stream`` (without ``--url``)."""
    return PoolConfig(
        pool_size=args.workers,
        model=args.model or "base",
        threads_per_worker=args.threads,
        decode=DecodeOptions(language=args.language),
    )


def transcribe_config(args: argparse.Namespace) -> PoolConfig:
    """The local pool of ``transcribe`` (without ``--url``)."""
    decode = DecodeOptions(
        language=args.language,
        task=args.task,
        beam_size=args.beam_size,
        initial_prompt=args.initial_prompt,
        word_timestamps=args.word_timestamps,
        vad_filter=args.vad_filter,
        window=args.window or "auto",
    )
    return PoolConfig(
        pool_size=args.workers,
        model=args.model or "base",
        device=args.device,
        compute_type=args.compute_type,
        threads_per_worker=args.threads,
        request_timeout_s=args.timeout,
        decode=decode,
    )


def _result_json(path: str, result: TranscriptionResult) -> dict[str, Any]:
    data = result.to_dict()
    return {
        "file": path,
        "text": data["text"],
        "language": data["language"],
        "duration": data["duration"],
        "segments": data["segments"],
        "worker_id": data["worker_id"],
        "timings": data["timings"],
    }


def _status_table(status: PoolStatus) -> Table:
    table = Table(title="pool status", show_header=True)
    for column in ("worker", "pid", "state", "load s", "warm-up s", "served", "error"):
        table.add_column(column)
    for w in status.workers:
        table.add_row(
            str(w.id),
            str(w.pid),
            str(w.state),
            f"{w.load_s:.2f}" if w.load_s is not None else "-",
            f"{w.warm_up_s:.2f}" if w.warm_up_s is not None else "-",
            str(w.requests_served),
            w.error or "",
        )
    p50 = f"{status.latency_p50_s:.3f}" if status.latency_p50_s is not None else "-"
    p95 = f"{status.latency_p95_s:.3f}" if status.latency_p95_s is not None else "-"
    table.caption = (
        f"total {status.total_workers}, warm {status.warm_workers}, busy {status.busy_workers}, "
        f"failed {status.failed_workers}; completed {status.requests_completed}, "
        f"failed {status.requests_failed}; latency p50 {p50} s, p95 {p95} s"
    )
    return table


def _print_outcome(
    args: argparse.Namespace,
    path: str,
    outcome: dict[str, Any] | WhisperPoolError,
    where: str,
    out: Console,
    err: Console,
) -> None:
    """One file's transcript (``_result_json``'s shape) or error, as text or a JSON line."""
    if isinstance(outcome, WhisperPoolError):
        if args.json:
            error = {"type": type(outcome).__name__, "message": str(outcome)}
            print(json.dumps({"file": path, "error": error}, ensure_ascii=False), flush=True)
        else:
            err.print(f"[red]error: {outcome}[/red]", highlight=False)
    elif args.json:
        print(json.dumps(outcome, ensure_ascii=False), flush=True)
    else:
        out.print(f"[bold]{path}[/bold] ({outcome['duration']:.1f} s, {outcome['language']}, {where})", highlight=False)
        out.print(f"  {outcome['text']}", highlight=False, markup=False)


async def _transcribe_remote(args: argparse.Namespace, out: Console, err: Console) -> int:
    from .remote import RemoteEngine

    async with RemoteEngine(args.url, model=args.model, api_key=args.api_key) as remote:
        limit = asyncio.Semaphore(4)  # files in flight: the server queues the rest anyway

        async def one(path: str) -> dict[str, Any] | WhisperPoolError:
            async with limit:
                try:
                    body = await remote.transcribe(
                        path,
                        language=args.language,
                        task=args.task,
                        prompt=args.initial_prompt,
                        word_timestamps=args.word_timestamps,
                        window=args.window,
                    )
                except WhisperPoolError as exc:
                    return exc
            keys = ("text", "language", "duration", "segments")
            return {"file": path, **{k: body.get(k) for k in keys}, "model": args.model}

        tasks = [asyncio.create_task(one(path)) for path in args.files]
        outcomes = []
        for path, task in zip(args.files, tasks, strict=True):
            outcomes.append(await task)
            _print_outcome(args, path, outcomes[-1], remote.url, out, err)
    failed = [o for o in outcomes if isinstance(o, WhisperPoolError)]
    if failed and len(failed) == len(outcomes) and all(isinstance(o, PoolNotReady) for o in failed):
        return EXIT_START_FAILED  # nothing reached a working server
    return EXIT_SOME_FAILED if failed else EXIT_OK


AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".opus", ".oga", ".m4a", ".aac", ".webm", ".mp4", ".wma", ".aiff", ".aif"}
)


def expand_inputs(paths: list[str]) -> list[str]:
    """Files as given; a folder becomes the audio files in it (by suffix, sorted, recursively)."""
    files = []
    for path in paths:
        folder = Path(path)
        if folder.is_dir():
            files += sorted(str(f) for f in folder.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
        else:
            files.append(path)
    return files


async def _transcribe(args: argparse.Namespace, out: Console, err: Console) -> int:
    args.files = expand_inputs(args.files)
    if not args.files:
        err.print("[red]whisperpool: no audio files found in the folders given[/red]", highlight=False)
        return EXIT_USAGE
    if args.url:
        return await _transcribe_remote(args, out, err)
    engine = TranscriptionEngine(transcribe_config(args))
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=args.no_progress,
        transient=False,
    )
    warm_task = progress.add_task("warming workers", total=100)
    files_task = progress.add_task("files", total=len(args.files))
    engine.on("worker_state_changed", lambda _e: progress.update(warm_task, completed=engine.status().warm_up_progress))
    failures = 0
    with progress:
        try:
            await engine.start()
        except (ModelError, PoolNotReady) as exc:
            progress.stop()
            err.print(f"[red]whisperpool: cannot start: {exc}[/red]", highlight=False)
            await engine.close()
            return EXIT_START_FAILED
        progress.update(warm_task, completed=100)
        limit = asyncio.Semaphore(engine.config.pool_size * 2)  # bounds decoded audio held in memory

        async def one(path: str) -> TranscriptionResult | WhisperPoolError:
            pieces_task = None

            def on_progress(done: int, total: int) -> None:  # a long file: a bar of its own
                nonlocal pieces_task
                if pieces_task is None and total > 1:
                    pieces_task = progress.add_task(f"  {Path(path).name} (pieces)", total=total)
                if pieces_task is not None:
                    progress.update(pieces_task, completed=done)

            async with limit:
                try:
                    return await engine.transcribe(path, on_progress=on_progress)
                except WhisperPoolError as exc:
                    return exc
                finally:
                    progress.advance(files_task)

        try:
            tasks = [asyncio.create_task(one(path)) for path in args.files]
            for path, task in zip(args.files, tasks, strict=True):
                outcome = await task
                failures += isinstance(outcome, WhisperPoolError)
                if isinstance(outcome, TranscriptionResult):
                    where = f"worker {outcome.worker_id}, {outcome.timings.total_s:.2f} s"
                    if outcome.pieces > 1:
                        where = f"{outcome.pieces} pieces on the workers, {outcome.timings.total_s:.2f} s"
                    outcome = _result_json(path, outcome)
                else:
                    where = ""
                _print_outcome(args, path, outcome, where, out, err)
            status = engine.status()
        finally:
            await engine.close()
    if args.status:
        out.print(_status_table(status))
    return EXIT_SOME_FAILED if failures else EXIT_OK


def _add_stream_limits(parser: argparse.ArgumentParser, *, origins: bool = True) -> None:
    """The live streams' limits (Realtime and Wyoming), defaults from the one table."""
    limits = DEFAULTS.streams
    parser.add_argument(
        "--wyoming-insecure",
        action="store_true",
        default=None,
        help="allow Wyoming on a non-loopback address although an API key is set (Wyoming has no "
        "authentication; prefer an SSH tunnel or a TLS proxy in front)",
    )
    for flag, kind, default, text in (
        ("--stream-max-sessions", int, limits.max_sessions, "live streams at once, Realtime and Wyoming together"),
        ("--stream-max-sessions-per-client", int, limits.max_sessions_per_client, "live streams from one address"),
        ("--stream-idle-timeout-s", float, limits.idle_timeout_s, "close a stream silent this many seconds"),
        ("--stream-max-audio-rate", float, limits.max_audio_rate, "audio a stream may send, times real time"),
        ("--stream-audio-burst-s", float, limits.audio_burst_s, "seconds of audio a stream may send at once"),
        ("--stream-max-buffered-s", float, limits.max_buffered_s, "seconds of untranscribed audio a stream holds"),
    ):
        parser.add_argument(flag, type=kind, default=None, help=f"{text} (default: {default:g})")
    if origins:
        parser.add_argument(
            "--allowed-origin",
            dest="allowed_origins",
            action="append",
            default=None,
            metavar="ORIGIN",
            help="a browser origin allowed to open the Realtime WebSocket (e.g. https://app.example); repeat for "
            "more, '*' for any (default: none; clients that send no Origin header are not browsers and allowed)",
        )


_SERVE_FLAGS = {
    "host": "host",
    "port": "port",
    "api_key": "api_key",
    "max_upload_mb": "max_upload_mb",
    "grace": "grace_s",
    "read_timeout": "read_timeout_s",
    "max_connections": "max_connections",
    "max_uploads": "max_uploads",
    "metrics_auth": "metrics_auth",
    "max_queue": "pool.max_queue",
    "max_audio_s": "pool.max_audio_s",
    "model": "pool.model",
    "workers": "pool.pool_size",
    "threads": "pool.threads_per_worker",
    "compute_type": "pool.compute_type",
    "device": "pool.device",
    "timeout": "pool.request_timeout_s",
    "language": "decode.language",
    "window": "decode.window",
    "wyoming_port": "wyoming_port",
    "wyoming_host": "wyoming_host",
    "wyoming_insecure": "wyoming_insecure",
    "stream_max_sessions": "streams.max_sessions",
    "stream_max_sessions_per_client": "streams.max_sessions_per_client",
    "stream_idle_timeout_s": "streams.idle_timeout_s",
    "stream_max_audio_rate": "streams.max_audio_rate",
    "stream_audio_burst_s": "streams.audio_burst_s",
    "stream_max_buffered_s": "streams.max_buffered_s",
    "allowed_origins": "streams.allowed_origins",
    "min_workers": "pool.min_workers",
    "max_workers": "pool.max_workers",
    "max_total_rss_mb": "pool.max_total_rss_mb",
    "state_file": "pool.state_file",
    "extra_models": "extra_models",
}


async def _stream(args: argparse.Namespace, out: Console, err: Console) -> int:
    from .streaming.client import play_local, play_realtime

    try:
        audio = await asyncio.to_thread(load_audio, args.file)
    except WhisperPoolError as exc:
        err.print(f"whisperpool: {exc}", highlight=False, markup=False)
        return EXIT_USAGE
    if args.pace <= 0:
        err.print("whisperpool: --pace must be > 0", highlight=False)
        return EXIT_USAGE
    live = out.is_terminal and not args.json

    async def show(events) -> None:
        """Realtime server events, from a server or the local player (see whisperpool.streaming.realtime)."""
        committed = ""  # the current item's deltas
        async for t, event in events:
            kind = event["type"]
            if args.json:
                out.print(json.dumps({"t": round(t, 3), **event}), highlight=False, markup=False, soft_wrap=True)
                continue
            if kind in (DELTA, PARTIAL):
                if kind == DELTA:
                    committed += event["delta"]
                # whisperpool's local "partial" adds the words not yet committed
                shown = event["text"] if kind == PARTIAL else committed
                if live:
                    out.file.write("\r\x1b[2K" + shown[-(out.width - 1) :])
                    out.file.flush()
            elif kind == COMPLETED:
                if live:
                    out.file.write("\r\x1b[2K")
                times = f"[{event['start_s']:6.2f} -> {event['end_s']:6.2f}] " if "start_s" in event else ""
                out.print(f"{times}{event['transcript']}  [dim](final at {t:.2f} s)[/dim]", highlight=False)
                committed = ""
            elif kind in ("error", FAILED):
                err.print(f"error: {event['error'].get('message')}", highlight=False, markup=False)

    if args.url or args.realtime:
        url = args.url or "ws://127.0.0.1:8000"
        await show(
            play_realtime(url, audio, pace=args.pace, language=args.language, model=args.model, api_key=args.api_key)
        )
        return EXIT_OK
    async with TranscriptionEngine(stream_config(args)) as engine:
        await show(play_local(engine.stream(), audio, pace=args.pace))
    return EXIT_OK


def serve_settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> ServerSettings:
    """``serve``/``wyoming`` settings: ``WHISPERPOOL_*`` variables, then the flags given (a flag wins)."""
    values = env_overrides(environ)
    values.update(
        {target: getattr(args, flag) for flag, target in _SERVE_FLAGS.items() if getattr(args, flag, None) is not None}
    )
    if args.command == "wyoming":
        values["http"] = False
    return build_settings(values)


def _serve(args: argparse.Namespace, err: Console) -> int:
    from .server import require_extra, serve, serve_wyoming

    require_extra()
    settings = serve_settings(args)
    try:
        started = serve(settings, console=err) if settings.http else serve_wyoming(settings, console=err)
        if not started:
            err.print("whisperpool: the server could not start (see above)", highlight=False)
            return EXIT_START_FAILED
    except ModelError as exc:
        err.print(f"whisperpool: cannot start: {exc}", highlight=False, markup=False)
        return EXIT_START_FAILED
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down gracefully
        err.print("whisperpool: stopped", highlight=False)
        return 130
    return EXIT_OK


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
        if args.command in ("serve", "wyoming"):
            return _serve(args, err)
        if args.command == "stream":
            return asyncio.run(_stream(args, out, err))
        if args.command == "load":
            from .loadtest import LoadOptions, run
            from .server import require_extra

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
            )
            result = run(load, out)
            good = result["ok"] if load.abuse else result["lost"] == 0
            return EXIT_OK if good else EXIT_SOME_FAILED
        from .bench import BenchOptions, run_bench

        bench = BenchOptions(
            language=args.language,
            runs=args.runs,
            cold_runs=args.cold_runs,
            batch=args.batch,
            quiet_s=args.quiet,
            quick=args.quick,
            stream_splits=("held-out", "tune") if args.stream_splits == "both" else ("held-out",),
        )
        run_bench(args.suite, bench, out, output=args.output)
        return EXIT_OK
    except (ConfigError, MissingDependency) as exc:
        err.print(f"whisperpool: {exc}", highlight=False, markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("whisperpool: interrupted", highlight=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
