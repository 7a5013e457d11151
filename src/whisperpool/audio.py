"""Turn what a caller hands us into the one thing workers accept: 16 kHz mono float32.

Files and bytes are decoded with PyAV (its wheels carry FFmpeg, so wav, flac, ogg, mp3,
m4a, ... all work with no system FFmpeg). Arrays are checked and, if needed, converted
and resampled. Every failure is :class:`~whisperpool.errors.InvalidAudio` naming the
input and the problem.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from .errors import AudioTooLong, AudioTooShort, InvalidAudio

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
MIN_SECONDS = 0.1  # shorter is not worth a request: OpenAI's API refuses it, with these words
TOO_SHORT = "Audio file is too short. Minimum audio length is 0.1 seconds."
TRUNCATED_SLACK_S = 0.5  # decoding may fall this much short of the header's duration without a warning

# What counts as an audio file when a folder is given (by suffix, any case).
AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".opus", ".oga", ".m4a", ".aac", ".webm", ".mp4", ".wma", ".aiff", ".aif"}
)

AudioInput = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | np.ndarray


def _describe(source: object, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def _too_long(label: str, what: str, max_seconds: float) -> AudioTooLong:
    return AudioTooLong(f"{label}: audio is too long: {what} the limit of {_hours(max_seconds)} (max_audio_s)")


def _declared_seconds(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float | None:
    """The duration the container's header declares, if it declares one."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _wav_declared_seconds(head: bytes) -> float | None:
    """The length a RIFF/WAVE header declares (FFmpeg trusts the file's size instead)."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    at, bytes_per_second = 12, None
    while at + 8 <= len(head):
        chunk, size = head[at : at + 4], int.from_bytes(head[at + 4 : at + 8], "little")
        if chunk == b"fmt " and at + 24 <= len(head):
            channels = int.from_bytes(head[at + 10 : at + 12], "little")
            rate = int.from_bytes(head[at + 12 : at + 16], "little")
            bits = int.from_bytes(head[at + 22 : at + 24], "little")
            bytes_per_second = channels * rate * bits // 8
        elif chunk == b"data":
            if not bytes_per_second or size in (0, 0xFFFFFFFF):  # unknown, or a stream's placeholder
                return None
            return size / bytes_per_second
        at += 8 + size + (size & 1)
    return None


def _head(opened: object) -> bytes:
    """The first bytes of a path, bytes or seekable file object (b"" if they cannot be read)."""
    try:
        if isinstance(opened, str):
            with open(opened, "rb") as f:
                return f.read(4096)
        if isinstance(opened, io.BytesIO):
            return opened.getbuffer()[:4096].tobytes()
        if hasattr(opened, "seek") and hasattr(opened, "tell"):
            at = opened.tell()  # type: ignore[attr-defined]
            head = opened.read(4096)  # type: ignore[attr-defined]
            opened.seek(at)  # type: ignore[attr-defined]
            return head if isinstance(head, bytes) else b""
    except (OSError, ValueError):
        pass
    return b""


def _resampled(container: av.container.InputContainer, label: str, max_seconds: float | None) -> Iterator[np.ndarray]:
    if not container.streams.audio:
        raise InvalidAudio(f"{label}: no audio stream found")
    stream = container.streams.audio[0]
    if max_seconds is not None:  # refuse before decoding anything when the header says so
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > max_seconds:
            raise _too_long(label, f"its header declares {_hours(declared)}, over", max_seconds)
    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    total = 0
    frames = (out for frame in container.decode(stream) for out in resampler.resample(frame))
    for out in itertools.chain(frames, resampler.resample(None)):
        samples = out.to_ndarray().reshape(-1)
        total += samples.size
        if limit is not None and total > limit:  # headers can lie: count what decodes too
            raise _too_long(label, "it decodes to more than", max_seconds)
        yield samples


def decode_file(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    name: str | None = None,
    max_seconds: float | None = None,
    notes: list[str] | None = None,
) -> np.ndarray:
    """Decode a path, encoded bytes or a binary file object to 16 kHz mono float32.

    ``max_seconds`` bounds the work and the memory a small file can ask for (a few
    kilobytes of FLAC can declare hours of silence): :class:`~whisperpool.errors.AudioTooLong`
    when the header declares more, or as soon as decoding passes it.
    """
    label = _describe(source, name)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidAudio(f"{label}: no such file")
        if path.stat().st_size == 0:
            raise InvalidAudio(f"{label}: file is empty")
        opened: object = str(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InvalidAudio(f"{label}: empty input")
        opened = io.BytesIO(bytes(source))
    else:
        opened = source
    try:
        with av.open(opened, mode="r", metadata_errors="ignore") as container:
            declared = _wav_declared_seconds(_head(opened))
            if declared is None and container.streams.audio:
                declared = _declared_seconds(container, container.streams.audio[0])
            chunks = list(_resampled(container, label, max_seconds))
    except InvalidAudio:
        raise
    except (av.FFmpegError, ValueError, EOFError) as exc:
        raise InvalidAudio(f"{label}: not decodable audio ({exc})") from exc
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if audio.size == 0:
        raise InvalidAudio(f"{label}: no audio samples (empty or truncated)")
    decoded_s = audio.size / SAMPLE_RATE
    if declared is not None and decoded_s < declared - TRUNCATED_SLACK_S:
        note = (
            f"{label}: the file's header declares {declared:.1f} s of audio but only {decoded_s:.1f} s could be "
            "decoded (a truncated file?): transcribed as far as it goes"
        )
        log.warning("%s", note)
        if notes is not None:
            notes.append(note)
    return np.ascontiguousarray(audio, dtype=np.float32)


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono float32 ``audio`` from ``rate`` to ``target`` (16 kHz) with FFmpeg's resampler."""
    if rate == target:
        return audio
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, np.float32)


class ChunkResampler:
    """Resamples a live stream chunk by chunk, keeping FFmpeg's filter state between them.

    Resampling each chunk on its own would click at every boundary. The output lags the
    input by the filter's delay (a few milliseconds) until :meth:`flush`.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._pts = 0

    def __call__(self, audio: np.ndarray | None) -> np.ndarray:
        """Mono float32 at ``rate`` in (None flushes); 16 kHz out."""
        if self.rate == SAMPLE_RATE:
            return audio if audio is not None else np.zeros(0, np.float32)
        frame = None
        if audio is not None:
            frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = self.rate
            frame.pts = self._pts
            self._pts += audio.size
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, np.float32)


def from_array(
    audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *, name: str = "<array>", max_seconds: float | None = None
) -> np.ndarray:
    """Check and convert an array of samples to 16 kHz mono float32.

    Integer PCM is scaled to [-1, 1]; a 2-D array is (samples, channels) and is mixed
    down; ``sample_rate`` other than 16 kHz is resampled.
    """
    if not isinstance(audio, np.ndarray):
        raise InvalidAudio(f"{name}: expected a numpy array, got {type(audio).__name__}")
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InvalidAudio(f"{name}: sample_rate must be a positive integer, got {sample_rate!r}")
    if np.issubdtype(audio.dtype, np.integer):  # scaled before any mixing down
        info = np.iinfo(audio.dtype)
        audio = audio.astype(np.float32) / float(max(abs(info.min), info.max))
    elif np.issubdtype(audio.dtype, np.floating):
        audio = audio.astype(np.float32, copy=False)
    else:
        raise InvalidAudio(f"{name}: unsupported sample type {audio.dtype}")
    if audio.ndim == 2:
        audio = audio.mean(axis=1) if audio.shape[1] <= 8 else audio.mean(axis=0)
    if audio.ndim != 1:
        raise InvalidAudio(f"{name}: expected mono samples (1-D) or (samples, channels), got shape {audio.shape}")
    if audio.size == 0:
        raise InvalidAudio(f"{name}: no audio samples")
    if max_seconds is not None and audio.shape[0] > max_seconds * sample_rate:
        raise _too_long(name, f"{_hours(audio.shape[0] / sample_rate)}, over", max_seconds)
    if not np.isfinite(audio).all():
        raise InvalidAudio(f"{name}: samples contain NaN or infinity")
    return np.ascontiguousarray(resample(audio, sample_rate), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Decoded:
    """Samples ready for a worker (16 kHz mono float32), and what decoding noticed."""

    samples: np.ndarray
    warnings: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        return self.samples.size / SAMPLE_RATE


def decode_request(
    source: AudioInput,
    *,
    sample_rate: int = SAMPLE_RATE,
    name: str | None = None,
    max_seconds: float | None = None,
    min_seconds: float = MIN_SECONDS,
) -> Decoded:
    """What a request carries, decoded for transcription: like :func:`load_audio`, but
    audio under ``min_seconds`` is refused (:class:`~whisperpool.errors.AudioTooShort`),
    and a file that holds less than its header declares (truncated) is decoded as far as
    it goes, with a warning that says so."""
    notes: list[str] = []
    if isinstance(source, np.ndarray):
        samples = from_array(source, sample_rate, name=name or "<array>", max_seconds=max_seconds)
    else:
        samples = decode_file(source, name=name, max_seconds=max_seconds, notes=notes)
    if samples.size < min_seconds * SAMPLE_RATE:
        raise AudioTooShort(f"{_describe(source, name)}: {TOO_SHORT}")
    return Decoded(samples, tuple(notes))


def load_audio(
    source: AudioInput, *, sample_rate: int = SAMPLE_RATE, name: str | None = None, max_seconds: float | None = None
) -> np.ndarray:
    """Any supported input to 16 kHz mono float32 (``sample_rate`` applies to arrays only),
    at most ``max_seconds`` long (:class:`~whisperpool.errors.AudioTooLong` otherwise)."""
    if isinstance(source, np.ndarray):
        return from_array(source, sample_rate, name=name or "<array>", max_seconds=max_seconds)
    return decode_file(source, name=name, max_seconds=max_seconds)


__all__ = [
    "AUDIO_SUFFIXES",
    "MIN_SECONDS",
    "SAMPLE_RATE",
    "Decoded",
    "decode_request",
    "AudioInput",
    "ChunkResampler",
    "decode_file",
    "from_array",
    "load_audio",
    "resample",
]
