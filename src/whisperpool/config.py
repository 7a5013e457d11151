"""Frozen configuration: the pool's settings and the per-request decoding options.

Both are keyword-only frozen dataclasses, validated on construction with a message that
names the field. Both are plain data, so they cross to worker processes as they are.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .errors import ConfigError
from .languages import WHISPER_LANGUAGES
from .testing import FakeBehavior

Task = Literal["transcribe", "translate"]
Device = Literal["cpu", "cuda", "auto"]
BackendName = Literal["faster-whisper", "whispercpp", "fake"]
Window = Literal["auto", "full", "short"]
Sampling = Literal["deterministic", "random"]

GPU_PIECE_BATCH = 8  # the default PoolConfig.piece_batch on device="cuda"


def _fail(owner: str, name: str, message: str, value: Any) -> None:
    raise ConfigError(f"{owner}.{name} {message}, got {value!r}")


def _check_literal(owner: str, name: str, value: Any, kind: Any) -> None:
    allowed = get_args(kind)
    if value not in allowed:
        _fail(owner, name, f"must be one of {', '.join(map(repr, allowed))}", value)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, kw_only=True, slots=True)
class DecodeOptions:
    """How one request is decoded. Pool defaults come from ``PoolConfig.decode``.

    The defaults favour latency: greedy decoding (``beam_size=1``) is about 0.2 s faster
    per 10 s clip than beam 5 on a 2-core CPU, and setting ``language`` saves the
    detection pass (about 0.4 s). See the README for the measured costs.

    ``window="auto"`` runs the encoder on a window sized to short audio instead of
    Whisper's 30 s (see :mod:`whisperpool.backends.faster_whisper`); ``"full"`` always
    uses 30 s, as faster-whisper does. ``"short"`` uses only the short window (up to
    30 s of audio): what its guard rejects comes back empty, ``fallback`` naming why,
    instead of being decoded again - for live updates that the next one replaces.
    Under ``"auto"``, audio up to ``short_window_max_s`` seconds (at most 30) takes the
    short window; longer audio the full one.

    ``speech_gate`` (on by default): audio in which Silero VAD hears no speech, or that
    is shorter than 0.1 s, gives no text and never reaches the decoder, which would
    otherwise make up words ("you") from silence. ``sampling``: when a window fails its
    checks, faster-whisper decodes it again at rising temperatures, sampling at random;
    ``"deterministic"`` (the default) makes those steps beam searches with a growing
    repetition penalty instead, so the same audio gives the same text on every run and
    worker; ``"random"`` keeps faster-whisper's sampling (fresh each time).

    ``low_confidence_fallback`` (on by default): whether a short-window decoding whose
    only fault is a low average log-probability is decoded again on the full window.
    Streaming sessions turn it off: such audio is hard (noise, babble, a mumble), not
    cut short, and on the dev set's tuning half the full window scored no better on it
    (43 errors against 40 on 39 words) at 7x the time. Off, a full window reached for
    another reason does not step up its temperature ladder for a low log-probability either.

    ``max_tokens_per_s`` (default 10): the token cap. One decoding pass on ``d`` seconds of
    audio stops after ``24 + max_tokens_per_s * d`` tokens (at most 200), on the short
    window, its retries and its fallback to the full window: a person says a few words a
    second, so a pass that reaches the cap is a loop, and costs a few dozen tokens, not
    Whisper's 448.

    ``no_repeat_ngram_size`` (faster-whisper's option; default 0, off): no sequence of
    this many tokens may repeat within a decoding pass, so a pass cannot loop. The
    deterministic ladder's steps from 0.6 on use 4 (or this, if smaller). Streaming
    finals use 4 on their passes at T=0 (see :mod:`whisperpool.streaming.session`).
    whisper.cpp has no such constraint and ignores it.

    ``segment_timestamps`` (on by default): whether the caller wants the segments' times.
    Off (the text is all that is wanted: the server's ``json`` and ``text`` responses, the
    CLI's text output), each piece of a long recording comes back as one segment spanning
    the piece, as faster-whisper's batched mode gives its chunks, without the word
    alignment that cuts it into sentences (7-10% of a piece's decoding on a CPU).
    The text is the same either way; ``word_timestamps`` needs the alignment and keeps it.
    Audio decoded whole, pieces short enough to keep their timestamp tokens and a piece
    decoded again alone are not affected; whisper.cpp ignores it.
    """

    language: str | None = None
    task: Task = "transcribe"
    beam_size: int = 1
    best_of: int = 5
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    initial_prompt: str | None = None
    word_timestamps: bool = False
    vad_filter: bool = False
    condition_on_previous_text: bool = True
    window: Window = "auto"
    # Up to 8 s: on the dev set's tuning half, audio of 10-24 s lost words on the short
    # window (+4.2 WER points at 10 s, +1.8 at 20 s); at 8 s and under it lost none.
    short_window_max_s: float = 8.0
    speech_gate: bool = True
    sampling: Sampling = "deterministic"
    low_confidence_fallback: bool = True
    max_tokens_per_s: float = 10.0  # the token cap's allowance per second of audio
    no_repeat_ngram_size: int = 0
    segment_timestamps: bool = True

    def __post_init__(self) -> None:
        owner = "DecodeOptions"
        rate = self.max_tokens_per_s
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not rate > 0:
            _fail(owner, "max_tokens_per_s", "must be a number of tokens above 0", rate)
        _check_literal(owner, "window", self.window, Window)
        _check_literal(owner, "sampling", self.sampling, Sampling)
        limit = self.short_window_max_s
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not 0 < limit <= 30:
            _fail(owner, "short_window_max_s", "must be seconds above 0 and at most 30", self.short_window_max_s)
        if isinstance(self.temperature, (int, float)):
            object.__setattr__(self, "temperature", (float(self.temperature),))
        else:
            object.__setattr__(self, "temperature", tuple(float(t) for t in self.temperature))
        if not self.temperature or any(not 0.0 <= t <= 1.0 for t in self.temperature):
            _fail(owner, "temperature", "must be one or more values between 0 and 1", self.temperature)
        if self.language is not None and self.language not in WHISPER_LANGUAGES:
            _fail(
                owner, "language", "must be one of Whisper's language codes such as 'en' (None: detect)", self.language
            )
        _check_literal(owner, "task", self.task, Task)
        for name in ("beam_size", "best_of"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                _fail(owner, name, "must be an integer >= 1", value)
        size = self.no_repeat_ngram_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            _fail(owner, "no_repeat_ngram_size", "must be an integer >= 0 (0: off)", size)
        if self.initial_prompt is not None and not isinstance(self.initial_prompt, str):
            _fail(owner, "initial_prompt", "must be a string", self.initial_prompt)

    def replace(self, **changes: Any) -> DecodeOptions:
        """A copy with some fields changed (unknown names raise ``ConfigError``)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown decoding option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_faster_whisper(self) -> dict[str, Any]:
        """Keyword arguments for ``faster_whisper.WhisperModel.transcribe``."""
        return {
            "language": self.language,
            "task": self.task,
            "beam_size": self.beam_size,
            "best_of": self.best_of,
            "temperature": list(self.temperature),
            "initial_prompt": self.initial_prompt,
            "word_timestamps": self.word_timestamps,
            "vad_filter": self.vad_filter,
            "condition_on_previous_text": self.condition_on_previous_text,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class PoolConfig:
    """Settings of a :class:`~whisperpool.pool.ProcessPool`.

    ``threads_per_worker=None`` gives each worker the machine's cores divided by the most
    workers the pool may have (``max_workers``; at least 1). Timeouts are in seconds; ``request_timeout_s`` covers queue wait
    and inference, and ``None`` disables it. ``max_queue=None`` leaves the queue unbounded.
    ``max_audio_s`` (default 3 hours; ``None``: no limit) is the longest audio a request
    may carry: decoding stops there, so a small file that declares or decodes to more
    costs at most about that much memory (64 KB a second) and is refused.

    Long audio: a recording longer than ``split_above_s`` (``None``: never) is cut at its
    silences into pieces of at most ``piece_s`` seconds, which are decoded in parallel on
    the idle workers, up to ``piece_batch`` pieces in one batch (default: 8 on a GPU, 1 on
    a CPU; see :attr:`pieces_per_batch`), and stitched in order (see
    :mod:`whisperpool.pool.pieces`). Finding its silences is shared out too: one part of
    at least ``plan_span_s`` seconds per idle worker (``None``: one worker plans it all).
    With ``max_batch`` above 1, a worker decodes up to that many queued short requests
    with the same options as one batch (see :mod:`whisperpool.pool.batching`; off by
    default).

    Express workers: ``express_workers`` more workers (default: 1 when long audio is
    split, else 0; see :attr:`express_size`) are kept for requests that are not a long
    recording's plan or pieces: a short request that arrives while the recordings' pieces
    hold every other worker starts at once instead of waiting a piece. They are apart from
    ``pool_size``, ``min_workers`` and ``max_workers`` (adaptive sizing never retires them)
    and take short requests like any worker when the others are busy.

    Supervision: a worker that dies is replaced at once; one that fails to warm up is
    restarted after ``restart_backoff_s``, doubling up to ``restart_backoff_max_s``, and
    its slot is given up after ``max_restarts`` failed warm-ups in a row. A request whose
    worker died is retried on another; one that has crashed ``max_crashes_per_request``
    workers is refused as poison. Idle workers are pinged every ``ping_interval_s``
    (``None``: never) and replaced if they do not answer within ``ping_timeout_s``; a
    worker that does not take a request (or any message) within ``send_timeout_s`` is
    treated as hung and replaced, its request retried elsewhere. A
    worker is recycled, its replacement warmed first, after ``max_requests_per_worker``
    requests (plus up to ``max_requests_jitter``) or above ``max_worker_rss_mb``.

    Adaptive sizing (see :mod:`whisperpool.scaling`): with ``max_workers`` above
    ``min_workers`` the pool starts ``pool_size`` workers (clamped into the range) and
    grows when requests wait ``scale_up_wait_s`` or the predicted load needs more at
    ``target_utilization``; a worker idle ``scale_down_idle_s`` is retired. The workers'
    resident memory is kept under ``max_total_rss_mb``. Idle workers run a dummy
    inference after ``rewarm_after_idle_s`` without a request and every
    ``health_check_interval_s`` (``None``: never), never while requests wait.
    ``state_file`` keeps warm-up timings and memory across restarts.
    """

    pool_size: int = 2
    model: str = "base"
    device: Device = "cpu"
    compute_type: str = "int8"
    threads_per_worker: int | None = None
    request_timeout_s: float | None = 300.0
    warmup_timeout_s: float = 120.0
    stop_timeout_s: float = 5.0
    max_queue: int | None = None
    max_audio_s: float | None = 3 * 3600.0
    split_above_s: float | None = 30.0
    piece_s: float = 30.0
    piece_batch: int | None = None  # default: pieces_per_batch
    plan_span_s: float | None = 120.0
    max_batch: int = 1
    express_workers: int | None = None  # default: express_size
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    backend: BackendName = "faster-whisper"
    fake: FakeBehavior = field(default_factory=FakeBehavior)
    model_cache_dir: str | None = None
    max_restarts: int = 5
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 30.0
    max_crashes_per_request: int = 2
    ping_interval_s: float | None = 5.0
    ping_timeout_s: float = 5.0
    send_timeout_s: float = 10.0
    max_requests_per_worker: int | None = None
    max_requests_jitter: int = 0
    max_worker_rss_mb: float | None = None
    min_workers: int | None = None  # default: pool_size
    max_workers: int | None = None  # default: pool_size (a fixed pool)
    scale_up_wait_s: float = 0.5
    scale_down_idle_s: float = 60.0
    target_utilization: float = 0.8
    max_total_rss_mb: float | None = None
    rewarm_after_idle_s: float | None = 300.0
    health_check_interval_s: float | None = 900.0
    state_file: str | None = None

    def __post_init__(self) -> None:
        owner = "PoolConfig"
        if not isinstance(self.pool_size, int) or isinstance(self.pool_size, bool) or self.pool_size < 1:
            _fail(owner, "pool_size", "must be an integer >= 1", self.pool_size)
        if not isinstance(self.model, str) or not self.model.strip():
            _fail(owner, "model", "must be a model name or a folder path", self.model)
        _check_literal(owner, "device", self.device, Device)
        _check_literal(owner, "backend", self.backend, BackendName)
        if self.backend == "whispercpp" and self.device == "cuda":
            _fail(
                owner,
                "device",
                "must be 'cpu' or 'auto' for the whispercpp backend (its wheel runs on the CPU)",
                "cuda",
            )
        if self.threads_per_worker is not None and (
            not isinstance(self.threads_per_worker, int) or self.threads_per_worker < 1
        ):
            _fail(owner, "threads_per_worker", "must be an integer >= 1 or None", self.threads_per_worker)
        for name in ("warmup_timeout_s", "stop_timeout_s"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) <= 0:
                _fail(owner, name, "must be a number of seconds > 0", getattr(self, name))
        if self.request_timeout_s is not None and self.request_timeout_s <= 0:
            _fail(owner, "request_timeout_s", "must be > 0 or None", self.request_timeout_s)
        if self.max_audio_s is not None and (not isinstance(self.max_audio_s, (int, float)) or self.max_audio_s <= 0):
            _fail(owner, "max_audio_s", "must be a number of seconds > 0 or None", self.max_audio_s)
        if self.split_above_s is not None and (
            not isinstance(self.split_above_s, (int, float)) or self.split_above_s <= 0
        ):
            _fail(owner, "split_above_s", "must be a number of seconds > 0 or None", self.split_above_s)
        if not isinstance(self.piece_s, (int, float)) or not 1 <= self.piece_s <= 30:
            _fail(owner, "piece_s", "must be a number of seconds from 1 to 30 (one Whisper window)", self.piece_s)
        if self.piece_batch is not None and (
            not isinstance(self.piece_batch, int) or isinstance(self.piece_batch, bool) or self.piece_batch < 1
        ):
            _fail(owner, "piece_batch", "must be an integer >= 1 or None", self.piece_batch)
        if self.plan_span_s is not None and (
            not isinstance(self.plan_span_s, (int, float))
            or isinstance(self.plan_span_s, bool)
            or self.plan_span_s <= 0
        ):
            _fail(owner, "plan_span_s", "must be a number of seconds > 0 or None", self.plan_span_s)
        if not isinstance(self.max_batch, int) or isinstance(self.max_batch, bool) or self.max_batch < 1:
            _fail(owner, "max_batch", "must be an integer >= 1", self.max_batch)
        if self.express_workers is not None and (
            not isinstance(self.express_workers, int)
            or isinstance(self.express_workers, bool)
            or self.express_workers < 0
        ):
            _fail(owner, "express_workers", "must be an integer >= 0 or None", self.express_workers)
        if self.max_queue is not None and (not isinstance(self.max_queue, int) or self.max_queue < 0):
            _fail(owner, "max_queue", "must be an integer >= 0 or None", self.max_queue)
        for name in ("max_restarts", "max_requests_jitter"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                _fail(owner, name, "must be an integer >= 0", getattr(self, name))
        if not isinstance(self.max_crashes_per_request, int) or self.max_crashes_per_request < 1:
            _fail(owner, "max_crashes_per_request", "must be an integer >= 1", self.max_crashes_per_request)
        for name in ("restart_backoff_s", "restart_backoff_max_s", "ping_timeout_s", "send_timeout_s"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) <= 0:
                _fail(owner, name, "must be a number of seconds > 0", getattr(self, name))
        for name in ("ping_interval_s", "max_worker_rss_mb"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                _fail(owner, name, "must be > 0 or None", getattr(self, name))
        if self.max_requests_per_worker is not None and self.max_requests_per_worker < 1:
            _fail(owner, "max_requests_per_worker", "must be an integer >= 1 or None", self.max_requests_per_worker)
        if not isinstance(self.decode, DecodeOptions):
            _fail(owner, "decode", "must be a DecodeOptions", self.decode)
        for name in ("min_workers", "max_workers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                _fail(owner, name, "must be an integer >= 1 or None", value)
        if self.min_size > self.max_size:
            _fail(owner, "max_workers", f"must be >= min_workers ({self.min_size})", self.max_workers)
        for name in ("scale_up_wait_s", "scale_down_idle_s"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) < 0:
                _fail(owner, name, "must be a number of seconds >= 0", getattr(self, name))
        if not 0 < self.target_utilization <= 1:
            _fail(owner, "target_utilization", "must be in (0, 1]", self.target_utilization)
        for name in ("max_total_rss_mb", "rewarm_after_idle_s", "health_check_interval_s"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                _fail(owner, name, "must be > 0 or None", getattr(self, name))

    @property
    def min_size(self) -> int:
        return (
            self.min_workers
            if self.min_workers is not None
            else min(self.pool_size, self.max_workers or self.pool_size)
        )

    @property
    def max_size(self) -> int:
        return self.max_workers if self.max_workers is not None else max(self.pool_size, self.min_size)

    @property
    def initial_size(self) -> int:
        """Workers started at first: ``pool_size``, clamped into [min, max]."""
        return min(self.max_size, max(self.min_size, self.pool_size))

    @property
    def pieces_per_batch(self) -> int:
        """``piece_batch``, else 8 on a GPU, where batches are where its throughput is (a
        long recording in 0.55x the time of pieces one by one, ``bench --throughput
        --device cuda``), and 1 on a CPU, where batching 30 s windows gains nothing and a
        short request waits for less."""
        if self.piece_batch is not None:
            return self.piece_batch
        return GPU_PIECE_BATCH if self.device == "cuda" else 1

    @property
    def express_size(self) -> int:
        """``express_workers``, else 1 when long audio is split, else 0. A 3 s request sent
        while pieces held both workers (``scripts/express_worker_trial.py``, tune recording):
        on 2 cores 5.8x its idle latency without one, 2.0x with one; on one GPU, where it
        waits for a batch of pieces, 0.27 s at the median without one, 0.15 s with one. The
        recordings took no longer; the cost is one more model in memory (about 350 MiB with
        base on a CPU)."""
        if self.express_workers is not None:
            return self.express_workers
        return 1 if self.split_above_s is not None else 0

    @property
    def cpu_threads(self) -> int:
        """Threads each worker's model uses: the cores over the most workers the pool may
        have (``max_workers``), at least 1, so a pool that grows never runs more threads
        than there are cores, but for its express workers (which take the same, and run
        only while a short request and the pieces meet); ``threads_per_worker`` overrides it."""
        if self.threads_per_worker is not None:
            return self.threads_per_worker
        return max(1, available_cores() // self.max_size)

    def replace(self, **changes: Any) -> PoolConfig:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)


__all__ = ["DecodeOptions", "PoolConfig", "available_cores"]
