"""The traffic ``bench --adaptive`` replays: a family of traces drawn from seeds.

Each trace is 40-55 s of arrivals of one shape - quiet, a burst, quiet (like issue 19's);
several short bursts; a ramp up; a step up and a ramp down; a steady moderate load; a
slow sine - with the shape's sizes, lengths and rates drawn from the trace's seed.
Requests are real speech from the packaged clips, whole sentences joined into clips of
2 to 30 s (mostly 2-6 s commands, some 8-30 s dictations, the share drawn per trace),
and some traces carry live streaming sessions (12-25 s of sentences and pauses, played
at real-time pace) among the requests.

The family is split once, here, into a ``TUNE`` half (the policy's settings are chosen
on it) and a ``HELD_OUT`` half (reported, never tuned on). Every shape is in both
halves, with different draws. Nothing here touches a pool: the same trace is the same
arrivals and the same audio on every pool and every run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

import numpy as np

from ..audio import load_audio
from .common import CLIPS

SAMPLE_RATE = 16_000
SHAPES = ("quiet-burst-quiet", "bursts", "ramp-up", "ramp-down", "steady", "sine")
TRACES = 2 * len(SHAPES)  # trace i has shape SHAPES[i % 6] and seed 1000 + i
TUNE = tuple(range(0, len(SHAPES)))  # traces 0-5: one of each shape
HELD_OUT = tuple(range(len(SHAPES), TRACES))  # traces 6-11: the other draw of each shape
GAP_S = 0.3  # silence between the sentences joined into one clip
STREAM_PAUSE_S = 1.0  # silence after each sentence of a stream (its VAD ends an utterance there)
QUIET = (0.05, 0.12)  # requests per second in a quiet spell (drawn per trace)
# At the top of a burst or ramp (requests per second): 0.4-0.8 worker's worth of the mixed
# clips on a quiet 2-core machine (0.3-0.5 s a command, 1-3 s a dictation, single-thread
# workers), 1-2 workers' worth when others' work triples those times (as it did while the
# settings were tuned, load average 8-13): more than one worker can serve at the top.
PEAK = (0.7, 1.2)


@dataclass(frozen=True, slots=True)
class Phase:
    seconds: float
    start_rate: float  # requests per second at its start, linear to its end
    end_rate: float
    kind: str  # "quiet", "burst", "ramp", "steady"


@dataclass(frozen=True, slots=True)
class Request:
    at: float  # seconds into the trace
    clip_s: float  # the clip's length asked for (its audio is 0-1 s longer: whole sentences)
    clip_seed: int


@dataclass(frozen=True, slots=True)
class Stream:
    at: float
    seconds: float
    clip_seed: int


@dataclass(frozen=True, slots=True)
class Trace:
    id: int
    shape: str
    seed: int
    phases: tuple[Phase, ...]
    requests: tuple[Request, ...]
    streams: tuple[Stream, ...]

    @property
    def half(self) -> str:
        return "tune" if self.id in TUNE else "held-out"

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.phases)

    def burst_starts(self) -> list[int]:
        """Indices of the requests that open a burst after a quiet spell: the first
        arrival of each "burst" phase that follows a "quiet" one."""
        out, start = [], 0.0
        for before, phase in zip((None, *self.phases), self.phases, strict=False):
            if phase.kind == "burst" and before is not None and before.kind == "quiet":
                first = next((i for i, r in enumerate(self.requests) if r.at >= start), None)
                if first is not None and self.requests[first].at < start + phase.seconds:
                    out.append(first)
            start += phase.seconds
        return out

    def rate_at(self, t: float) -> float:
        start = 0.0
        for p in self.phases:
            if t < start + p.seconds:
                return p.start_rate + (p.end_rate - p.start_rate) * (t - start) / p.seconds
            start += p.seconds
        return self.phases[-1].end_rate

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "shape": self.shape,
            "seed": self.seed,
            "half": self.half,
            "phases": [[p.seconds, p.start_rate, p.end_rate, p.kind] for p in self.phases],
            "requests": [[r.at, r.clip_s] for r in self.requests],
            "streams": [[s.at, s.seconds] for s in self.streams],
            "burst_starts": self.burst_starts(),
        }


def _phases(shape: str, rng: np.random.Generator) -> list[Phase]:
    u = lambda lo, hi: round(float(rng.uniform(lo, hi)), 2)  # noqa: E731
    quiet, peak = u(*QUIET), u(*PEAK)
    if shape == "quiet-burst-quiet":  # issue 19's shape: a step up from quiet, and back
        first, burst = u(12, 18), u(6, 12)
        return [
            Phase(first, quiet, quiet, "quiet"),
            Phase(burst, peak, peak, "burst"),
            Phase(u(18, 25), quiet, quiet, "quiet"),
        ]
    if shape == "bursts":  # short bursts of different sizes, quiet between
        out = [Phase(u(6, 10), quiet, quiet, "quiet")]
        for _ in range(int(rng.integers(2, 4))):
            size = u(PEAK[0], PEAK[1] + 0.4)
            out += [Phase(u(3, 7), size, size, "burst"), Phase(u(9, 14), quiet, quiet, "quiet")]
        return out
    if shape == "ramp-up":
        return [
            Phase(u(8, 12), quiet, quiet, "quiet"),
            Phase(u(15, 25), quiet, peak, "ramp"),
            Phase(u(4, 8), peak, peak, "steady"),
        ]
    if shape == "ramp-down":
        return [
            Phase(u(8, 12), quiet, quiet, "quiet"),
            Phase(u(6, 9), peak, peak, "burst"),
            Phase(u(20, 28), peak, quiet, "ramp"),
            Phase(5.0, quiet, quiet, "quiet"),
        ]
    if shape == "steady":
        rate = u(0.35, 0.6)
        return [Phase(u(40, 50), rate, rate, "steady")]
    if shape == "sine":  # one-second linear pieces of mid + amp sin(2 pi t / period + phase)
        mid, period, offset = u(0.4, 0.6), u(25, 40), u(0, 2 * np.pi)
        amp = mid * u(0.6, 0.9)
        seconds = int(u(45, 55))
        rates = [mid + amp * np.sin(2 * np.pi * t / period + offset) for t in range(seconds + 1)]
        return [
            Phase(1.0, round(float(a), 3), round(float(b), 3), "steady") for a, b in zip(rates, rates[1:], strict=False)
        ]
    raise ValueError(f"unknown trace shape {shape!r}")


def arrivals(phases: list[Phase], rng: np.random.Generator) -> list[float]:
    """A Poisson process whose rate goes linearly through each phase, by thinning."""
    times, start = [], 0.0
    for p in phases:
        peak = max(p.start_rate, p.end_rate)
        t = start
        while peak > 0:
            t += float(rng.exponential(1 / peak))
            if t >= start + p.seconds:
                break
            rate = p.start_rate + (p.end_rate - p.start_rate) * (t - start) / p.seconds
            if rng.random() < rate / peak:
                times.append(round(t, 3))
        start += p.seconds
    return times


def make(trace_id: int) -> Trace:
    """Trace ``trace_id`` of the family (0 to TRACES - 1), the same on every call."""
    if not 0 <= trace_id < TRACES:
        raise ValueError(f"trace ids are 0-{TRACES - 1}, got {trace_id}")
    shape, seed = SHAPES[trace_id % len(SHAPES)], 1000 + trace_id
    rng = np.random.default_rng(seed)
    phases = _phases(shape, rng)
    long_share = float(rng.uniform(0.08, 0.15))  # dictations among the commands
    requests = []
    for t in arrivals(phases, rng):
        long = rng.random() < long_share
        clip_s = round(float(rng.uniform(8, 30) if long else rng.uniform(2, 6)), 1)
        requests.append(Request(t, clip_s, int(rng.integers(2**31))))
    total = sum(p.seconds for p in phases)
    streams = []
    for _ in range(int(rng.integers(0, 3))):  # 0, 1 or 2 live sessions
        seconds = round(float(rng.uniform(12, 25)), 1)
        streams.append(
            Stream(round(float(rng.uniform(0, max(1.0, total - seconds))), 2), seconds, int(rng.integers(2**31)))
        )
    return Trace(trace_id, shape, seed, tuple(phases), tuple(requests), tuple(sorted(streams, key=lambda s: s.at)))


def family(ids: tuple[int, ...] = tuple(range(TRACES))) -> list[Trace]:
    return [make(i) for i in ids]


@cache
def _sentences() -> tuple[np.ndarray, ...]:
    """Every whole sentence of real speech shipped with the package (1-14 s each)."""
    short = json.loads((CLIPS / "short" / "texts.json").read_text())
    paths = [CLIPS / "short" / f"{n}.wav" for n in sorted(short) if n.startswith("s")]
    paths += [CLIPS / f"{n}.wav" for n in sorted(json.loads((CLIPS / "texts.json").read_text()))]
    return tuple(load_audio(p) for p in paths)


def speech(seconds: float, seed: int, pause_s: float = GAP_S) -> np.ndarray:
    """Whole sentences, picked by ``seed``, ``pause_s`` apart: ``seconds`` to ``seconds + 1``
    long where the sentences allow (a cut sentence can send the decoder astray)."""
    rng = np.random.default_rng(seed)
    sentences, pause = _sentences(), np.zeros(int(pause_s * SAMPLE_RATE), np.float32)
    parts: list[np.ndarray] = []
    total = 0.0
    while total < seconds:
        room = seconds + 1.0 - total - (pause_s if parts else 0.0)
        fitting = [s for s in sentences if s.size / SAMPLE_RATE <= room]
        if not fitting:
            break
        pick = fitting[int(rng.integers(len(fitting)))]
        parts += [pause, pick] if parts else [pick]
        total += pick.size / SAMPLE_RATE + (pause_s if len(parts) > 1 else 0.0)
    return np.concatenate(parts)


def stream_speech(stream: Stream) -> np.ndarray:
    """A stream's audio: sentences each followed by a pause, about ``stream.seconds`` long."""
    audio = speech(stream.seconds - STREAM_PAUSE_S, stream.clip_seed, pause_s=STREAM_PAUSE_S)
    return np.concatenate([audio, np.zeros(int(STREAM_PAUSE_S * SAMPLE_RATE), np.float32)])


__all__ = [
    "HELD_OUT",
    "SHAPES",
    "TRACES",
    "TUNE",
    "Phase",
    "Request",
    "Stream",
    "Trace",
    "arrivals",
    "family",
    "make",
    "speech",
]
