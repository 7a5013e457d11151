"""The short-audio fast path on the real model: right words and times, and a guard that holds.

The backend runs in this process (one model load for the module), as a worker runs it.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from conftest import CLIPS, clip
from whisperpool import DecodeOptions, PoolConfig, TranscriptionEngine
from whisperpool.audio import load_audio
from whisperpool.backends import BackendSpec
from whisperpool.backends import faster_whisper as fw
from whisperpool.models import resolve_model
from whisperpool.streaming.session import FINAL_NO_REPEAT_NGRAM
from whisperpool.testing import FakeBehavior
from whisperpool.wer import normalize, word_error_rate

pytestmark = pytest.mark.real_model
SHORT = CLIPS / "short"
RATE = 16_000
LANGUAGE = DecodeOptions(language="en")


@pytest.fixture(scope="module")
def backend() -> fw.FasterWhisperBackend:
    spec = BackendSpec(
        name="faster-whisper",
        model=resolve_model("base").source,
        device="cpu",
        compute_type="int8",
        cpu_threads=2,
        slot=0,
        fake=FakeBehavior(),
    )
    backend = fw.FasterWhisperBackend(spec)
    backend.load()
    backend.warm_up(LANGUAGE)
    return backend


@pytest.fixture(scope="module")
def short_texts() -> dict[str, str]:
    return json.loads((SHORT / "texts.json").read_text())


def short(name: str) -> np.ndarray:
    return load_audio(SHORT / f"{name}.wav")


@pytest.mark.parametrize(
    ("name", "keywords"),
    [
        ("s3-pasta", {"timer", "pasta", "kitchen"}),
        ("s3-station", {"nearest", "train", "station"}),
        ("s3-plants", {"remind", "water", "plants", "evening"}),
        ("s5-window", {"book", "quiet", "table", "window", "anniversary"}),
        ("s1-door", {"open", "door"}),
    ],
)
def test_short_clips_come_back_with_the_right_words_and_times_on_the_short_window(backend, short_texts, name, keywords):
    audio = short(name)
    result = backend.transcribe(audio, LANGUAGE)
    duration = audio.size / RATE
    assert result.window == "short" and result.fallback is None
    assert keywords <= set(normalize(result.text)), result.text
    assert word_error_rate(short_texts[name], result.text) <= 0.25, result.text
    assert result.duration == pytest.approx(duration)
    assert result.segments and result.segments[0].start < 0.5
    for seg in result.segments:
        assert 0.0 <= seg.start < seg.end <= duration
    # The last segment ends with the speech, not in the silence the window was padded with.
    assert result.segments[-1].end > duration - 1.0


def test_the_short_window_agrees_with_the_full_window(backend):
    audio = load_audio(clip("groceries"))
    short_result = backend.transcribe(audio, LANGUAGE)
    full_result = backend.transcribe(audio, LANGUAGE.replace(window="full"))
    assert (short_result.window, full_result.window) == ("short", "full")
    assert word_error_rate(full_result.text, short_result.text) <= 0.1, (short_result.text, full_result.text)
    assert short_result.segments[-1].end == pytest.approx(full_result.segments[-1].end, abs=0.5)


def test_word_timestamps_on_the_short_window(backend):
    audio = load_audio(clip("fox"))
    result = backend.transcribe(audio, LANGUAGE.replace(word_timestamps=True))
    assert result.window == "short"
    words = [w for seg in result.segments for w in seg.words]
    assert {"quick", "brown", "fox", "lazy", "dog"} <= set(normalize(" ".join(w.word for w in words)))
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start <= w.end <= audio.size / RATE for w in words)
    fox = next(w for w in words if "fox" in w.word.lower())
    assert 0.3 < fox.start < 1.8  # "fox" is the fourth word of a 3.4 s sentence


def test_language_detection_on_the_short_window(backend):
    result = backend.transcribe(short("s3-station"), DecodeOptions())
    assert result.window == "short"
    assert result.language == "en" and result.language_probability > 0.5
    assert "station" in normalize(result.text)


def test_initial_prompt_on_the_short_window(backend):
    result = backend.transcribe(short("s3-coffee"), LANGUAGE.replace(initial_prompt="Shopping list: coffee, bread."))
    assert result.window == "short"
    assert {"coffee", "bread", "shopping", "list"} <= set(normalize(result.text)), result.text


def test_vad_filter_sizes_the_window_to_the_speech_and_keeps_the_original_times(backend):
    speech = short("s3-pasta")
    silence = np.zeros(RATE * 12, dtype=np.float32)
    audio = np.concatenate([silence, speech, silence])  # 26 s: over the threshold without VAD
    assert audio.size / RATE > fw.SHORT_WINDOW_MAX_S
    result = backend.transcribe(audio, LANGUAGE.replace(vad_filter=True))
    assert result.window == "short"
    assert {"timer", "pasta", "kitchen"} <= set(normalize(result.text))
    assert 11.0 < result.segments[0].start < 13.0  # times are the original audio's
    assert result.duration == pytest.approx(audio.size / RATE)


def test_long_audio_and_window_full_take_the_full_window(backend):
    long_audio = np.concatenate([load_audio(clip("library")), load_audio(clip("weather"))])  # 25 s
    assert backend.transcribe(long_audio, LANGUAGE).window == "full"
    assert backend.transcribe(short("s1-door"), LANGUAGE.replace(window="full")).window == "full"


def test_the_short_window_limit_is_a_decoding_option(backend):
    assert backend.transcribe(short("s3-pasta"), LANGUAGE.replace(short_window_max_s=2.0)).window == "full"
    long_audio = np.concatenate([load_audio(clip("library")), load_audio(clip("weather"))])  # 25 s
    result = backend.transcribe(long_audio, LANGUAGE.replace(short_window_max_s=30.0))
    assert result.window == "short" or result.fallback is not None, (result.window, result.fallback)


class _Looping:
    """The CTranslate2 model with its end-of-text token suppressed on the passes ``loops``
    picks: the decoder cannot stop, as a looping decoding does not, and runs to its
    token cap. Every pass is recorded as (window positions, new tokens allowed), whether
    it forbids repeats in ``no_repeat``, and every encoder run's frames in ``encoded``."""

    def __init__(self, model, eot: int, loops) -> None:
        self._model, self._eot, self._loops = model, eot, loops
        self.passes: list[tuple[int, int]] = []
        self.no_repeat: list[bool] = []
        self.ngram: list[int] = []  # no_repeat_ngram_size of each pass (0: none)
        self.encoded: list[int] = []

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def encode(self, features, *args, **kwargs):
        self.encoded.append(features.shape[-1])
        return self._model.encode(features, *args, **kwargs)

    def generate(self, features, prompts, **kwargs):
        positions = features.shape[1]  # the encoder's output: 1500 for the full 30 s window
        self.passes.append((positions, kwargs["max_length"] - len(prompts[0])))
        self.no_repeat.append(bool(kwargs.get("no_repeat_ngram_size")))
        self.ngram.append(kwargs.get("no_repeat_ngram_size") or 0)
        if self._loops(positions, kwargs):
            kwargs["suppress_tokens"] = [*kwargs.get("suppress_tokens", []), self._eot]
        return self._model.generate(features, prompts, **kwargs)


@pytest.fixture
def looping(backend, monkeypatch):
    """Make chosen passes loop: ``looping(lambda positions, kwargs: ...)`` returns the recorder."""

    def install(loops) -> _Looping:
        wrapper = backend.model.model  # DeterministicFallback
        recorder = _Looping(wrapper._model, backend.model.hf_tokenizer.token_to_id("<|endoftext|>"), loops)
        monkeypatch.setattr(wrapper, "_model", recorder)
        return recorder

    return install


FULL_WINDOW = 1500  # encoder positions of the 30 s window


FINAL = LANGUAGE.replace(beam_size=5, word_timestamps=True)


def test_a_looping_pass_is_cut_at_the_token_cap_and_retried_once_on_the_snug_window(backend, looping):
    """A final's first pass loops on the 8 s window: it stops at the token cap, not at
    Whisper's 448, and one more pass answers: the same audio on a window without the
    floor's long silent pad, at the step that forbids repeats; no full window runs."""
    audio = short("s3-pasta")  # 3 s: an 8 s window (the floor), a 5 s one snug
    floor = fw.SHORT_WINDOW_MIN_S * 50  # encoder positions: 50 a second
    recorder = looping(lambda positions, kwargs: positions == floor)
    result = backend.transcribe(audio, FINAL)
    assert (result.window, result.fallback) == ("short", None)
    assert result.retried in fw.RETRIED_ON_SHORT, result.retried
    assert {"timer", "pasta", "kitchen"} <= set(normalize(result.text)), result.text
    cap = fw.token_cap(audio.size / RATE)
    assert cap < 100
    snug = 50 * math.ceil(audio.size / RATE + fw.SHORT_WINDOW_TAIL_S)
    assert recorder.passes == [(floor, cap), (snug, cap)]  # the loop, then its retry
    assert recorder.no_repeat == [False, True]
    assert result.segments[-1].end <= audio.size / RATE


def test_a_loop_on_the_snug_window_too_is_mended_on_the_first_window_without_encoding_it_again(backend, looping):
    audio = short("s3-pasta")
    floor = fw.SHORT_WINDOW_MIN_S * 50
    recorder = looping(lambda positions, kwargs: positions != floor or not kwargs.get("no_repeat_ngram_size"))
    result = backend.transcribe(audio, FINAL)
    assert (result.window, result.fallback) == ("short", None)
    assert result.retried in fw.RETRIED_ON_SHORT, result.retried
    assert {"timer", "pasta", "kitchen"} <= set(normalize(result.text)), result.text
    snug = 50 * math.ceil(audio.size / RATE + fw.SHORT_WINDOW_TAIL_S)
    assert [positions for positions, _ in recorder.passes] == [floor, snug, floor]
    assert recorder.no_repeat == [False, True, True]
    assert recorder.encoded == [2 * floor, 2 * snug]  # mel frames: the floor's window once


def test_without_a_step_that_forbids_repeats_a_loop_is_retried_on_the_snug_window_as_it_was(backend, looping):
    audio = short("s3-pasta")
    floor = fw.SHORT_WINDOW_MIN_S * 50
    recorder = looping(lambda positions, kwargs: positions == floor)
    result = backend.transcribe(audio, FINAL.replace(temperature=(0.0, 0.2, 0.4)))
    assert (result.window, result.fallback) == ("short", None), (result.window, result.fallback)
    assert {"timer", "pasta", "kitchen"} <= set(normalize(result.text)), result.text
    snug = 50 * math.ceil(audio.size / RATE + fw.SHORT_WINDOW_TAIL_S)
    assert [positions for positions, _ in recorder.passes] == [floor, snug]
    assert recorder.no_repeat == [False, False]


def test_a_pass_that_loops_on_every_short_try_goes_to_the_full_window_every_pass_capped(backend, looping):
    """Every short-window pass loops: the full window answers, each of its passes under the
    same cap (here set with ``max_tokens_per_s``)."""
    audio = short("s3-pasta")
    recorder = looping(lambda positions, kwargs: positions < FULL_WINDOW)
    result = backend.transcribe(audio, FINAL.replace(max_tokens_per_s=12))
    assert result.window == "full" and result.fallback in fw.RETRIED_ON_SHORT, (result.window, result.fallback)
    assert result.retried is None
    assert {"timer", "pasta", "kitchen"} <= set(normalize(result.text)), result.text
    windows = [positions for positions, _ in recorder.passes]
    assert all(p < FULL_WINDOW for p in windows[:3]) and windows[3:] and set(windows[3:]) == {FULL_WINDOW}
    assert recorder.encoded.count(2 * fw.SHORT_WINDOW_MIN_S * 50) == 1  # the floor's window, encoded once
    assert {allowed for _, allowed in recorder.passes} == {fw.token_cap(audio.size / RATE, 12)}
    # A partial (window="short") is not retried: the next update replaces it.
    recorder.passes.clear()
    partial = backend.transcribe(audio, FINAL.replace(window="short"))
    assert (partial.window, partial.text, len(recorder.passes)) == ("short", "", 1)


def test_no_repeat_ngram_size_reaches_the_passes_at_t0_and_the_step_keeps_at_most_its_4(backend, looping):
    """``no_repeat_ngram_size`` (a streaming final's: 4) reaches CTranslate2 on the passes
    at T=0; the step that forbids repeats keeps its 4 on the retry, or the option if smaller."""
    audio = short("s3-pasta")
    floor = fw.SHORT_WINDOW_MIN_S * 50
    recorder = looping(lambda positions, kwargs: positions == floor and kwargs["no_repeat_ngram_size"] == 8)
    result = backend.transcribe(audio, FINAL.replace(no_repeat_ngram_size=8))
    assert result.retried in fw.RETRIED_ON_SHORT and {"timer", "pasta"} <= set(normalize(result.text))
    assert recorder.ngram == [8, fw.NO_REPEAT_NGRAM]
    recorder.ngram.clear()
    backend.transcribe(audio, FINAL.replace(no_repeat_ngram_size=2))  # smaller: the step keeps that
    assert recorder.ngram[0] == 2 and all(n == 2 for n in recorder.ngram)


@pytest.mark.parametrize("name", ["s3-pasta", "s3-station", "s5-window", "s1-door"])
def test_clean_speech_reads_the_same_without_the_repeats_a_final_forbids(backend, name):
    """What a streaming final's first pass forbids is a loop, not speech."""
    audio = short(name)
    plain = backend.transcribe(audio, FINAL)
    final = backend.transcribe(audio, FINAL.replace(no_repeat_ngram_size=FINAL_NO_REPEAT_NGRAM))
    assert (final.text, final.window, final.retried) == (plain.text, "short", None)


def test_hard_audio_keeps_its_short_window_text_when_low_confidence_is_no_reason_to_fall_back(backend, looping):
    """A sentence under babble at 10 dB SNR (a tuning clip of the dev set), cut as a
    streaming final is: its short-window decoding has a low log-probability. The default
    decodes it again on the full window; a stream's final keeps the short window."""
    meta = json.loads((CLIPS / "eval" / "eval.json").read_text())["en-03s-babble-10db-3"]
    audio = load_audio(CLIPS / "eval" / "en-03s-babble-10db-3.opus")[: int((meta["speech_end_s"] + 0.4) * RATE)]
    final = DecodeOptions(language="en", beam_size=5, word_timestamps=True)
    recorder = looping(lambda positions, kwargs: False)  # nothing loops: only counts the passes
    default = backend.transcribe(audio, final)
    assert (default.window, default.fallback) == ("full", "log_probability")
    # Unsure is not looping: no retry on the short window, straight to the full one.
    assert [p < FULL_WINDOW for p, _ in recorder.passes][:2] == [True, False]
    kept = backend.transcribe(audio, final.replace(low_confidence_fallback=False))
    assert (kept.window, kept.fallback) == ("short", None)
    assert kept.text.strip() and kept.segments[-1].end <= audio.size / RATE


def _stress_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(RATE * 2) / RATE
    fox = load_audio(clip("fox"))
    return {
        "silence": np.zeros(RATE * 3, dtype=np.float32),
        "low noise": (0.003 * rng.standard_normal(RATE * 3)).astype(np.float32),
        "pure tone": (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        "clipped speech": fox[: int(RATE * 1.3)],  # cut in the middle of "brown"
        "one word": short("word-yes"),
    }


@pytest.mark.parametrize("name", list(_stress_inputs()))
def test_stress_inputs_never_loop_or_invent_long_text(backend, name):
    audio = _stress_inputs()[name]
    result = backend.transcribe(audio, LANGUAGE)
    words = normalize(result.text)
    assert fw.repeated_phrase(words) is None, result.text
    if name == "one word":
        assert "yes" in words and len(words) <= 2, result.text
    elif name == "clipped speech":
        assert {"quick"} <= set(words) and len(words) <= 5, result.text
        assert set(words) <= set(normalize("The quick brown fox")) | {"bro", "brow", "bra"}, result.text
    else:
        assert len(words) <= 3, result.text


def test_the_pool_counts_short_windows(clip_texts):
    config = PoolConfig(pool_size=1, threads_per_worker=2, decode=LANGUAGE)
    with TranscriptionEngine(config) as engine:
        result = engine.transcribe_sync(clip("fox"))
        assert result.window == "short"
        assert engine.status().short_window_requests == 1
        result = engine.transcribe_sync(clip("fox"), window="full")
        assert result.window == "full"
        assert engine.status().short_window_requests == 1
        assert engine.status().window_fallbacks == {}


@pytest.mark.parametrize("quiet_s", [2.5, 0.5])  # a long recording's pieces; a batch of requests
def test_a_piece_gone_astray_in_a_batch_is_decoded_again_alone(backend, clip_texts, quiet_s):
    """Batched decoding has no temperature ladder: a piece whose pass loops (made to here,
    as the long-recording benchmark saw one loop on "four four four ...") is decoded again
    the ordinary way, and only it; the others keep their batched text."""
    first, second = load_audio(clip("weather")), load_audio(clip("fox"))
    gap = np.zeros(int(quiet_s * RATE), np.float32)
    audio = np.concatenate([first, gap, second])
    pieces = ((0, first.size), (first.size + gap.size, audio.size))
    pipeline = backend._batched
    real = pipeline.transcribe if pipeline is not None else None

    def looping(*args, **kwargs):
        segments, info = real(*args, **kwargs)
        out = list(segments)
        last = out[-1]
        out[-1] = dataclasses.replace(last, text=" four" * 60, compression_ratio=1.0)  # the second piece loops
        return out, info

    import faster_whisper

    if pipeline is None:
        backend._batched = pipeline = faster_whisper.BatchedInferencePipeline(backend.model)
        real = pipeline.transcribe
    pipeline.transcribe = looping
    try:
        result = backend.transcribe_pieces(
            audio, pieces, LANGUAGE.replace(short_window_max_s=30.0 if quiet_s < 1 else 8.0)
        )
    finally:
        del pipeline.transcribe  # the bound method again
    assert result.fallback == "repetition"
    second_start = pieces[1][0] / RATE
    before = [s for s in result.segments if s.end <= second_start]
    after = [s for s in result.segments if s.start >= second_start - 0.5]
    assert word_error_rate(clip_texts["weather"], "".join(s.text for s in before)) <= 0.25
    assert word_error_rate(clip_texts["fox"], "".join(s.text for s in after)) <= 0.25, result.text
    assert all(s.end <= audio.size / RATE + 0.5 for s in result.segments)
    assert [s.id for s in result.segments] == list(range(1, len(result.segments) + 1))
