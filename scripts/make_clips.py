"""Render the example speech clips with espeak-ng (run by hand; the WAVs are committed).

Each clip is 16 kHz mono 16-bit PCM. Needs the Debian packages espeak-ng and sox.

* ``src/whisperpool/bench/clips/*.wav`` - four sentences of 3-14 s, for the examples and tests.
* ``src/whisperpool/bench/clips/short/*.wav`` - short commands and sentences (about 1, 3 and 5 s) in
  several voices and speeds, for the short-audio fast path: its tests, and the benchmark
  that joins them into 10 s and 20 s clips.
"""

import json
import pathlib
import subprocess
import tempfile

CLIPS = {
    "fox": "The quick brown fox jumps over the lazy dog.",
    "groceries": "Please remind me to buy fresh milk and ripe bananas on the way home.",
    "weather": (
        "Good morning. Today the weather will be sunny with a gentle breeze from the west. "
        "In the afternoon, clouds will gather over the mountains, "
        "and light rain is expected by the evening."
    ),
    "library": (
        "The city library opens early in the morning. Visitors can borrow several books, "
        "reserve a quiet study room, and ask the friendly staff for help with research. "
        "Children enjoy the story hour every Saturday."
    ),
}

VOICES = [("en-us", 150), ("en-gb", 160), ("en-gb-scotland", 145), ("en-029", 155), ("en-us", 170), ("en-gb-x-rp", 140)]

# name -> text; names start with the length class: s1 (about 1 s), s3, s5.
SHORT = {
    "s1-music": "Stop the music.",
    "s1-lights": "Turn on the lights.",
    "s1-time": "What time is it?",
    "s1-night": "Good night.",
    "s1-door": "Open the door.",
    "s1-sister": "Call my sister.",
    "s1-pause": "Pause the movie.",
    "s1-track": "Next track.",
    "s1-volume": "Volume up.",
    "s1-alarm": "Cancel the alarm.",
    "s1-keys": "Where are my keys?",
    "s1-car": "Lock the car.",
    "s3-pasta": "Set a timer for the pasta in the kitchen.",
    "s3-weather": "What is the weather like tomorrow morning?",
    "s3-plants": "Remind me to water the plants this evening.",
    "s3-music": "Play some quiet music in the living room.",
    "s3-station": "How far is the nearest train station?",
    "s3-coffee": "Add coffee and bread to my shopping list.",
    "s3-umbrella": "Do I need an umbrella this afternoon?",
    "s3-photos": "Show me the photos from our summer holiday.",
    "s5-brother": "Send a message to my brother saying that I will be a little late for dinner tonight.",
    "s5-heating": "Please turn down the heating in the bedroom and the hallway before we go to sleep.",
    "s5-river": "Can you find a good restaurant near the old river bridge that is open on Sunday evening?",
    "s5-meeting": "The weekly meeting has been moved to the small room on the second floor of the library.",
    "s5-news": "Read me the latest news about the football match and the election from last night.",
    "s5-window": "I would like to book a quiet table by the window for our wedding anniversary.",
    "word-yes": "Yes.",
}

ROOT = pathlib.Path(__file__).resolve().parent.parent / "src" / "whisperpool" / "bench" / "clips"  # package data


def render(text: str, dest: pathlib.Path, voice: str = "en-us", speed: int = 150) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = pathlib.Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
        subprocess.run(["sox", "-D", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(dest)], check=True)


def main() -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    for name, text in CLIPS.items():
        render(text, ROOT / f"{name}.wav")
    (ROOT / "texts.json").write_text(json.dumps(CLIPS, indent=2) + "\n")
    short = ROOT / "short"
    short.mkdir(exist_ok=True)
    for i, (name, text) in enumerate(SHORT.items()):
        voice, speed = VOICES[i % len(VOICES)]
        render(text, short / f"{name}.wav", voice, speed)
    (short / "texts.json").write_text(json.dumps(SHORT, indent=2) + "\n")


if __name__ == "__main__":
    main()
