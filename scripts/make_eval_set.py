"""Render the accuracy evaluation set with espeak-ng and sox (run by hand; the files are committed).

``src/whisperpool/bench/clips/eval/`` gets one Ogg Opus file (16 kHz mono, 24 kbit/s)
per clip and ``eval.json``, which gives each clip its reference text, language, voice,
speed, where the voice starts and ends, length class (about 1, 3, 5, 10 or 20 s), condition and split:

* texts - commands, numbers, names and dates written here (none of the repository's other
  clips' sentences) for the 1, 3 and 5 s classes; sentences of the Python reference manual
  (``pydoc_data.topics``, plain words only, the filter of ``make_long_clips.py``, none
  of the sentences its recordings read) for some 5 s clips and the 10 and 20 s passages; a few sentences in German, Spanish and French
* voices - espeak-ng's English voices (``en-us``, ``en-gb``, ``en-gb-scotland``,
  ``en-gb-x-rp``, ``en-029``) with variants (``+f3``, ``+m2``, ...) at 135-185 words per
  minute, and ``de``, ``es``, ``fr-fr``
* conditions - ``clean``; white noise at 20 dB SNR, pink at 10 dB, brown at 5 dB (sox
  ``synth``); ``babble-10db`` (four other espeak-ng voices reading other sentences, mixed);
  ``music-10db`` (plucked chords from sox ``synth``). The SNR is the speech's power over
  its voiced frames against the noise's power
* split - within each condition the clips alternate ``tune`` and ``held-out`` through
  the length classes (each condition starting on the other), so both halves cover every
  length class and condition about equally. Settings may be chosen on ``tune``; ``held-out`` is only reported.
* batch 2 (``"batch": 2``; seed ``SEED_2``) - about as many words again, all on the fast
  path (up to 8 s): 1, 3, 5 s and a 7 s class, in the same conditions, with 13 other
  voices (``en-us-nyc``, ``en-gb-x-gbclan``, ``en-gb-x-gbcwmd``, other variants), texts of
  ``eval_texts.py`` (commands, templated requests with seeded fills, plain sentences of the
  standard library's docstrings: this Python's, 3.11 when it was made) and Italian,
  Portuguese and Dutch; every cell of length class, condition and language has as many
  clips in each half.

The split is written in ``eval.json`` and never recomputed by the suites. The rendering
is deterministic (seeded texts and mixing, sox ``-R``, Ogg files with a fixed serial), but
clips already on disk are kept: the first batch (``"batch": 1``) was rendered before
sox ran with ``-R``, so rendering it again would give other noise (its metadata comes
out the same). Delete a clip to render it again.

References are written as spoken: numbers in words (``whisperpool.wer`` spells out the
digits Whisper writes). Needs the Debian packages espeak-ng and sox.
Usage: ``python scripts/make_eval_set.py``.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from whisperpool.audio import SAMPLE_RATE, load_audio  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_texts  # noqa: E402
from make_long_clips import opus  # noqa: E402  (the same Ogg Opus writer)

OUT = Path(__file__).resolve().parents[1] / "src" / "whisperpool" / "bench" / "clips" / "eval"
SEED = 20261128
CONDITIONS = {  # name -> (noise, SNR dB)
    "clean": (None, None),
    "white-20db": ("whitenoise", 20),
    "pink-10db": ("pinknoise", 10),
    "brown-5db": ("brownnoise", 5),
    "babble-10db": ("babble", 10),
    "music-10db": ("music", 10),
}
PER_CELL = {1: 5, 3: 5, 5: 5, 10: 4, 20: 2}  # clips per length class and condition (English)
VOICES = [
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-us+f3",
    "en-gb+m2",
    "en-us+m3",
    "en-gb-x-rp+f2",
    "en-029+m1",
    "en-gb-scotland+f4",
]
BABBLE_VOICES = ["en-us+m7", "en-gb+f1", "en-us+f5", "en-029+m4"]
# The second batch: new voices, texts and seed; every clip on the fast path (up to 8 s)
SEED_2 = 20261127
PER_CELL_2 = {1: 4, 3: 4, 5: 8, 7: 10}  # clips per length class and condition, half in each split
FIT_2 = {1: (0.6, 1.9), 3: (1.9, 3.3), 5: (3.3, 5.9), 7: (6.0, 7.8)}  # seconds a clip of the class may last
PROSE_WORDS_2 = {3: (5, 7), 5: (9, 13), 7: (15, 21)}
VOICES_2 = [
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-us+f1",
    "en-gb+f4",
    "en-029+f2",
    "en-us+m5",
    "en-gb-scotland+m4",
    "en-gb-x-rp+m6",
    "en-us+klatt",
    "en-gb+f5",
    "en-us-nyc+f2",
    "en-gb-x-gbclan+m1",
]
BABBLE_VOICES_2 = ["en-us-nyc+m2", "en-gb+f3", "en-029+m3", "en-gb-x-rp+f1"]
PAUSE_S = 0.4  # between the sentences of a passage

ONE_S = [
    "Stop the timer.",
    "Lights off.",
    "Skip this song.",
    "Call Maria.",
    "Mute the sound.",
    "Open the garage.",
    "Start the vacuum.",
    "Read my messages.",
    "Turn it down.",
    "Good morning.",
    "Play the radio.",
    "Shuffle my playlist.",
    "Close the blinds.",
    "Answer the phone.",
    "Lock the front door.",
    "What day is it?",
    "Thank you very much.",
    "Repeat that please.",
    "Go back.",
    "Wake me at six.",
    "Find my phone.",
    "Dim the lamp.",
    "Resume playback.",
    "Call Doctor Chen.",
    "Nineteen minutes.",
    "Cancel everything.",
    "Show the calendar.",
    "Brighter please.",
    "Hang up.",
    "Open the oven.",
]
THREE_S = [
    "Set an alarm for seven thirty tomorrow.",
    "Call Doctor Patel about the appointment.",
    "Add eggs, flour and sugar to the list.",
    "My flight leaves on the fourth of July.",
    "The meeting starts at a quarter past nine.",
    "Send forty dollars to Jennifer Walsh.",
    "How many miles is it to Edinburgh?",
    "Turn the thermostat to twenty one degrees.",
    "Remind me to pay the rent on Friday.",
    "What is the capital city of Australia?",
    "Play the latest album by Fleetwood Mac.",
    "The train to Manchester is running late.",
    "Book a table for six at eight o'clock.",
    "Her birthday is on the twelfth of March.",
    "Order three pizzas and a large salad.",
    "Text Oliver that I am on my way.",
    "Open the spreadsheet called quarterly sales.",
    "How tall is the Eiffel Tower in Paris?",
    "Water the tomatoes every second morning.",
    "Translate good evening into Italian.",
    "The parcel arrived on Tuesday afternoon.",
    "We need two hundred chairs for the hall.",
    "Start a workout playlist for thirty minutes.",
    "Is the pharmacy on Baker Street open?",
    "Pick up Sophie from school at three.",
    "Turn off the sprinklers in the garden.",
    "Find a cheap hotel near the airport.",
    "Room fourteen is on the first floor.",
    "Navigate to the nearest petrol station.",
    "My password has eight letters and a number.",
]
FIVE_S = [
    "Please schedule a call with Professor Nakamura on Wednesday at half past two.",
    "The delivery of fifteen boxes should reach the warehouse before noon on Monday.",
    "Could you check whether the bakery on the corner sells gluten free bread?",
    "Add a reminder to renew my passport three weeks before the trip to Canada.",
    "The museum is closed on the first Monday of every month for cleaning.",
    "Tell Grandma that we will visit her on the twenty second of December.",
    "I left my blue umbrella on the bus from the city this morning.",
    "Move all the photos from last summer into the folder called family holidays.",
    "The concert tickets cost sixty five pounds each, including the booking fee.",
    "Ask Daniel whether he can bring the projector to the seminar on Thursday.",
    "Our new friends from Portugal invited us to a barbecue on Saturday evening.",
    "Check the traffic on the motorway between Leeds and Sheffield before we leave.",
    "Write down that the plumber charged one hundred twenty dollars for the repair.",
    "The library will extend its opening hours during the exam period in June.",
    "Remind the whole team to submit their travel expenses by the end of the month.",
]
FOREIGN = {  # language -> (espeak voice, [3 s sentence, 3 s, 5 s, 5 s])
    "de": (
        "de",
        [
            "Wie spät ist es jetzt bitte?",
            "Ich möchte einen Kaffee bestellen.",
            "Morgen fahren wir mit dem Zug nach Hamburg und besuchen meine Tante.",
            "Die Bibliothek bleibt am Sonntag geschlossen, aber am Montag ist sie offen.",
        ],
    ),
    "es": (
        "es",
        [
            "¿Dónde está la estación de tren?",
            "Mañana vamos a la playa con mis amigos.",
            "Por favor, apaga las luces de la cocina antes de salir de casa esta noche.",
            "El museo abre a las diez de la mañana y cierra a las seis de la tarde.",
        ],
    ),
    "fr": (
        "fr-fr",
        [
            "Je voudrais réserver une table.",
            "Il fait très beau aujourd'hui à Paris.",
            "Nous avons acheté du pain frais et du fromage au marché ce matin.",
            "Le prochain train pour Lyon part dans vingt minutes depuis le quai trois.",
        ],
    ),
}
PLAIN = re.compile(r"^[A-Z][A-Za-z ,;'\-]+[a-z]\.$")


def manual_sentences() -> list[str]:
    """Plain prose sentences of the Python reference manual (as in ``make_long_clips.py``)."""
    from pydoc_data.topics import topics

    long = json.loads((OUT.parent / "long" / "texts.json").read_text())
    read = " ".join(clip["text"] for clip in long.values())
    found = []
    for text in topics.values():
        for paragraph in re.split(r"\n\s*\n", text):
            if paragraph.startswith((" ", "\t")):
                continue
            flat = " ".join(paragraph.split())
            for sentence in re.split(r"(?<=\.)\s+", flat):
                words = len(sentence.split())
                if PLAIN.match(sentence) and 8 <= words <= 28 and "- " not in sentence and sentence not in read:
                    found.append(sentence)
    return sorted(set(found))


def speak(text: str, voice: str, wpm: int) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", wav.name, text], check=True)
        return load_audio(wav.name)


def sox_synth(seconds: float, *synth: str) -> np.ndarray:
    """``sox -n ... synth SECONDS ARGS``, as 16 kHz mono float32 (channels averaged)."""
    channels = max(1, sum(a in ("sine", "pluck", "whitenoise", "pinknoise", "brownnoise") for a in synth))
    raw = subprocess.run(  # -R: repeatable (sox seeds its noise generators with a fixed number)
        ["sox", "-R", "-n", "-r", str(SAMPLE_RATE), "-c", str(channels), "-b", "32", "-e", "float", "-t", "raw", "-"]
        + ["synth", f"{seconds}", *synth],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, channels).mean(axis=1).astype(np.float32)


def music_bed(rng: random.Random, seconds: float) -> np.ndarray:
    """Plucked two-note chords with a bass tone, a new chord every 0.25-0.6 s."""
    notes = ["C3", "D3", "E3", "F3", "G3", "A3", "B3", "C4", "D4", "E4", "G4", "A4"]
    parts, total = [], 0.0
    while total < seconds:
        length = rng.choice([0.25, 0.3, 0.4, 0.6])
        a, b = rng.sample(notes, 2)
        parts.append(sox_synth(length, "pluck", a, "pluck", b, "sine", "%-24"))
        total += length
    return np.concatenate(parts)


def babble_bed(sentences: list[str], seconds: float, voices: list[str] = BABBLE_VOICES) -> np.ndarray:
    """Four other voices, each reading other sentences, summed (each at the same level)."""
    tracks = []
    for i, voice in enumerate(voices):
        parts, total, k = [], 0.0, i
        while total < seconds:
            speech = speak(sentences[k % len(sentences)], voice, 160)
            parts.append(speech / (np.sqrt(np.mean(speech**2)) + 1e-9))
            total += speech.size / SAMPLE_RATE
            k += len(voices)
        tracks.append(np.concatenate(parts)[: int(seconds * SAMPLE_RATE)])
    return np.sum(tracks, axis=0).astype(np.float32)


def speech_power(audio: np.ndarray) -> float:
    """Mean power over the 20 ms frames within 30 dB of the loudest (the voiced ones)."""
    frames = audio[: audio.size // 320 * 320].reshape(-1, 320)
    power = np.mean(frames**2, axis=1)
    return float(np.mean(power[power > power.max() * 1e-3]))


def speech_bounds(audio: np.ndarray) -> dict[str, float]:
    """Where the voice starts and ends in the clean rendering (the voiced frames, as above)."""
    frames = audio[: audio.size // 320 * 320].reshape(-1, 320)
    power = np.mean(frames**2, axis=1)
    voiced = np.flatnonzero(power > power.max() * 1e-3)
    return {"speech_start_s": round(voiced[0] * 0.02, 2), "speech_end_s": round((voiced[-1] + 1) * 0.02, 2)}


def mix(speech: np.ndarray, bed: np.ndarray, snr_db: float, rng: random.Random) -> np.ndarray:
    start = rng.randrange(0, bed.size - speech.size)
    noise = bed[start : start + speech.size].astype(np.float64)
    noise *= np.sqrt(speech_power(speech) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    mixed = speech + noise
    return (mixed / max(1.0, np.abs(mixed).max() / 0.95)).astype(np.float32)


def passage(pool: list[str], target_s: float, voice: str, wpm: int) -> tuple[np.ndarray, str]:
    """Manual sentences read one after another until the passage is about ``target_s`` long."""
    gap = np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)
    parts: list[np.ndarray] = []
    said: list[str] = []
    total = 0.0
    while total < 0.8 * target_s:
        # the next sentence that still fits (20 s passages stay under the 24 s short-window limit)
        for i in range(len(pool) - 1, max(-1, len(pool) - 30), -1):
            speech = speak(pool[i], voice, wpm)
            if total + speech.size / SAMPLE_RATE <= min(1.25 * target_s, target_s + 3):
                said.append(pool.pop(i))
                parts += [speech, gap]
                total += speech.size / SAMPLE_RATE + PAUSE_S
                break
        else:
            break
    return np.concatenate(parts[:-1]), " ".join(said)


def second_batch(add, taken: set[str]) -> None:
    """About as many words again as the first batch, all on the fast path: 1, 3, 5 s and a
    7 s class, in the same conditions, with other voices, commands written here, templated
    sentences and docstring prose (half each in the 3-7 s classes), and Italian,
    Portuguese and Dutch; each cell split evenly, pairs of clips alternating."""
    rng = random.Random(SEED_2)
    prose_all = [s for s in eval_texts.docstring_sentences(5, 21) if s not in taken]
    rng.shuffle(prose_all)
    babble, prose_all = prose_all[:40], prose_all[40:]
    prose = {n: [s for s in prose_all if lo <= len(s.split()) <= hi] for n, (lo, hi) in PROSE_WORDS_2.items()}
    ones = list(eval_texts.ONE_S)
    rng.shuffle(ones)
    beds = {name: sox_synth(60, name) for name in ("whitenoise", "pinknoise", "brownnoise")}
    beds["music"] = music_bed(rng, 60)
    beds["babble"] = babble_bed(babble, 60, BABBLE_VOICES_2)
    used: set[str] = set(taken)

    def fitting(length: int, from_prose: bool, voice: str, wpm: int) -> tuple[str, np.ndarray]:
        for _ in range(80):  # texts that come out too short or long for the class are passed over
            source = ones if length == 1 else prose[length] if from_prose else None
            text = source.pop() if source is not None else eval_texts.templated(rng, length)
            speech = speak(text, voice, wpm)
            low, high = FIT_2[length]
            if text not in used and low <= speech.size / SAMPLE_RATE <= high:
                used.add(text)
                return text, speech
        raise RuntimeError(f"no text fits the {length} s class")

    turn = 0
    for length, count in PER_CELL_2.items():
        for c, (condition, (noise, snr)) in enumerate(CONDITIONS.items()):
            for k in range(count):
                voice = VOICES_2[turn % len(VOICES_2)]
                turn += 1
                wpm = rng.choice([135, 150, 160, 170, 185])
                text, speech = fitting(length, (k // 2) % 2 == 0, voice, wpm)
                audio = speech if noise is None else mix(speech, beds[noise], snr, rng)
                split = "tune" if (k + c) % 2 == 0 else "held-out"
                meta = {"text": text, "language": "en", "voice": voice, "wpm": wpm, "length_class": length}
                meta |= speech_bounds(speech) | {"condition": condition, "snr_db": snr, "split": split, "batch": 2}
                add(f"en-{length:02d}s-{condition}-b{k}", audio, meta)
    for language, (voice, sentences) in eval_texts.FOREIGN.items():
        for k, text in enumerate(sentences):
            length = 3 if k < 2 else 5
            speech = speak(text, voice, 150)
            meta = {"text": text, "language": language, "voice": voice, "wpm": 150, "length_class": length}
            meta |= speech_bounds(speech) | {"condition": "clean", "snr_db": None, "split": ("tune", "held-out")[k % 2]}
            add(f"{language}-{length:02d}s-clean-{k}", speech, meta | {"batch": 2})


def main() -> None:
    rng = random.Random(SEED)
    manual = manual_sentences()
    rng.shuffle(manual)
    babble_text = manual[:40]  # the babble reads these; no clip does
    short_manual = [s for s in manual[40:] if len(s.split()) <= 13]
    long_manual = [s for s in manual[40:] if s not in short_manual]
    five_manual = short_manual[: len(CONDITIONS) * PER_CELL[5] - len(FIVE_S)]
    texts = {1: list(ONE_S), 3: list(THREE_S), 5: list(FIVE_S) + five_manual}
    for group in texts.values():
        rng.shuffle(group)
    long_pool = long_manual + short_manual[len(five_manual) :]
    rng.shuffle(long_pool)

    beds = {name: sox_synth(60, name) for name in ("whitenoise", "pinknoise", "brownnoise")}
    beds["music"] = music_bed(rng, 60)
    beds["babble"] = babble_bed(babble_text, 60)

    OUT.mkdir(parents=True, exist_ok=True)
    clips: dict[str, dict] = {}
    voice_turn = 0
    in_condition = dict.fromkeys(CONDITIONS, 0)  # clips so far, for the alternating split

    def add(name: str, audio: np.ndarray, meta: dict) -> None:
        # A clip already rendered is kept: the first batch was rendered before sox ran
        # with -R, so its noise would come out different (the metadata does not).
        if not (OUT / f"{name}.opus").is_file():
            (OUT / f"{name}.opus").write_bytes(opus(audio))
        clips[name] = meta | {"seconds": round(audio.size / SAMPLE_RATE, 2)}
        print(f"{name}: {audio.size / SAMPLE_RATE:.1f} s {meta['voice']} {meta['split']}: {meta['text'][:60]}")

    for length, count in PER_CELL.items():
        for c, (condition, (noise, snr)) in enumerate(CONDITIONS.items()):
            for k in range(count):
                voice = VOICES[voice_turn % len(VOICES)]
                voice_turn += 1
                wpm = rng.choice([135, 150, 160, 170, 185])
                if length <= 5:
                    text = texts[length].pop()
                    speech = speak(text, voice, wpm)
                else:
                    speech, text = passage(long_pool, length, voice, wpm)
                audio = speech if noise is None else mix(speech, beds[noise], snr, rng)
                split = "tune" if (in_condition[condition] + c) % 2 == 0 else "held-out"
                in_condition[condition] += 1
                name = f"en-{length:02d}s-{condition}-{k}"
                meta = {"text": text, "language": "en", "voice": voice, "wpm": wpm, "length_class": length}
                meta |= speech_bounds(speech)
                add(name, audio, meta | {"condition": condition, "snr_db": snr, "split": split, "batch": 1})
    for language, (voice, sentences) in FOREIGN.items():
        for k, text in enumerate(sentences):
            length = 3 if k < 2 else 5
            split = "tune" if k % 2 == 0 else "held-out"
            speech = speak(text, voice, 150)
            meta = {"text": text, "language": language, "voice": voice, "wpm": 150, "length_class": length}
            meta |= speech_bounds(speech) | {"condition": "clean", "snr_db": None, "split": split}
            add(f"{language}-{length:02d}s-clean-{k}", speech, meta | {"batch": 1})
    second_batch(add, {c["text"] for c in clips.values()} | set(babble_text))
    for old in OUT.glob("*.opus"):
        if old.stem not in clips:
            old.unlink()
    (OUT / "eval.json").write_text(json.dumps(clips, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(clips)} clips, {sum(c['seconds'] for c in clips.values()):.0f} s")


if __name__ == "__main__":
    main()
