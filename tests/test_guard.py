"""The short-window guard's rules, on decodings made up to hit each one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from whisperpool.backends import faster_whisper as fw

TS = 50_000  # the first timestamp token of our made-up vocabulary


class Tokenizer:
    """Words are tokens 1..n of ``WORDS``; tokens from ``TS`` up are timestamps."""

    timestamp_begin = TS
    WORDS = ["", "hello", "there", "go", "to", "it", "the", "quick", "brown", "fox"]

    def decode(self, tokens):
        return " ".join(self.WORDS[t] for t in tokens)


def decoded(words, *, end_timestamp=True, logprob=-0.3, compression=1.2, no_speech=0.01):
    tokens = [TS] + [Tokenizer.WORDS.index(w) for w in words]
    if end_timestamp:
        tokens.append(TS + 100)
    result = SimpleNamespace(sequences_ids=[tokens], no_speech_prob=no_speech)
    return (result, logprob, 0.0, compression)


def guard(dec, cap=40):
    fw._guard(dec, Tokenizer(), SimpleNamespace(max_new_tokens=cap))


def test_a_clean_decoding_passes():
    guard(decoded(["the", "quick", "brown", "fox"]))
    guard(decoded([], end_timestamp=False))  # nothing said: nothing to reject


@pytest.mark.parametrize(
    ("dec", "reason"),
    [
        (decoded(["go", "to", "it"] * 3), "repetition"),
        (decoded(["hello"] * 4), "repetition"),
        (decoded(["the", "quick"], compression=2.6), "compression_ratio"),
        (decoded(["the", "quick"], logprob=-1.4), "log_probability"),
        (decoded(["the", "quick", "brown", "fox"], end_timestamp=False), "no_end_timestamp"),
    ],
)
def test_each_rule_rejects_what_it_should(dec, reason):
    with pytest.raises(fw.NeedsFullWindow) as info:
        guard(dec)
    assert info.value.reason == reason and reason in fw.FALLBACK_REASONS


def test_the_token_cap():
    with pytest.raises(fw.NeedsFullWindow) as info:
        guard(decoded(["the", "quick", "brown", "fox"]), cap=6)
    assert info.value.reason == "token_cap"


def test_silence_with_a_low_log_probability_is_not_a_fallback():
    guard(decoded(["hello"], logprob=-1.5, no_speech=0.9))


def test_repeated_phrase_finds_loops_not_speech():
    assert fw.repeated_phrase("go to it go to it go to it".split()) == "go to it"
    assert fw.repeated_phrase("no no no".split()) is None  # people say that
    assert fw.repeated_phrase("the quick brown fox jumps over the lazy dog".split()) is None


def test_the_window_is_sized_to_the_audio():
    assert fw.short_window_seconds(1.0) == fw.SHORT_WINDOW_MIN_S
    assert fw.short_window_seconds(12.2) == 14  # 12.2 s + 1 s of silence, rounded up
    assert fw.short_window_seconds(fw.SHORT_WINDOW_MAX_S + 0.1) is None
    assert fw.token_cap(1.0) < fw.token_cap(10.0) <= fw.TOKENS_MAX
