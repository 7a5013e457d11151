"""The short window: the guard's rules on decodings made up to hit each one, its size, its limit.

The guard is a pure function of one decoding pass in plain values (``Decoding``); the
real backend builds one from faster-whisper's result after each short-window pass (the
real model's side is in ``test_fast_path.py``, the internals it reads in
``test_backend_internals.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import WAIT, fake_config
from whisperpool import ConfigError, DecodeOptions, TranscriptionEngine
from whisperpool.backends import faster_whisper as fw

TS = 50_000  # the first timestamp token of a made-up vocabulary
WORDS = ["", "hello", "there", "go", "to", "it", "the", "quick", "brown", "fox"]  # token i is WORDS[i]


def decoding(words, *, end_timestamp=True, logprob=-0.3, compression=1.2, no_speech=0.01, cap=40) -> fw.Decoding:
    tokens = [TS] + [WORDS.index(w) for w in words] + ([TS + 100] if end_timestamp else [])
    return fw.Decoding(
        tokens=tuple(tokens),
        text=" ".join(words),
        timestamp_begin=TS,
        avg_logprob=logprob,
        compression_ratio=compression,
        no_speech_prob=no_speech,
        max_new_tokens=cap,
    )


def test_a_clean_decoding_passes():
    fw.guard(decoding(["the", "quick", "brown", "fox"]))
    fw.guard(decoding([], end_timestamp=False))  # nothing said: nothing to reject
    fw.guard(decoding(["the", "quick"], cap=None))  # no cap given: none to hit


@pytest.mark.parametrize(
    ("dec", "reason"),
    [
        (decoding(["go", "to", "it"] * 3), "repetition"),
        (decoding(["hello"] * 4), "repetition"),
        (decoding(["the", "quick"], compression=2.6), "compression_ratio"),
        (decoding(["the", "quick"], logprob=-1.4), "log_probability"),
        (decoding(["the", "quick", "brown", "fox"], end_timestamp=False), "no_end_timestamp"),
        (decoding(["the", "quick", "brown", "fox"], cap=6), "token_cap"),  # 6 tokens with the timestamps
    ],
)
def test_each_rule_rejects_what_it_should(dec, reason):
    with pytest.raises(fw.NeedsFullWindow) as info:
        fw.guard(dec)
    assert info.value.reason == reason and reason in fw.FALLBACK_REASONS


def test_silence_with_a_low_log_probability_or_no_end_timestamp_is_not_a_fallback():
    fw.guard(decoding(["hello"], logprob=-1.5, no_speech=0.9))
    fw.guard(decoding(["hello"], end_timestamp=False, no_speech=0.9))


def test_without_low_confidence_fallback_only_a_low_log_probability_passes():
    """What a streaming session asks for: hard audio keeps its short-window text, while a
    loop, a cut or a runaway decoding still goes to the full window."""
    fw.guard(decoding(["the", "quick"], logprob=-1.4), low_confidence_fallback=False)
    for dec, reason in [
        (decoding(["go", "to", "it"] * 3, logprob=-1.4), "repetition"),
        (decoding(["the", "quick", "brown", "fox"], end_timestamp=False), "no_end_timestamp"),
        (decoding(["the", "quick", "brown", "fox"], cap=6), "token_cap"),
        (decoding(["the", "quick"], compression=2.6), "compression_ratio"),
    ]:
        with pytest.raises(fw.NeedsFullWindow) as info:
            fw.guard(dec, low_confidence_fallback=False)
        assert info.value.reason == reason


def test_repeated_phrase_finds_loops_not_speech():
    assert fw.repeated_phrase("go to it go to it go to it".split()) == "go to it"
    assert fw.repeated_phrase("no no no".split()) is None  # people say that
    assert fw.repeated_phrase("the quick brown fox jumps over the lazy dog".split()) is None


def test_the_window_is_sized_to_the_audio():
    assert fw.short_window_seconds(1.0) == fw.SHORT_WINDOW_MIN_S
    assert fw.short_window_seconds(12.2, max_s=24.0) == 14  # 12.2 s + 1 s of silence, rounded up
    assert fw.short_window_seconds(fw.SHORT_WINDOW_MAX_S + 0.1) is None
    assert fw.short_window_seconds(fw.SHORT_WINDOW_MAX_S + 0.1, max_s=30.0) is not None
    assert fw.token_cap(1.0) < fw.token_cap(10.0) <= fw.TOKENS_MAX


def test_the_limit_is_a_decoding_option():
    assert DecodeOptions().short_window_max_s == fw.SHORT_WINDOW_MAX_S
    assert DecodeOptions(short_window_max_s=30).short_window_max_s == 30
    for bad in (0, -1.0, 30.5, "24", True):
        with pytest.raises(ConfigError, match="short_window_max_s"):
            DecodeOptions(short_window_max_s=bad)


def test_the_pool_answers_with_the_window_the_limit_picks():
    two_seconds = np.zeros(32_000, dtype=np.float32)
    with TranscriptionEngine(fake_config(pool_size=1)) as engine:  # warm when the block starts

        def window(**options) -> str:
            return engine.transcribe_sync(two_seconds, timeout=WAIT, **options).window

        assert window() == "short"
        assert window(short_window_max_s=1.5) == "full"
        # The limit is for window="auto": "short" asks for the short window whatever the length.
        assert window(window="short", short_window_max_s=1.5) == "short"
