"""The real backend: faster-whisper (CTranslate2) on the CPU or a GPU.

Short audio takes a fast path. Whisper pads every window to 30 s, so for a 1-10 s
utterance most encoder work is spent on padding. CTranslate2's Whisper encoder accepts a
shorter input, so for audio up to ``DecodeOptions.short_window_max_s`` (default
:data:`SHORT_WINDOW_MAX_S`) the clip is padded with real silence to a window of its
length plus :data:`SHORT_WINDOW_TAIL_S` (at least :data:`SHORT_WINDOW_MIN_S`), and
faster-whisper's own decoding runs on that window: its feature extractor, tokenizer,
prompt, language detection, timestamp rules and word alignment are untouched; only the
encoder sees fewer frames.

A short window can make the decoder loop or invent text (Whisper was trained on 30 s
windows), so a guard checks the one decoding pass: a compression ratio over the
threshold, a phrase repeated three times in a row (too short a text for the compression
ratio to notice), a low average log-probability (unless the window is silence), output
that hits the token cap, or output that does not end on a timestamp reject it.

A pass rejected for a loop or a cut (any reason but a low log-probability) is decoded
again on the short window at the ladder's first step that forbids repeated 4-grams (with
``sampling="deterministic"``: beam search with a repetition penalty): on the snug window
(the speech and its tail, without the floor's silent pad), then, if that is rejected too
and the snug window is smaller, on the first pass's window, whose encoding it reuses.
Only if those are rejected, or the first pass was merely unsure, does the request go to
the full window. Every pass, on either window, stops at the token cap
(``DecodeOptions.max_tokens_per_s``), so a loop costs a few dozen tokens, not Whisper's
448. A live partial (``window="short"``) is not decoded again: the next update replaces
it. The result says which window answered and, after a fallback to the full window, why.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np

from ..audio import SAMPLE_RATE
from ..config import DecodeOptions
from ..errors import ModelError
from ..results import FALLBACK_REASONS, RETRIED_REASONS, Segment, TranscriptionResult, Word  # noqa: F401 (re-exported)
from ..wer import normalize
from . import BackendSpec, SegmentCallback

log = logging.getLogger(__name__)

FRAMES_PER_SECOND = 100  # log-mel frames: one per 10 ms hop

SHORT_WINDOW_MAX_S = 8.0  # the default of DecodeOptions.short_window_max_s
# The shortest window the encoder is given (5 s looped more often on 1 s clips before the
# repetition rule), and the silence after the clip, so the decoder sees it end. Swept with
# the guard's LOG_PROB_LIMIT on the dev set's tune half (scripts/tune_short_window.py,
# docs/fast-path.md): no floor (4-10 s), tail (1-3 s) or limit did better beyond noise.
SHORT_WINDOW_MIN_S = 8
SHORT_WINDOW_TAIL_S = 1.0

# The guard, with faster-whisper's own defaults for its temperature fallback.
COMPRESSION_RATIO_LIMIT = 2.4
LOG_PROB_LIMIT = -1.0
NO_SPEECH_LIMIT = 0.6
TOKENS_BASE = 24  # the token cap: this many, plus TOKENS_PER_S for each second of audio
TOKENS_PER_S = 10
TOKENS_MAX = 200  # leaves room for a prompt in Whisper's 448-token context
MIN_AUDIO_S = 0.1  # shorter audio is nothing to decode (OpenAI's API refuses it)
SILENT_PEAK = 1e-4  # below this peak the audio is digital silence: no VAD needed to say so
# Timestamp tokens in a long recording's pieces too (not only in short-window ones): off,
# measured (scripts/piece_wer.py, which turns it on): a one-pass decoding with them stops
# early at a timestamp and drops a piece's last sentence.
PIECE_TIMESTAMPS = False


class NeedsFullWindow(Exception):
    """The guard rejected a short-window decoding: ``reason`` is one of FALLBACK_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def short_window_seconds(duration: float, max_s: float = SHORT_WINDOW_MAX_S) -> int | None:
    """The encoder window for audio of this length, or None for the full 30 s window."""
    if duration > max_s:
        return None
    return max(SHORT_WINDOW_MIN_S, math.ceil(duration + SHORT_WINDOW_TAIL_S))


# Rejections that another look can mend on the short window: a loop, or a pass cut short.
# A low log-probability is the audio's fault (noise, a mumble): the full window it is.
RETRIED_ON_SHORT = frozenset(RETRIED_REASONS)
NO_REPEAT_FROM = 0.6  # from this step of the ladder on, deterministic fallback forbids repeated n-grams
NO_REPEAT_NGRAM = 4  # of this many tokens (or DecodeOptions.no_repeat_ngram_size, if smaller)


def retry_tries(speech_s: float, window: int, temperatures: tuple[float, ...]) -> list[tuple[int, float]]:
    """The short-window passes (window seconds, temperature) that a pass rejected for a
    loop or a cut gets, in order, before the full window (see ``_retry_short``): the
    snug window (the speech plus its tail, no floor) at the ladder's first step that
    forbids repeats, then ``window`` at that step; without such a step, the snug window
    at the first temperature."""
    snug = min(window, math.ceil(speech_s + SHORT_WINDOW_TAIL_S))
    step = next((t for t in temperatures[1:] if t >= NO_REPEAT_FROM), None)
    if step is None:
        return [(snug, temperatures[0])] if snug < window else []
    return [(snug, step)] + ([(window, step)] if snug < window else [])


def token_cap(duration: float, per_s: float = TOKENS_PER_S) -> int:
    """The most tokens one decoding pass of ``duration`` seconds of audio may produce."""
    return min(TOKENS_MAX, TOKENS_BASE + math.ceil(per_s * duration))


def _segment(seg, duration: float) -> Segment:  # faster_whisper.transcribe.Segment -> ours
    words = None
    if seg.words is not None:
        words = tuple(
            Word(float(min(w.start, duration)), float(min(w.end, duration)), w.word, float(w.probability))
            for w in seg.words
        )
    return Segment(
        id=seg.id,
        start=float(min(seg.start, duration)),
        end=float(min(seg.end, duration)),
        text=seg.text,
        seek=seg.seek,
        tokens=tuple(seg.tokens),
        temperature=seg.temperature if seg.temperature is not None else 0.0,
        avg_logprob=seg.avg_logprob,
        compression_ratio=seg.compression_ratio,
        no_speech_prob=seg.no_speech_prob,
        words=words,
    )


class DeterministicFallback:
    """The CTranslate2 model as faster-whisper calls it, with the temperature fallback's
    random sampling replaced by deterministic decoding, so the same audio gives the same
    text on every run and worker.

    CTranslate2 seeds each of its decoding threads once, so a request cannot be given a
    seed of its own. Instead, a fallback step at temperature T > 0 (faster-whisper
    samples ``best_of`` candidates there) becomes beam search with ``best_of`` beams and
    a repetition penalty that grows with T, and from T = 0.6 on no 4-gram may repeat:
    what makes a window fail its checks is mostly a loop or a guess, which these
    push the decoder out of. ``DecodeOptions.sampling="random"`` asks for faster-whisper's
    own sampling instead (fresh each time).
    """

    def __init__(self, model) -> None:
        self._model = model
        self.deterministic = True

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def generate(self, *args, **kwargs):
        if self.deterministic and kwargs.get("sampling_topk", 1) != 1:
            temperature = float(kwargs.pop("sampling_temperature", 1.0))
            kwargs.pop("sampling_topk")
            kwargs["beam_size"] = max(2, int(kwargs.pop("num_hypotheses", 5)))
            kwargs["num_hypotheses"] = 1
            kwargs["repetition_penalty"] = max(kwargs.get("repetition_penalty", 1.0), 1.0 + 0.25 * temperature)
            if temperature >= NO_REPEAT_FROM:
                kwargs["no_repeat_ngram_size"] = min(
                    kwargs.get("no_repeat_ngram_size") or NO_REPEAT_NGRAM, NO_REPEAT_NGRAM
                )
        return self._model.generate(*args, **kwargs)


def _windowed_model_class():
    """faster-whisper's ``WhisperModel``, able to encode a window shorter than 30 s.

    Built on first use so that importing this module does not import faster-whisper.
    """
    from faster_whisper import WhisperModel

    class WindowedWhisperModel(WhisperModel):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.model = DeterministicFallback(self.model)

        window_frames: int | None = None  # set for the duration of one short-window call
        low_confidence_fallback = True  # set with window_frames: whether a low log-probability fails the guard
        batch_window_frames: int | None = None  # set for one batch of a long recording's pieces
        _encoded: tuple[np.ndarray, object] | None = None

        def encode(self, features):
            if self.window_frames is None:
                if self.batch_window_frames is None:
                    return super().encode(features)
                features = features[..., : self.batch_window_frames]  # one encode per batch: nothing to cache
                if self.model.device != "cpu" or features.ndim < 3 or len(features) < 2:
                    return super().encode(features)
                # On a CPU the decoder gains from a batch and the encoder loses
                # (scripts/cpu_decode_costs.py): each window is encoded alone.
                import ctranslate2

                encoded = [np.asarray(super(WindowedWhisperModel, self).encode(f[None])) for f in features]
                return ctranslate2.StorageView.from_array(np.concatenate(encoded))
            # faster-whisper pads to 3000 frames; the encoder is given the window only.
            # Language detection and the first decoding pass encode the same window:
            # once is enough. A second, different window means the decoder stopped short
            # of the end and faster-whisper moved on: the guard's business.
            features = features[..., : self.window_frames]
            if self._encoded is not None:
                if np.array_equal(self._encoded[0], features):
                    return self._encoded[1]
                raise NeedsFullWindow("stopped_early", "decoding stopped before the end of the window")
            output = super().encode(features)
            self._encoded = (features, output)
            return output

        def generate_with_fallback(self, encoder_output, prompt, tokenizer, options):
            decoded = super().generate_with_fallback(encoder_output, prompt, tokenizer, options)
            if self.window_frames is not None:
                result, avg_logprob, _temperature, compression_ratio = decoded
                tokens = tuple(result.sequences_ids[0])
                guard(
                    Decoding(
                        tokens=tokens,
                        text=tokenizer.decode([t for t in tokens if t < tokenizer.timestamp_begin]),
                        timestamp_begin=tokenizer.timestamp_begin,
                        avg_logprob=avg_logprob,
                        compression_ratio=compression_ratio,
                        no_speech_prob=result.no_speech_prob,
                        max_new_tokens=options.max_new_tokens,
                    ),
                    low_confidence_fallback=self.low_confidence_fallback,
                )
            return decoded

    return WindowedWhisperModel


def repeated_phrase(words: list[str]) -> str | None:
    """A phrase of 2-4 words said three times in a row, or one word four times: a loop."""
    for n in range(1, 5):
        times = 4 if n == 1 else 3
        for i in range(len(words) - n * times + 1):
            phrase = words[i : i + n]
            if all(words[i + k * n : i + (k + 1) * n] == phrase for k in range(1, times)):
                return " ".join(phrase)
    return None


@dataclass(frozen=True, slots=True)
class Decoding:
    """One decoding pass as the guard sees it, in plain values.

    ``tokens``: the token ids decoded, timestamps included (ids from ``timestamp_begin``
    up); ``text``: the text of the non-timestamp tokens; ``max_new_tokens``: the cap the
    pass was given (None: none).
    """

    tokens: tuple[int, ...]
    text: str
    timestamp_begin: int
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    max_new_tokens: int | None = None


def suspect(
    text: str, avg_logprob: float, compression_ratio: float, no_speech_prob: float, low_confidence_fallback: bool = True
) -> tuple[str, str] | None:
    """Why a decoding pass done without faster-whisper's temperature ladder looks wrong,
    as (reason, detail), or None: a loop, or (when ``low_confidence_fallback``) a low
    average log-probability on audio that is not silence."""
    if compression_ratio > COMPRESSION_RATIO_LIMIT:
        return "compression_ratio", f"{compression_ratio:.2f} > {COMPRESSION_RATIO_LIMIT}"
    loop = repeated_phrase(normalize(text))
    if loop is not None:
        return "repetition", f"repeats {loop!r}"
    if avg_logprob < LOG_PROB_LIMIT and no_speech_prob <= NO_SPEECH_LIMIT and low_confidence_fallback:
        return "log_probability", f"average {avg_logprob:.2f} < {LOG_PROB_LIMIT}"
    return None


def guard(d: Decoding, low_confidence_fallback: bool = True) -> None:
    """Raise ``NeedsFullWindow`` when one short-window decoding pass looks wrong: a
    :func:`suspect` pass, one cut off by its token cap, or one that does not end on a
    timestamp."""
    found = suspect(d.text, d.avg_logprob, d.compression_ratio, d.no_speech_prob, low_confidence_fallback)
    if found is not None:
        raise NeedsFullWindow(*found)
    silence = d.no_speech_prob > NO_SPEECH_LIMIT
    if d.max_new_tokens is not None and len(d.tokens) >= d.max_new_tokens:
        raise NeedsFullWindow("token_cap", f"{d.max_new_tokens} tokens")
    said = any(t < d.timestamp_begin for t in d.tokens)
    ends_on_timestamp = len(d.tokens) >= 2 and d.tokens[-2] < d.timestamp_begin <= d.tokens[-1]
    if said and not ends_on_timestamp and not silence:
        raise NeedsFullWindow("no_end_timestamp", "the last token is not a timestamp")


def hears_speech(audio: np.ndarray) -> bool:
    """Whether there is anything to decode: at least 0.1 s, not digital silence, and
    speech to Silero VAD (faster-whisper's model and threshold: its speech timestamps
    are not empty exactly when one frame reaches the threshold).

    On the hot path of every request, so it stops at the first frame of speech: it
    looks at the first second, then twice as much at a time, and only silence is
    read to the end (and then no decoder runs)."""
    if audio.size < MIN_AUDIO_S * SAMPLE_RATE or float(np.max(np.abs(audio))) < SILENT_PEAK:
        return False
    from faster_whisper.vad import VadOptions, get_vad_model

    model, threshold, frame = get_vad_model(), VadOptions().threshold, 512
    start, span = 0, SAMPLE_RATE
    while start < audio.size:
        chunk = audio[start : start + span]
        if float(np.max(model(np.pad(chunk, (0, -chunk.size % frame))))) >= threshold:
            return True
        start, span = start + span, span * 2
    return False


def speech_regions(audio: np.ndarray, max_piece_s: float) -> tuple[tuple[int, int], ...]:
    """Speech regions, none longer than ``max_piece_s`` seconds, as faster-whisper's
    Silero VAD finds them for its batched mode (the pool groups them into pieces)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    vad = VadOptions(min_silence_duration_ms=160)
    # Regions are padded by speech_pad_ms on each side after the split: leave room for it.
    vad.max_speech_duration_s = max(1.0, max_piece_s - 2 * vad.speech_pad_ms / 1000)
    return tuple((r["start"], r["end"]) for r in get_speech_timestamps(audio, vad))


class FasterWhisperBackend:
    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        self.model = None
        self._batched = None  # faster-whisper's BatchedInferencePipeline, made on first use

    def load(self) -> None:
        try:
            self.model = _windowed_model_class()(
                self.spec.model,
                device=self.spec.device,
                compute_type=self.spec.compute_type,
                cpu_threads=self.spec.cpu_threads,
                num_workers=1,
            )
        except Exception as exc:
            raise ModelError(f"cannot load model {self.spec.model!r}: {exc}") from exc

    def warm_up(self, options: DecodeOptions) -> tuple[str, ...]:
        """Run each path a request can take once: the short window, then the full one."""
        windows = ("short", "full") if options.window == "auto" else (options.window,)
        for window in windows:  # through the decoder: silence must not be skipped here
            self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), options.replace(window=window, speech_gate=False))
        return windows

    def hears_speech(self, audio: np.ndarray) -> bool:
        return hears_speech(audio)

    def transcribe(
        self, audio: np.ndarray, options: DecodeOptions, on_segment: SegmentCallback | None = None
    ) -> TranscriptionResult:
        assert self.model is not None, "load() first"
        # With vad_filter the VAD runs below anyway: it gates then too.
        if options.speech_gate and not options.vad_filter and not self.hears_speech(audio):
            return _nothing(audio, options)
        self.model.model.deterministic = options.sampling == "deterministic"
        speech_chunks = None
        if options.vad_filter and options.window != "full":
            # The VAD runs first so that the window is sized to the speech it keeps.
            from faster_whisper.vad import collect_chunks, get_speech_timestamps

            speech_chunks = get_speech_timestamps(audio, None)
            if options.speech_gate and not speech_chunks:
                return _nothing(audio, options)
            chunks, _ = collect_chunks(audio, speech_chunks)
            speech = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        else:
            speech = audio
        window = None
        if options.window != "full":
            max_s = 30.0 if options.window == "short" else options.short_window_max_s
            window = short_window_seconds(speech.size / SAMPLE_RATE, max_s)
        if window is not None:
            encoded: dict = {}  # window size -> its encoding, for a retry on the same window
            try:
                return self._short(audio, speech, speech_chunks, window, options, on_segment, encoded)
            except NeedsFullWindow as exc:
                if options.window == "short":  # a live partial: the next update replaces it
                    log.debug("short window rejected (%s); no fallback asked for", exc)
                    return TranscriptionResult(
                        "", (), options.language, 0.0, audio.size / SAMPLE_RATE, window="short", fallback=exc.reason
                    )
                retried = self._retry_short(audio, speech, speech_chunks, window, options, on_segment, exc, encoded)
                if retried is not None:
                    return retried
                log.info("short window rejected (%s); decoding the full window", exc)
                cap = token_cap(audio.size / SAMPLE_RATE, options.max_tokens_per_s)
                return self._full(audio, options, on_segment, fallback=exc.reason, max_new_tokens=cap)
        return self._full(audio, options, on_segment, fallback=None)

    def transcribe_pieces(self, audio: np.ndarray, pieces, options: DecodeOptions) -> TranscriptionResult:
        """Several pieces (of a long recording, or queued requests) decoded as one batch
        by faster-whisper's batched mode: one window per piece (trimmed to the longest
        piece, as the short window is), the first temperature only.

        Timestamp tokens, measured both ways: in a short window (pieces up to
        ``short_window_max_s``: the queued requests a batch holds) text without them
        loses words (12.1% WER against 9.3% decoded alone, on bench --throughput's short
        clips; 9.3% with them), so they are kept and give the segments their times. In
        a piece-length window (a long recording's pieces) it is the other way round
        (+2.8 WER points against +0.6 over a sequential pass on the tune recordings,
        see :data:`PIECE_TIMESTAMPS`): the text goes without them, as in faster-whisper's
        batched mode, and is cut into sentence segments at the aligned words' times (one
        segment per piece when the caller wants no segment times: ``segment_timestamps``)."""
        from faster_whisper import BatchedInferencePipeline

        assert self.model is not None, "load() first"
        if self._batched is None:
            self._batched = BatchedInferencePipeline(self.model)
        longest = max(end - start for start, end in pieces) / SAMPLE_RATE
        if longest <= options.short_window_max_s:
            by_window = _by_window(pieces)
            if len(by_window) > 1:  # each request in the window it gets alone: one batch per window
                return _merged([self.transcribe_pieces(audio, group, options) for group in by_window], audio)
        window = short_window_seconds(longest, 30.0 - SHORT_WINDOW_TAIL_S)
        span = (window or 30) * SAMPLE_RATE
        clips = [{"start": i * span / SAMPLE_RATE, "end": (i + 1) * span / SAMPLE_RATE} for i in range(len(pieces))]
        model = self.model
        timestamps = PIECE_TIMESTAMPS or (window is not None and longest <= options.short_window_max_s)
        model.batch_window_frames = (window or 30) * FRAMES_PER_SECOND
        try:
            raw, info = self._batched.transcribe(
                side_by_side(audio, pieces, span),
                language=options.language,
                task=options.task,
                beam_size=options.beam_size,
                temperature=options.temperature[0],
                initial_prompt=options.initial_prompt,
                clip_timestamps=clips,
                batch_size=len(pieces),
                without_timestamps=not timestamps,
                # the words cut a piece's text into sentence segments, when anyone wants their times
                word_timestamps=options.word_timestamps or (not timestamps and options.segment_timestamps),
                vad_filter=False,
                # a lone request's cap (see _short); a long piece keeps the model's own
                max_new_tokens=token_cap(longest, options.max_tokens_per_s) if timestamps else None,
            )
            raw = list(raw)
        finally:
            model.batch_window_frames = None
        duration = audio.size / SAMPLE_RATE
        found: list[Segment] = []
        fallback = None
        for i, (start, end) in enumerate(pieces):
            lo = i * span  # where the piece starts in the windows decoded, and how far it moves back
            mine = [r for r in raw if lo <= (r.start + r.end) / 2 * SAMPLE_RATE < lo + span]
            piece_end = (lo + end - start) / SAMPLE_RATE
            wrong = mine and suspect(
                "".join(r.text for r in mine),
                min(r.avg_logprob for r in mine),
                max(r.compression_ratio for r in mine),
                max(r.no_speech_prob for r in mine),
                options.low_confidence_fallback,
            )
            if wrong:  # decoded again alone, the ordinary way: with the temperature ladder
                log.info("a piece at %.1f s went astray (%s: %s); decoding it alone", start / SAMPLE_RATE, *wrong)
                fallback = fallback or wrong[0]
                again = self.transcribe(np.ascontiguousarray(audio[start:end]), options.replace(window="full"))
                found += [_later(seg, start) for seg in again.segments]
            else:
                if timestamps:
                    decoded = [_segment(r, piece_end) for r in mine]
                else:
                    decoded = [seg for r in mine for seg in _sentences(r, options, piece_end)]
                found += [_later(seg, start - lo) for seg in decoded]
        segments = [dataclasses.replace(s, id=i) for i, s in enumerate(found, start=1)]
        return _result(segments, info, duration, window="short" if window is not None else "full", fallback=fallback)

    def plan(self, audio: np.ndarray, options: DecodeOptions, max_piece_s: float, detect_language: bool = True):
        """faster-whisper's own Silero VAD finds the speech, as its batched mode does."""
        assert self.model is not None, "load() first"
        regions = speech_regions(audio, max_piece_s)
        if options.language is not None or not regions or not detect_language:
            return regions, options.language, 1.0 if options.language else 0.0
        start = regions[0][0]
        language, probability, _ = self.model.detect_language(audio[start : start + 30 * SAMPLE_RATE])
        return regions, language, float(probability)

    def _full(
        self, audio, options: DecodeOptions, on_segment, fallback: str | None, max_new_tokens: int | None = None
    ) -> TranscriptionResult:
        kwargs = options.to_faster_whisper()
        if not options.low_confidence_fallback:  # unsure is no reason to step up the ladder either
            kwargs["log_prob_threshold"] = None
        # max_new_tokens: per pass of the temperature ladder (faster-whisper's own option)
        segments_iter, info = self.model.transcribe(audio, **kwargs, max_new_tokens=max_new_tokens)
        segments = _collect(segments_iter, info.duration, on_segment)
        return _result(segments, info, info.duration, window="full", fallback=fallback)

    def _retry_short(self, audio, speech, speech_chunks, window: int, options: DecodeOptions, on_segment, exc, encoded):
        """The short window again after a loop or a cut (``exc``), before the full window,
        the passes of :func:`retry_tries` (``window``'s encoding is in ``encoded``). The
        snug window drops the floor's long silent pad, where finals of a few seconds
        looped or never closed their last segment (the dev set's tune sentences spoken
        faster). The step that forbids repeats (beam search, a repetition penalty and no
        repeated 4-gram with ``sampling="deterministic"``; faster-whisper's own sampling
        with ``sampling="random"``) comes first, not after a snug pass at the first
        temperature: a final's latency budget holds one more pass, and on the stress set
        of tune texts the step's snug pass mended the cuts that pass mended and more of
        the loops, so most retried finals pay one retry, not two (docs/fast-path.md).
        None if ``exc`` is not of that kind or every try is rejected."""
        if exc.reason not in RETRIED_ON_SHORT:
            return None
        for size, temperature in retry_tries(speech.size / SAMPLE_RATE, window, options.temperature):
            try:
                result = self._short(audio, speech, speech_chunks, size, options, on_segment, encoded, temperature)
            except NeedsFullWindow as again:
                log.debug("short window of %d s at temperature %s rejected too (%s)", size, temperature, again)
                continue
            log.info("short window rejected (%s); a %d s window at temperature %s passed", exc, size, temperature)
            return dataclasses.replace(result, retried=exc.reason)
        return None

    def _short(
        self,
        audio,
        speech,
        speech_chunks,
        window: int,
        options: DecodeOptions,
        on_segment,
        encoded: dict,
        temperature=None,
    ):
        """One pass on the short window, at ``temperature`` (the ladder's first step if None).
        ``encoded``: the request's encodings by window size, read and added to, so that a
        retry on the same window does not run the encoder again (same input, same output)."""
        from faster_whisper.transcribe import restore_speech_timestamps

        padded = np.zeros(window * SAMPLE_RATE, dtype=np.float32)
        padded[: speech.size] = speech
        kwargs = options.to_faster_whisper()
        kwargs.update(
            vad_filter=False,
            # the guard stands in for the temperature ladder
            temperature=options.temperature[0] if temperature is None else temperature,
            max_new_tokens=token_cap(speech.size / SAMPLE_RATE, options.max_tokens_per_s),
        )
        model = self.model
        model.window_frames, model._encoded = window * FRAMES_PER_SECOND, encoded.get(window)
        model.low_confidence_fallback = options.low_confidence_fallback
        try:
            segments_iter, info = model.transcribe(padded, **kwargs)
            # Decode the whole window before sending a segment: a fallback would repeat it.
            raw = list(segments_iter)
        finally:
            if model._encoded is not None:
                encoded[window] = model._encoded
            model.window_frames, model._encoded = None, None
        if speech_chunks is not None:
            raw = list(restore_speech_timestamps(raw, speech_chunks, SAMPLE_RATE))
        duration = audio.size / SAMPLE_RATE
        segments = _collect(raw, duration, on_segment)
        return _result(segments, info, duration, window="short", fallback=None)


def _later(segment: Segment, samples: int) -> Segment:
    """``segment`` moved ``samples`` later (earlier if negative), its ``seek`` in frames too."""
    return segment.moved(samples / SAMPLE_RATE, samples * FRAMES_PER_SECOND // SAMPLE_RATE)


def _by_window(pieces) -> list[tuple[tuple[int, int], ...]]:
    """Requests grouped by the short window each gets alone, in order of first request."""
    groups: dict[int | None, list[tuple[int, int]]] = {}
    for start, end in pieces:
        groups.setdefault(short_window_seconds((end - start) / SAMPLE_RATE, 30.0), []).append((start, end))
    return [tuple(group) for group in groups.values()]


def _merged(parts: list[TranscriptionResult], audio: np.ndarray) -> TranscriptionResult:
    """The results of several batches over one audio as one, segments in time order."""
    found = sorted((s for part in parts for s in part.segments), key=lambda s: s.start)
    segments = tuple(dataclasses.replace(s, id=i) for i, s in enumerate(found, start=1))
    first = parts[0]
    return dataclasses.replace(
        first,
        text="".join(s.text for s in segments).strip(),
        segments=segments,
        duration=audio.size / SAMPLE_RATE,
        fallback=next((p.fallback for p in parts if p.fallback is not None), None),
        retried=next((p.retried for p in parts if p.retried is not None), None),
    )


def side_by_side(audio: np.ndarray, pieces, span: int) -> np.ndarray:
    """The pieces of ``audio`` one after another, each at the start of ``span`` samples of
    silence: the windows of a batch, the i-th at ``i * span``.

    Each piece is padded with silent audio before its log-mel features are taken, as a
    lone request's short window is (:meth:`FasterWhisperBackend._short`) and as Whisper
    was trained. faster-whisper's batched mode pads the features with zeros instead, a
    tail that reads as neither speech nor silence: measured on the bench's short clips,
    a batched request's text then differed from its text alone."""
    out = np.zeros(len(pieces) * span, dtype=np.float32)
    for i, (start, end) in enumerate(pieces):
        if end - start > span:
            raise ValueError(f"a piece of {end - start} samples does not fit a window of {span}")
        out[i * span : i * span + end - start] = audio[start:end]
    return out


def _nothing(audio: np.ndarray, options: DecodeOptions) -> TranscriptionResult:
    """No speech: no text, the requested language (or none), and no window ran."""
    return TranscriptionResult("", (), options.language, 0.0, audio.size / SAMPLE_RATE, window="none")


def _sentences(raw, options: DecodeOptions, duration: float) -> list[Segment]:
    """One decoded piece (a faster-whisper segment with words) as segments of a sentence
    each, cut after the words that end one (. ? !); words kept if the request asked."""
    words = [
        Word(float(min(w.start, duration)), float(min(w.end, duration)), w.word, float(w.probability))
        for w in raw.words or ()
    ]
    if not words:
        groups: list[list[Word]] = []
    else:
        groups = [[]]
        for word in words:
            if not groups[-1] or not groups[-1][-1].word.rstrip().endswith((".", "?", "!")):
                groups[-1].append(word)
            else:
                groups.append([word])
    if not groups:
        return [_segment(raw, duration)] if raw.text.strip() else []
    return [
        Segment(
            id=0,
            start=group[0].start,
            end=group[-1].end,
            text="".join(w.word for w in group),
            seek=int(group[0].start * FRAMES_PER_SECOND),
            temperature=options.temperature[0],
            avg_logprob=float(raw.avg_logprob),
            compression_ratio=float(raw.compression_ratio),
            no_speech_prob=float(raw.no_speech_prob),
            words=tuple(group) if options.word_timestamps else None,
        )
        for group in groups
    ]


def _collect(raw_segments, duration: float, on_segment) -> list[Segment]:
    segments = []
    for raw in raw_segments:  # a generator on the full path: each segment decodes as we iterate
        seg = _segment(raw, duration)
        segments.append(seg)
        if on_segment is not None:
            on_segment(seg)
    return segments


def _result(segments, info, duration: float, window: str, fallback: str | None) -> TranscriptionResult:
    return TranscriptionResult(
        text="".join(s.text for s in segments).strip(),
        segments=tuple(segments),
        language=info.language,
        language_probability=info.language_probability,
        duration=duration,
        window=window,
        fallback=fallback,
    )
