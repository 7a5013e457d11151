"""Word error rate, for tests and benchmarks: (substitutions + deletions + insertions) / words.

Both texts are normalised alike (:func:`normalize`): lower case, no punctuation, letters
of any alphabet kept, numbers written in digits spelled out as words (``25`` ->
``twenty five``, ``4th`` -> ``fourth``, ``7:30`` -> ``seven thirty``) and a few English
abbreviations expanded (``Dr`` -> ``doctor``), so that a reference written in words and
Whisper's digits compare as the same words.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"(?:[^\W_]|')+")
_NUMBER = re.compile(r"^(\d+)(st|nd|rd|th)?$")

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_CURRENCIES = {"$": "dollars", "£": "pounds", "€": "euros"}
_ABBREVIATIONS = {"dr": "doctor", "mr": "mister", "mrs": "missus", "ms": "miss", "ok": "okay"}


def _spell(n: int) -> list[str]:
    """``n`` (0 to 999,999) in English words, without "and"; larger numbers digit by digit."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (_spell(n % 100) if n % 100 else [])
    if n < 1_000_000:
        return _spell(n // 1000) + ["thousand"] + (_spell(n % 1000) if n % 1000 else [])
    return [_ONES[int(d)] for d in str(n)]


def _ordinal(words: list[str]) -> list[str]:
    last = words[-1]
    if last in _ORDINAL:
        last = _ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return words[:-1] + [last]


def _expand(word: str) -> list[str]:
    match = _NUMBER.match(word)
    if match is None:
        return [_ABBREVIATIONS.get(word, word)]
    digits, suffix = match.groups()
    if len(digits) > 1 and digits.startswith("0"):  # "007", a code: digit by digit
        return [_ONES[int(d)] for d in digits]
    words = _spell(int(digits))
    return _ordinal(words) if suffix else words


def normalize(text: str) -> list[str]:
    """Lowercase words without punctuation, numbers in digits spelled out (see the module)."""
    text = text.casefold().replace("’", "'")
    text = re.sub(r"(?<=\d)[,](?=\d{3}\b)", "", text)  # 1,500 -> 1500
    text = re.sub(r"(\d)%", r"\1 percent", text)
    for sign, unit in _CURRENCIES.items():  # $40 -> 40 dollars
        text = re.sub(rf"{re.escape(sign)}(\d+)", rf"\1 {unit}", text)
    words: list[str] = []
    for word in _WORD.findall(text):
        word = word.strip("'")
        if word:
            words += _expand(word)
    return words


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1] / len(ref)


__all__ = ["normalize", "word_error_rate"]
