"""Render the long recordings of the evaluation set with espeak-ng (run by hand; the files are committed).

Each recording reads several minutes of English prose (sentences from the Python
reference manual that ships with every Python, ``pydoc_data.topics``, plain words
only) in one espeak-ng voice, with pauses of varied length between sentences (a few
long ones, as in a real recording), at 16 kHz mono, stored as Ogg Opus (24 kbit/s).
``texts.json`` holds each one's reference text and its split: the ``tune`` recordings
may be used to choose settings, the ``held-out`` ones only to report them.

Needs the Debian package espeak-ng. Usage: ``python scripts/make_long_clips.py``.
"""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from whisperpool.audio import SAMPLE_RATE, load_audio  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "src" / "whisperpool" / "bench" / "clips" / "long"
# name -> (voice, words per minute, seconds, split)
RECORDINGS = {
    "long-us": ("en-us", 165, 300, "tune"),
    "long-gb": ("en-gb", 150, 240, "tune"),
    "long-scotland": ("en-gb-scotland", 155, 300, "held-out"),
    "long-rp": ("en-gb-x-rp", 170, 240, "held-out"),
    # Added later, after the four above (the sentences are drawn in this order, so theirs
    # stay the same): more voices held out, so that half a point of WER can be told from
    # noise. The manual's plain sentences are all used by now.
    "long-caribbean": ("en-029", 160, 240, "held-out"),
    "long-nyc": ("en-us-nyc", 175, 240, "held-out"),
    "long-lancaster": ("en-gb-x-gbclan", 150, 240, "held-out"),
    "long-us-f": ("en-us+f3", 160, 240, "held-out"),
}
# More tune recordings, read from sentences of the standard library's docstrings (the
# manual's are all used above), drawn with a seed of their own.
MORE_TUNE = {
    "long-midlands": ("en-gb-x-gbcwmd", 155, 240, "tune"),
    "long-gb-f": ("en-gb+f2", 165, 240, "tune"),
    "long-us-nyc-f": ("en-us-nyc+f4", 160, 240, "tune"),
}
PLAIN = re.compile(r"^[A-Z][A-Za-z ,;'\-]+[a-z]\.$")


def sentences() -> list[str]:
    from pydoc_data.topics import topics

    found = []
    for text in topics.values():
        for paragraph in re.split(r"\n\s*\n", text):
            if paragraph.startswith((" ", "\t")):
                continue  # code and grammar blocks are indented
            flat = " ".join(paragraph.split())
            for sentence in re.split(r"(?<=\.)\s+", flat):
                words = sentence.split()
                # "decimal- point": a word broken at a line end in the manual's source
                if PLAIN.match(sentence) and 8 <= len(words) <= 28 and "- " not in sentence:
                    found.append(sentence)
    return sorted(set(found))


def speak(text: str, voice: str, wpm: int) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", wav.name, text], check=True)
        return load_audio(wav.name)


def opus(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # bitexact: the Ogg stream's serial number is fixed instead of random, so the same
    # audio gives the same file
    with av.open(buf, "w", format="ogg", options={"fflags": "bitexact"}) as out:
        stream = out.add_stream("libopus", rate=SAMPLE_RATE, layout="mono")
        stream.bit_rate = 24_000
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        for start in range(0, pcm.size, SAMPLE_RATE):
            frame = av.AudioFrame.from_ndarray(pcm[None, start : start + SAMPLE_RATE], format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    texts = json.loads((OUT / "texts.json").read_text()) if (OUT / "texts.json").exists() else {}
    rng = random.Random(20261127)
    pool = sentences()
    rng.shuffle(pool)
    render(RECORDINGS, pool, rng, texts)
    from eval_texts import docstring_sentences

    rng = random.Random(20261128)
    pool = docstring_sentences(8, 28)
    rng.shuffle(pool)
    render(MORE_TUNE, pool, rng, texts)
    (OUT / "texts.json").write_text(json.dumps(texts, indent=2) + "\n")


def render(recordings: dict, pool: list[str], rng: random.Random, texts: dict) -> None:
    """Each recording read from sentences popped off ``pool``, unless ``texts`` has it."""
    for name, (voice, wpm, seconds, split) in recordings.items():
        parts, said, total = [], [], 0.0
        while total < seconds:
            sentence = pool.pop()
            speech = speak(sentence, voice, wpm)
            pause = rng.choice([0.3, 0.5, 0.8, 1.2]) if rng.random() > 0.08 else rng.uniform(2.5, 4.0)
            parts += [speech, np.zeros(int(pause * SAMPLE_RATE), np.float32)]
            said.append(sentence)
            total += (speech.size / SAMPLE_RATE) + pause
        if name in texts and (OUT / f"{name}.opus").exists():  # already made: keep it (opus is not bit-exact)
            assert texts[name]["text"] == " ".join(said), f"{name}: the sentence draw changed"
            continue
        audio = np.concatenate(parts)
        (OUT / f"{name}.opus").write_bytes(opus(audio))
        texts[name] = {"text": " ".join(said), "voice": voice, "wpm": wpm, "seconds": round(total, 1), "split": split}
        print(f"{name}: {total:.0f} s, {len(said)} sentences, {voice} at {wpm} wpm ({split})")


if __name__ == "__main__":
    main()
