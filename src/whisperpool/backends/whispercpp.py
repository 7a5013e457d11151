"""The whisper.cpp backend, on the ``pywhispercpp`` bindings (CPU).

The model is a ggml file: the packaged model converted once by :mod:`whisperpool.ggml`
(``base``, ``base-q8_0``, ``base-q5_0``) or a user's own file (see
:func:`whisperpool.models.resolve_ggml`). Everything above the backend is the same as for
faster-whisper; the differences are here:

* **Short audio** takes the same fast path: whisper.cpp's ``audio_ctx`` is the encoder's
  window (50 positions a second; whisper.cpp pads the audio with silence itself), sized
  as for faster-whisper (:func:`~.faster_whisper.short_window_seconds`) and rounded up
  to 256 positions (5.12 s; see :func:`audio_ctx`), so at least 10.24 s. The same guard
  checks the one decoding pass (:func:`~.faster_whisper.guard`) and sends a rejected
  one to the full window; a second encoder pass (the decoder stopped short of the end)
  is aborted at once and counts as ``stopped_early``. whisper.cpp reports no
  no-speech probability per segment, so the guard treats every window as speech (the
  speech gate has already kept silence out).
* **Determinism**: whisper.cpp samples its temperature fallback with a random generator
  it does not reseed between requests, so ``sampling="deterministic"`` (the default)
  turns the fallback off: one pass at ``temperature[0]``; ``"random"`` keeps whisper.cpp's
  fallback (its step is the ladder's first step).
* **Context**: a request never sees the previous request's text (whisper.cpp's
  ``no_context``); within a request the previous window conditions the next unless
  ``condition_on_previous_text=False``, which also drops ``initial_prompt``.
* **Words** come from whisper.cpp's token timestamps; ``language_probability`` is 0.0
  when the language was detected (whisper.cpp does not report it; 1.0 when given).
* **Not available**: ``vad_filter`` (whisper.cpp's VAD needs a model file that does not
  ship): such a request fails with :class:`~whisperpool.errors.InvalidParameter`.
  ``no_repeat_ngram_size`` is ignored: whisper.cpp has no such constraint (a streaming
  final asks for it on every backend).
  Long recordings cut into pieces decode the pieces one after another, each as a request
  (with timestamp tokens, so ``segment_timestamps`` saves nothing and is ignored).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import zlib

import numpy as np

from ..audio import SAMPLE_RATE
from ..config import DecodeOptions
from ..errors import InvalidParameter, ModelError, TranscriptionError
from ..results import Segment, TranscriptionResult, Word
from . import BackendSpec, SegmentCallback
from .faster_whisper import Decoding as GuardedDecoding
from .faster_whisper import (
    NeedsFullWindow,
    guard,
    hears_speech,
    short_window_seconds,
    speech_regions,
    token_cap,
)

log = logging.getLogger(__name__)

POSITIONS_PER_S = 50  # encoder positions: whisper.cpp's audio_ctx is 1500 for 30 s
FULL_CTX = 1500  # 30 s
CTX_ALIGN = 256  # whisper.cpp pads the attention's window to this many positions
CENTISECONDS = 100  # whisper.cpp's timestamps are in 10 ms units


def audio_ctx(window_s: int) -> int:
    """whisper.cpp's ``audio_ctx`` for a short window of ``window_s`` seconds: rounded up
    to a multiple of :data:`CTX_ALIGN` positions, at most Whisper's 1500.

    With flash attention (whisper.cpp's default) the encoder and the cross-attention
    attend over the window padded to 256 positions, unmasked; a window that is not a
    multiple of 256 would read, in that padding, what an earlier, longer window left
    there, and the text would depend on the previous request."""
    positions = math.ceil(window_s * POSITIONS_PER_S / CTX_ALIGN) * CTX_ALIGN
    return min(positions, FULL_CTX)


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class WhisperCppBackend:
    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        self._ctx = None
        self._pw = None
        self._language: str | None = None  # what the last decoding detected

    def load(self) -> None:
        # whisper.cpp's OpenMP threads spin while they wait for work; beside other workers
        # on the same cores that spinning takes their time: wait passively (unless set).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import _pywhispercpp as pw
        from pywhispercpp.utils import redirect_stderr

        self._pw = pw
        # whisper.cpp logs every load and call on stderr: quiet below warnings. The hook
        # is taken off before the interpreter shuts down, when it could no longer run.
        pw.whisper_log_set(self._log)
        atexit.register(pw.whisper_log_set, None)
        context = pw.whisper_context_default_params()
        context.use_gpu = False  # the wheel is CPU-only; say so rather than probe
        with redirect_stderr(to=None):
            self._ctx = pw.whisper_init_from_file_with_params(self.spec.model, context)
        if self._ctx is None:
            raise ModelError(f"whisper.cpp cannot load the ggml model {self.spec.model!r}")

    @staticmethod
    def _log(level, text, user_data=None) -> None:
        text = str(text).rstrip()
        # GGML_LOG_LEVEL_WARN and _ERROR; asking for language "auto" is how detection is asked
        # for, and the encoder callback's refusal is how a short window stops (the guard's)
        if int(level) in (3, 4) and "unknown language 'auto'" not in text and "encoder_begin_callback" not in text:
            log.warning("whisper.cpp: %s", text)

    def warm_up(self, options: DecodeOptions) -> tuple[str, ...]:
        """Run each path a request can take once: the short window, then the full one."""
        windows = ("short", "full") if options.window == "auto" else (options.window,)
        for window in windows:  # through the decoder: silence must not be skipped here
            self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), options.replace(window=window, speech_gate=False))
        return windows

    # -- one request ----------------------------------------------------------------------
    def transcribe(
        self, audio: np.ndarray, options: DecodeOptions, on_segment: SegmentCallback | None = None
    ) -> TranscriptionResult:
        assert self._ctx is not None, "load() first"
        _check_supported(options)
        duration = audio.size / SAMPLE_RATE
        if options.speech_gate and not hears_speech(audio):
            return TranscriptionResult("", (), options.language, 0.0, duration, window="none")
        window = None
        if options.window != "full":
            max_s = 30.0 if options.window == "short" else options.short_window_max_s
            window = short_window_seconds(duration, max_s)
        if window is not None:
            try:
                segments = self._decode(audio, options, window=window)
                guard(self._decoding(segments, duration, options.max_tokens_per_s))
                for seg in segments if on_segment is not None else ():
                    on_segment(seg)
                return self._result(segments, options, duration, "short", None)
            except NeedsFullWindow as exc:
                if options.window == "short":
                    log.debug("short window rejected (%s); no fallback asked for", exc)
                    return TranscriptionResult(
                        "", (), options.language, 0.0, duration, window="short", fallback=exc.reason
                    )
                log.info("short window rejected (%s); decoding the full window", exc)
                segments = self._decode(audio, options, window=None, on_segment=on_segment)
                return self._result(segments, options, duration, "full", exc.reason)
        segments = self._decode(audio, options, window=None, on_segment=on_segment)
        return self._result(segments, options, duration, "full", None)

    def transcribe_pieces(self, audio: np.ndarray, pieces, options: DecodeOptions) -> TranscriptionResult:
        """A long recording's pieces, one after another (whisper.cpp decodes one window at a
        time), each as a request of its own; segments moved onto ``audio``'s timeline."""
        segments: list[Segment] = []
        language = options.language
        for start, end in pieces:
            result = self.transcribe(audio[start:end], options.replace(language=language))
            language = language or result.language
            offset = start / SAMPLE_RATE
            for seg in result.segments:
                segments.append(seg.moved(offset, int(math.floor(offset * CENTISECONDS)), len(segments) + 1))
        duration = audio.size / SAMPLE_RATE
        text = "".join(s.text for s in segments).strip()
        probability = 1.0 if options.language else 0.0
        return TranscriptionResult(text, tuple(segments), language, probability, duration, window="full")

    def plan(self, audio: np.ndarray, options: DecodeOptions, max_piece_s: float, detect_language: bool = True):
        """Speech regions by Silero VAD (as for faster-whisper); the language, when open,
        detected by whisper.cpp on the first speech, with its probability."""
        assert self._ctx is not None, "load() first"
        regions = speech_regions(audio, max_piece_s)
        if options.language is not None or not regions or not detect_language:
            return regions, options.language, 1.0 if options.language else 0.0
        start = regions[0][0]
        return (regions, *self.detect_language(audio[start : start + 30 * SAMPLE_RATE]))

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        pw = self._pw
        pw.whisper_pcm_to_mel(self._ctx, audio, audio.size, self.spec.cpu_threads)
        probs = np.zeros(pw.whisper_lang_max_id() + 1, dtype=np.float32)
        best = pw.whisper_lang_auto_detect(self._ctx, 0, self.spec.cpu_threads, probs)
        if best < 0:
            raise TranscriptionError(f"whisper.cpp could not detect the language (error {best})")
        return pw.whisper_lang_str(best), float(probs[best])

    # -- whisper.cpp ----------------------------------------------------------------------
    def _params(self, options: DecodeOptions, window: int | None):
        pw = self._pw
        beam = options.beam_size > 1
        strategy = pw.whisper_sampling_strategy
        params = pw.whisper_full_default_params(
            strategy.WHISPER_SAMPLING_BEAM_SEARCH if beam else strategy.WHISPER_SAMPLING_GREEDY
        )
        params.n_threads = self.spec.cpu_threads
        params.print_progress = params.print_realtime = params.print_timestamps = False
        params.language = options.language or "auto"
        params.translate = options.task == "translate"
        params.no_context = True  # nothing carried over from the previous request
        params.suppress_nst = True  # faster-whisper's default suppress_tokens=[-1]
        params.token_timestamps = options.word_timestamps
        ladder = options.temperature
        params.temperature = ladder[0]
        random = options.sampling == "random" and window is None and len(ladder) > 1
        params.temperature_inc = ladder[1] - ladder[0] if random else 0.0
        # best_of decoders sample above temperature 0; whisper.cpp sizes its self-attention
        # cache for all of them, so only a pass that can sample asks for more than one.
        sampled = random or ladder[0] > 0
        params.greedy = {"best_of": options.best_of if sampled else 1}
        if beam:
            params.beam_search = {"beam_size": options.beam_size, "patience": -1.0}
        if not options.condition_on_previous_text:
            params.n_max_text_ctx = 0
        elif options.initial_prompt:
            params.initial_prompt = options.initial_prompt
        params.audio_ctx = audio_ctx(window) if window is not None else 0
        return params

    def _decode(self, audio, options: DecodeOptions, window: int | None, on_segment=None) -> list[Segment]:
        pw, ctx = self._pw, self._ctx
        params = self._params(options, window)
        duration = audio.size / SAMPLE_RATE
        encodes = 0

        def on_encoder_begin(*_args) -> bool:
            nonlocal encodes
            encodes += 1
            return window is None or encodes == 1  # False aborts: the window was not enough

        segments: list[Segment] = []

        def on_new_segments(_ctx, n_new, user_data=None) -> None:
            n = pw.whisper_full_n_segments(ctx)
            for i in range(n - n_new, n):
                segments.append(self._segment(i, options, duration))
                if on_segment is not None and window is None:
                    on_segment(segments[-1])

        pw.assign_encoder_begin_callback(params, on_encoder_begin)
        pw.assign_new_segment_callback(params, on_new_segments)
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        status = pw.whisper_full(ctx, params, samples, samples.size)
        if status != 0:
            raise TranscriptionError(f"whisper.cpp failed to transcribe (error {status})")
        if encodes > 1 and window is not None:
            raise NeedsFullWindow("stopped_early", "decoding stopped before the end of the window")
        self._language = pw.whisper_lang_str(pw.whisper_full_lang_id(ctx))
        return segments

    def _segment(self, i: int, options: DecodeOptions, duration: float) -> Segment:
        pw, ctx = self._pw, self._ctx
        eot = pw.whisper_token_eot(ctx)
        beg = pw.whisper_token_beg(ctx)
        data = [pw.whisper_full_get_token_data(ctx, i, j) for j in range(pw.whisper_full_n_tokens(ctx, i))]
        kept = [d for d in data if d.id < eot or d.id >= beg]  # text and timestamps; not SOT, language, ...
        text_tokens = [d for d in data if d.id < eot]
        text = pw.whisper_full_get_segment_text(ctx, i).decode("utf-8", errors="replace")
        start = min(pw.whisper_full_get_segment_t0(ctx, i) / CENTISECONDS, duration)
        end = min(pw.whisper_full_get_segment_t1(ctx, i) / CENTISECONDS, duration)
        words = None
        if options.word_timestamps:
            words = _words(text_tokens, duration, lambda t: pw.whisper_token_to_bytes(ctx, t))
        return Segment(
            id=i + 1,
            start=start,
            end=end,
            text=text,
            seek=int(start * CENTISECONDS),
            tokens=tuple(int(d.id) for d in kept),
            temperature=options.temperature[0],
            # Text tokens only: whisper.cpp gives a timestamp token its probability among all
            # tokens, where Whisper's rules have already masked the text ones (-3 for a sure one).
            avg_logprob=float(np.mean([d.plog for d in text_tokens])) if text_tokens else 0.0,
            compression_ratio=_compression_ratio(text),
            no_speech_prob=0.0,
            words=words,
        )

    def _decoding(self, segments: list[Segment], duration: float, tokens_per_s: float) -> GuardedDecoding:
        """The short window's whole pass, as the guard reads it."""
        tokens = tuple(t for s in segments for t in s.tokens)
        text = "".join(s.text for s in segments)
        logprob = (
            np.average([s.avg_logprob for s in segments], weights=[max(1, len(s.tokens)) for s in segments])
            if segments
            else 0.0
        )
        return GuardedDecoding(
            tokens=tokens,
            text=text,
            timestamp_begin=self._pw.whisper_token_beg(self._ctx),
            avg_logprob=float(logprob),
            compression_ratio=_compression_ratio(text),
            no_speech_prob=0.0,
            max_new_tokens=token_cap(duration, tokens_per_s),
        )

    def _result(self, segments, options: DecodeOptions, duration: float, window: str, fallback) -> TranscriptionResult:
        return TranscriptionResult(
            text="".join(s.text for s in segments).strip(),
            segments=tuple(segments),
            language=options.language or self._language,
            language_probability=1.0 if options.language else 0.0,
            duration=duration,
            window=window,
            fallback=fallback,
        )


def _check_supported(options: DecodeOptions) -> None:
    if options.vad_filter:
        raise InvalidParameter("vad_filter is not supported by the whisper.cpp backend", param="vad_filter")


def _words(tokens, duration: float, to_bytes) -> tuple[Word, ...]:
    """Words from text tokens with timestamps: a token that starts with a space starts a
    word; a word's probability is the mean of its tokens'."""
    groups: list[list] = []
    for d in tokens:
        piece = to_bytes(d.id)
        if not groups or piece.startswith(b" "):
            groups.append([])
        groups[-1].append((d, piece))
    words = []
    for group in groups:
        text = b"".join(piece for _, piece in group).decode("utf-8", errors="replace")
        start = min(group[0][0].t0 / CENTISECONDS, duration)
        end = min(max(group[-1][0].t1 / CENTISECONDS, start), duration)
        words.append(Word(start, end, text, float(np.mean([d.p for d, _ in group]))))
    return tuple(words)
