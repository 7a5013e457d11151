"""The command line: every sub-command, its flags and their help (defaults from the settings)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._version import __version__
from ..server.settings import DEFAULT_WYOMING_PORT, DEFAULTS
from .pool_options import add_backend_option
from .ray_serve import add_serve_parser as add_ray_serve_parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_pool_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pool")
    g.add_argument(
        "--model",
        default=None,
        help="'base' (packaged, offline), a CTranslate2 model folder, or a faster-whisper model name (default: "
        "base); with --url, one of the server's models (default: its default)",
    )
    add_backend_option(g)
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
    add_decode_options(p)


def add_decode_options(p: argparse.ArgumentParser) -> None:
    """The decoding flags (``transcribe``, ``ray transcribe``)."""
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
        help="encoder window: 'auto' sizes it to audio up to 8 s (several times faster), 'full' is always 30 s "
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
    t.add_argument(
        "--retries",
        type=int,
        default=2,
        help="with --url: times a file is sent again when the server could not answer (a lost connection, "
        "502/503/504, a proxy's 500) (default: 2)",
    )
    t.add_argument("--json", action="store_true", help="print one JSON object per file per line")
    t.add_argument("--status", action="store_true", help="print the pool status after the transcripts")
    t.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_pool_options(t)

    ray = sub.add_parser(
        "ray",
        help="the engine on a Ray cluster: 'ray serve' (the HTTP API on Ray Serve), 'ray transcribe' "
        "(batch on Ray Data) (needs whisperpool[ray])",
        description="Joins RAY_ADDRESS or starts a local Ray cluster.",
    )
    ray_sub = ray.add_subparsers(dest="ray_command", metavar="RAY_COMMAND", required=True)
    from .ray_transcribe import add_ray_transcribe  # it reuses this module's option groups

    add_ray_serve_parser(ray_sub)
    add_ray_transcribe(ray_sub)

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
        "--max-batch",
        type=_positive_int,
        default=None,
        help=f"queued short requests a worker may decode as one batch; about 1.3x the throughput under load, but a "
        f"request's text then depends on its batch "
        f"(default: {pool.max_batch})",
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
    add_backend_option(s)
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
    _add_express_workers(s)
    s.add_argument("--max-total-rss-mb", type=float, default=None, help="memory budget of all workers, MiB")
    s.add_argument("--state-file", default=None, help="warm-start record of warm-up timings (JSON)")
    s.add_argument(
        "--extra-model",
        dest="extra_models",
        action="append",
        default=None,
        metavar="NAME=MODEL[:COMPUTE[:WORKERS[:BACKEND]]]",
        help="serve another model configuration too, chosen by the request's model field "
        "(e.g. base-f32=base:float32:1, or cpp=base-q8_0::1:whispercpp for whisper.cpp); repeat for more",
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
    add_backend_option(st)
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
    add_backend_option(wy)
    wy.add_argument("--workers", type=_positive_int, default=None, help=f"worker processes (default: {pool.pool_size})")
    wy.add_argument("--threads", type=_positive_int, default=None, help="threads per worker (default: cores / workers)")
    _add_express_workers(wy)
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
        "that decodes to hours; Realtime and Wyoming floods, malformed events, a 300 MiB Wyoming header, more "
        "sessions than the cap) while normal requests go on; exit code 1 if the server stopped serving or a "
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
    ld.add_argument(
        "--stream-max-sessions",
        type=_positive_int,
        default=4,
        help="--abuse: the started server's --stream-max-sessions; with --url, the server's: the sessions probe "
        "opens --probe-count more (default: 4)",
    )

    b = sub.add_parser(
        "bench",
        help="benchmarks: the warm pool (default), --windows, --streaming, --adaptive, --throughput, --accuracy, "
        "--ray-serve, --ray-batch, --engines",
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
        help="a family of traces (bursts, ramps, steady, sine; streams) on fixed and adaptive pools: held-out "
        "latency and worker-seconds ratios",
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
    suite.add_argument(
        "--ray-serve",
        dest="suite",
        action="store_const",
        const="ray_serve",
        help="Ray Serve 2 replicas x 1 worker vs 'serve' with 2 workers: latency overhead, throughput (ray extra)",
    )
    suite.add_argument(
        "--ray-batch",
        dest="suite",
        action="store_const",
        const="ray_batch",
        help="a folder of clips through 'ray transcribe' vs 'transcribe' on the same cores: throughput, first result",
    )
    suite.add_argument(
        "--engines",
        dest="suite",
        action="store_const",
        const="engines",
        help="faster-whisper vs whisper.cpp (f16, q8_0, q5_0): latency by length, warm-up, throughput, memory, WER",
    )
    b.set_defaults(suite="pool")
    b.add_argument(
        "--quick",
        action="store_true",
        help="--accuracy, --engines: a few clips only; --adaptive: one trace; --ray-batch: 31 files, one round; "
        "for a smoke test",
    )
    b.add_argument(
        "--traces",
        default="held-out",
        help="--adaptive: the traces to replay: held-out (default), tune, all, or trace ids like 6,7",
    )
    b.add_argument(
        "--split",
        choices=("held-out", "tune", "both"),
        default="both",
        help="--accuracy: which half of the dev set to transcribe; --throughput: which long recordings (default: both)",
    )
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
    b.add_argument(
        "--files",
        type=_positive_int,
        default=600,
        help="--ray-batch: files in the folder, the example clips repeated; more spreads the fixed start-up "
        "further, as an archive does (default: 600, about 10 minutes on 2 cores)",
    )
    b.add_argument(
        "--model", default="base", help="--throughput: the model, as 'serve --model' takes it (default: base)"
    )
    b.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="--throughput: where every model of the run decodes; on cuda, with more pool layouts (default: cpu)",
    )
    b.add_argument(
        "--compute-type",
        default=None,
        help="--throughput: CTranslate2 compute type (default: int8 on cpu, float16 on cuda)",
    )
    return parser


def _add_express_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--express-workers",
        type=_non_negative_int,
        default=None,
        help="workers kept for requests that are not a long recording's pieces, beside --workers, so a short "
        "request does not wait behind them (default: 1 when long audio is split, else 0)",
    )


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
