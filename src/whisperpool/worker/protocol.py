"""Messages on a worker's pipe. Plain frozen dataclasses; nothing else crosses.

Parent -> worker: first :class:`Boot` (what to load), then :class:`Transcribe`,
:class:`Plan`, :class:`Ping`, :class:`Stop`.
Worker -> parent: :class:`Loaded` and then :class:`Ready` (the warm-up handshake) or
:class:`WarmUpFailed`; per request, any number of :class:`SegmentDecoded` (when the
request asked to stream) and then exactly one :class:`Done` or :class:`Failed`
(:class:`Planned` or :class:`Failed` for a :class:`Plan`);
:class:`Pong` answers a ping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import BackendName, DecodeOptions
from ..errors import ErrorInfo
from ..results import Segment, TranscriptionResult
from ..testing import FakeBehavior


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """Everything a worker needs to build its backend: plain data."""

    name: BackendName
    model: str
    device: str
    compute_type: str
    cpu_threads: int
    slot: int
    fake: FakeBehavior


@dataclass(frozen=True, slots=True)
class Boot:
    """The first message: who the worker is, what to load, how to warm up."""

    worker_id: int
    spec: BackendSpec
    warmup_options: DecodeOptions
    log_level: int
    parent_pid: int


@dataclass(frozen=True, slots=True)
class Transcribe:
    """Transcribe ``audio``; with ``pieces`` (``(start, end)`` sample indices in it), decode
    just those pieces of a long recording, as one batch."""

    request_id: int
    audio: np.ndarray
    options: DecodeOptions
    stream: bool = False
    pieces: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """Find the speech in (a part of) a long recording, in regions of at most
    ``max_piece_s``; detect its language when ``detect_language`` (the first part) and
    ``options`` leave it open."""

    request_id: int
    audio: np.ndarray
    options: DecodeOptions
    max_piece_s: float
    detect_language: bool = True


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Loaded:
    pid: int
    load_s: float


@dataclass(frozen=True, slots=True)
class Ready:
    pid: int
    warmup_inference_s: float
    rss_bytes: int = 0
    windows: tuple[str, ...] = ()  # the encoder windows the warm-up ran


@dataclass(frozen=True, slots=True)
class WarmUpFailed:
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class SegmentDecoded:
    request_id: int
    segment: Segment


@dataclass(frozen=True, slots=True)
class Done:
    request_id: int
    result: TranscriptionResult
    inference_s: float
    rss_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Planned:
    """The answer to :class:`Plan`: ``regions`` are ``(start, end)`` sample indices, in
    order, that hold the speech (none: no speech at all)."""

    request_id: int
    regions: tuple[tuple[int, int], ...]
    language: str | None
    language_probability: float
    inference_s: float


@dataclass(frozen=True, slots=True)
class Failed:
    request_id: int
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class Pong:
    seq: int
