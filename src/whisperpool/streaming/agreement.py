"""LocalAgreement-2, the commit policy of a streaming session.

Machacek et al., "Turning Whisper into Real-Time Transcription System" (2023): a word is
committed once two hypotheses in a row agree on it; commits never change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimedWord:
    start: float  # seconds in the stream
    end: float
    text: str  # as Whisper writes it, with its leading space

    @property
    def key(self) -> str:
        return re.sub(r"[^\w']+", "", self.text.lower())


def join(words: list[TimedWord]) -> str:
    return "".join(w.text for w in words).strip()


def appended(sent: str, text: str) -> str:
    """What ``text`` adds after ``sent``, for protocols whose deltas only ever append
    ("" when it adds nothing, or no longer starts with what was sent)."""
    return text[len(sent) :] if text.startswith(sent) else ""


class Agreement:
    """Commits the longest common prefix of the last two hypotheses (LocalAgreement-2)."""

    def __init__(self) -> None:
        self.committed: list[TimedWord] = []
        self.tentative: list[TimedWord] = []  # the last hypothesis beyond what is committed

    def _new_part(self, words: list[TimedWord]) -> list[TimedWord]:
        """The words of a hypothesis that come after what is committed."""
        if not self.committed:
            return list(words)
        last_end = self.committed[-1].end
        new = [w for w in words if w.start > last_end - 0.1]
        # A hypothesis may repeat the last committed words: drop that overlap (1-5 words).
        for n in range(min(5, len(self.committed), len(new)), 0, -1):
            if [w.key for w in self.committed[-n:]] == [w.key for w in new[:n]]:
                return new[n:]
        return new

    def update(self, words: list[TimedWord]) -> list[TimedWord]:
        """Take a new hypothesis; return the words it commits.

        The last word of a hypothesis is never committed: it may be cut off, and it
        carries the punctuation of a sentence that may go on.
        """
        new = self._new_part(words)
        agreed = []
        for a, b in zip(new[:-1], self.tentative, strict=False):
            if a.key != b.key:
                break
            agreed.append(a)
        self.committed += agreed
        self.tentative = new[len(agreed) :]
        return agreed

    def finish(self, words: list[TimedWord], buffer_start_s: float) -> None:
        """The last hypothesis, of the audio from ``buffer_start_s``: it replaces what was
        committed from there (a whole utterance decoded at once reads better than one
        stitched from commits), and everything is committed."""
        self.committed = [w for w in self.committed if w.end <= buffer_start_s + 0.05] + list(words)
        self.tentative = []


__all__ = ["Agreement", "TimedWord", "appended", "join"]
