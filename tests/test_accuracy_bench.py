"""The accuracy dev set is complete and consistent, and ``bench --accuracy`` measures on the real model."""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest
from rich.console import Console

from whisperpool.audio import SAMPLE_RATE, load_audio
from whisperpool.bench import BenchOptions, accuracy
from whisperpool.errors import ConfigError
from whisperpool.wer import normalize, word_error_rate

CLIPS = accuracy.eval_set()
CONDITIONS = {"clean", "white-20db", "pink-10db", "brown-5db", "babble-10db", "music-10db"}
LANGUAGES = {"en", "de", "es", "fr", "it", "pt", "nl"}


def test_every_clip_exists_and_lasts_about_its_declared_length():
    on_disk = {p.stem for p in accuracy.EVAL.glob("*.opus")}
    assert on_disk == set(CLIPS)
    for name, clip in CLIPS.items():
        seconds = load_audio(accuracy.EVAL / f"{name}.opus").size / SAMPLE_RATE
        assert abs(seconds - clip["seconds"]) < 0.1, name
        assert 0.5 * clip["length_class"] < seconds < 1.3 * clip["length_class"] + 1, name
        assert 0 <= clip["speech_start_s"] < clip["speech_end_s"] <= seconds + 0.02, name


def test_every_clip_has_a_reference_and_its_description():
    for name, clip in CLIPS.items():
        assert normalize(clip["text"]), name
        assert clip["language"] in LANGUAGES, name
        assert clip["batch"] in (1, 2), name
        assert clip["length_class"] in accuracy.LENGTHS, name
        assert clip["condition"] in CONDITIONS, name
        assert clip["split"] in accuracy.SPLITS, name
        assert (clip["snr_db"] is None) == (clip["condition"] == "clean"), name
        assert clip["voice"], name


def test_both_halves_cover_every_condition_length_and_language_and_share_no_text():
    for split in accuracy.SPLITS:
        mine = [c for c in CLIPS.values() if c["split"] == split]
        assert {c["condition"] for c in mine} == CONDITIONS
        assert {c["length_class"] for c in mine} == set(accuracy.LENGTHS)
        assert {c["language"] for c in mine} == LANGUAGES
        for condition in CONDITIONS:  # every length class too, within each noisy condition
            assert {c["length_class"] for c in mine if c["condition"] == condition} == set(accuracy.LENGTHS)
    halves = Counter(c["split"] for c in CLIPS.values())
    assert abs(halves["tune"] - halves["held-out"]) <= 2
    texts = Counter(c["text"] for c in CLIPS.values())
    assert texts.most_common(1)[0][1] == 1, "a sentence is read in more than one clip"
    assert 280 <= len(CLIPS) <= 330


def test_the_second_batch_splits_every_cell_evenly_and_doubles_the_held_out_words():
    """Batch 2 adds as many clips to each half in every length class and condition; the
    held-out half ends with about twice the words it had (971) so that 0.3 points resolve."""
    second = [c for c in CLIPS.values() if c["batch"] == 2]
    cells = Counter((c["length_class"], c["condition"], c["language"], c["split"]) for c in second)
    for length, condition, language, split in cells:
        other = "tune" if split == "held-out" else "held-out"
        assert cells[(length, condition, language, split)] == cells[(length, condition, language, other)]
    assert all(c["seconds"] <= 8.0 for c in second)  # all on the fast path
    words = Counter()
    for c in CLIPS.values():
        words[c["split"]] += len(normalize(c["text"]))
    assert 1900 <= words["held-out"] <= 2200 and abs(words["held-out"] - words["tune"]) < 100


def test_the_splits_to_run_are_chosen_from_the_clip_metadata():
    names, streamed = accuracy.chosen(CLIPS, BenchOptions(splits=("held-out",)))
    assert names and {CLIPS[n]["split"] for n in names} == {"held-out"}
    assert set(streamed) <= set(names) and {CLIPS[n]["length_class"] for n in streamed} == set(
        accuracy.STREAMED_LENGTHS
    )
    names, streamed = accuracy.chosen(CLIPS, BenchOptions(splits=("tune",)))
    assert {CLIPS[n]["split"] for n in names} == {"tune"} and streamed == []
    names, _ = accuracy.chosen(CLIPS, BenchOptions())
    assert set(names) == set(CLIPS)


def test_the_references_are_written_as_whisper_is_scored():
    """Numbers are words in the references; the digits Whisper writes are spelled out."""
    assert word_error_rate("Set an alarm for seven thirty tomorrow.", "Set an alarm for 7:30 tomorrow.") == 0
    assert word_error_rate("My flight leaves on the fourth of July.", "My flight leaves on the 4th of July.") == 0
    assert word_error_rate("Send forty dollars to Jennifer Walsh.", "Send $40 to Jennifer Walsh.") == 0
    assert word_error_rate("We need two hundred chairs.", "We need 200 chairs.") == 0
    assert word_error_rate("Call Doctor Chen.", "Call Dr. Chen.") == 0
    assert normalize("1,500 people, 25% off, the 21st, 007") == (
        "one thousand five hundred people twenty five percent off the twenty first zero zero seven".split()
    )
    assert normalize("¿Dónde está la estación?") == ["dónde", "está", "la", "estación"]
    assert normalize("Don't 'quote' me") == ["don't", "quote", "me"]


def test_the_options_are_checked():
    with pytest.raises(ConfigError, match="stream_splits"):
        BenchOptions(stream_splits=("train",))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="BenchOptions.splits"):
        BenchOptions(splits=())
    with pytest.raises(ConfigError, match="quick"):
        BenchOptions(quick=1)  # type: ignore[arg-type]


@pytest.mark.real_model
def test_the_suite_measures_a_few_clips_with_the_real_model(tmp_path):
    result = accuracy.measure(BenchOptions(quick=True), Console(file=io.StringIO()))
    json.dumps(result)  # plain data
    by_name = {e["name"]: e for e in result["clips"]}
    assert set(by_name) == set(accuracy.QUICK)
    for entry in by_name.values():
        assert entry["full"]["window"] == "full"
        assert entry["auto"]["window"] in ("short", "full")
        assert entry["full"]["inference_s"] > 0 and entry["auto"]["inference_s"] > 0
    (streamed,) = accuracy.QUICK_STREAMED
    stream = by_name[streamed]["stream"]
    assert stream["finals"] >= 1 and stream["latency_s"] is not None and 0 < stream["latency_s"] < 10
    assert len(stream["final_windows"]) >= 1
    summary = accuracy.summary(result)
    assert summary["held-out"]["all"]["clips"] + summary["tune"]["all"]["clips"] == len(accuracy.QUICK)
    assert 0 <= summary["held-out"]["all"]["wer_full"] <= 100
    names = [t.name for t in accuracy.targets(result)]
    assert names[0] == "held-out: WER of auto minus WER of full"
    out = Console(record=True, width=160)
    accuracy.report(result, out)
    assert "by length class" in out.export_text()


def test_a_run_of_one_half_is_summarized_and_reported_without_the_other():
    """``--split tune``: the tables show the tune half (the 7 s class too); no held-out target is claimed."""
    tune = [n for n, c in CLIPS.items() if c["split"] == "tune"]
    entries = []
    for i, name in enumerate(tune):
        said = CLIPS[name]["text"]
        auto = said.rsplit(" ", 1)[0] if i % 4 == 0 else said  # a word lost on every fourth clip
        decoded = {"window": "full", "fallback": None, "inference_s": 1.0}
        entries.append(
            {"name": name}
            | CLIPS[name]
            | {
                "full": decoded | {"text": said},
                "auto": decoded | {"text": auto, "window": "short", "inference_s": 0.5},
            }
        )
    result = {"clips": entries}
    s = accuracy.summary(result)
    assert s["held-out"]["all"] == {"clips": 0}
    assert s["tune"]["all"]["wer_full"] == 0 and s["tune"]["all"]["auto_minus_full"] > 0
    assert s["tune"]["length"]["7"]["clips"] == 30
    assert accuracy.targets(result) == []
    out = Console(record=True, width=200)
    accuracy.report(result, out)
    assert "7 s" in out.export_text()


def test_stream_latency_is_also_reported_by_condition():
    """Babble keeps the VAD hearing speech after the voice: its finals' latency shows apart."""
    held = [n for n, c in CLIPS.items() if c["split"] == "held-out" and c["length_class"] in (3, 5)]
    babble = [n for n in held if CLIPS[n]["condition"] == "babble-10db"][:3]
    clean = [n for n in held if CLIPS[n]["condition"] == "clean"][:3]
    decoded = {"window": "short", "fallback": None, "inference_s": 0.5}
    entries = []
    for name in babble + clean:
        said = CLIPS[name]["text"]
        latency = 1.4 if name in babble else 0.6
        stream = {"text": said, "finals": 1, "latency_s": latency, "final_windows": ["short"], "final_fallbacks": []}
        stream["final_retries"] = ["repetition"] if name == clean[0] else []
        entries.append(
            {"name": name} | CLIPS[name] | {"full": decoded | {"text": said}, "auto": decoded | {"text": said}}
        )
        entries[-1]["stream"] = stream
    s = accuracy.summary({"clips": entries})["held-out"]
    by = s["streams_by_condition"]
    assert by["babble-10db"]["clips"] == 3 and by["babble-10db"]["latency_p50_s"] == pytest.approx(1.4)
    assert by["clean"]["clips"] == 3 and by["clean"]["latency_p95_s"] == pytest.approx(0.6)
    assert by["clean"]["final_retries"] == 1 and by["babble-10db"]["final_retries"] == 0
    assert s["streams"]["clips"] == 6 and s["streams"]["latency_p50_s"] == pytest.approx(1.0)
    out = Console(record=True, width=200)
    accuracy.report({"clips": entries}, out)
    assert "held-out babble-10db" in out.export_text()
