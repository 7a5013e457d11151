"""Render the example speech clips with espeak-ng (run by hand; the WAVs are committed).

Each clip is 16 kHz mono 16-bit PCM. Needs the Debian packages espeak-ng and sox.
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

OUT = pathlib.Path(__file__).resolve().parent.parent / "examples" / "clips"


def render(name: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = pathlib.Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
        subprocess.run(
            ["sox", "-D", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(OUT / f"{name}.wav")],
            check=True,
        )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in CLIPS.items():
        render(name, text)
    (OUT / "texts.json").write_text(json.dumps(CLIPS, indent=2) + "\n")


if __name__ == "__main__":
    main()
