"""The packaged Whisper base model on real speech (espeak-ng clips with known texts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import MAX_WER, clip, encode, pid_alive
from whisperpool import DecodeOptions, InvalidAudio, PoolConfig, TranscriptionEngine
from whisperpool.audio import load_audio
from whisperpool.wer import normalize, word_error_rate

pytestmark = pytest.mark.real_model
WAIT = 120.0
KEYWORDS = {
    "fox": ["quick", "brown", "fox", "lazy", "dog"],
    "groceries": ["remind", "milk", "bananas", "home"],
    "weather": ["morning", "weather", "sunny", "breeze", "afternoon", "clouds", "mountains", "rain", "evening"],
    "library": ["library", "morning", "books", "study", "staff", "research", "children", "saturday"],
}


def assert_words(name: str, text: str, clip_texts: dict[str, str]) -> None:
    assert word_error_rate(clip_texts[name], text) <= MAX_WER, (name, text)
    words = set(normalize(text))
    assert set(KEYWORDS[name]) <= words, (name, text)


@pytest.fixture(scope="module")
def engine():
    # two workers and no express one: these tests count on both taking every kind of request
    config = PoolConfig(pool_size=2, threads_per_worker=1, express_workers=0, decode=DecodeOptions(language="en"))
    with TranscriptionEngine(config) as engine:
        yield engine


def test_every_clip_comes_back_with_the_right_words(engine, clip_texts):
    futures = {name: engine.pool.submit(load_audio(clip(name))) for name in clip_texts}
    for name, fut in futures.items():
        result = fut.result(timeout=WAIT)
        assert_words(name, result.text, clip_texts)
        assert result.language == "en"
        assert abs(result.duration - len(load_audio(clip(name))) / 16000) < 0.01
        starts = [s.start for s in result.segments]
        assert starts == sorted(starts) and result.segments[-1].end <= result.duration + 0.5
        assert result.timings.inference_s > 0 and result.timings.total_s >= result.timings.inference_s


def test_two_workers_serve_concurrent_requests_at_once(engine, clip_texts):
    audio = load_audio(clip("weather"))
    a, b = engine.pool.submit(audio), engine.pool.submit(audio)
    ra, rb = a.result(timeout=WAIT), b.result(timeout=WAIT)
    assert {ra.worker_id, rb.worker_id} == {w.id for w in engine.status().workers}
    # Neither waited for the other: both were dispatched at once.
    assert max(ra.timings.queue_wait_s, rb.timings.queue_wait_s) < 0.25 * min(
        ra.timings.inference_s, rb.timings.inference_s
    )
    assert_words("weather", ra.text, clip_texts)
    assert ra.text == rb.text


@pytest.mark.parametrize(
    "suffix,rate,channels", [("flac", 16_000, 1), ("ogg", 48_000, 1), ("wav", 44_100, 2), ("mp3", 44_100, 2)]
)
def test_other_formats_rates_and_stereo(engine, clip_texts, tmp_path, suffix, rate, channels):
    source = load_audio(clip("fox"))
    if rate != 16_000:  # a real 44.1/48 kHz file: upsample the clip before encoding it
        positions = np.arange(0, len(source), 16_000 / rate)
        source = np.interp(positions, np.arange(len(source)), source).astype(np.float32)
    path = encode(source, tmp_path / f"fox.{suffix}", rate=rate, channels=channels)
    result = engine.transcribe_sync(path)
    assert_words("fox", result.text, clip_texts)


def test_non_audio_gives_the_clear_error_and_the_worker_survives(engine, clip_texts, tmp_path):
    pids = sorted(w.pid for w in engine.status().workers)
    bad = tmp_path / "report.pdf"
    bad.write_bytes(b"%PDF-1.4 not audio " * 50)
    with pytest.raises(InvalidAudio, match=r"report\.pdf: not decodable audio"):
        engine.transcribe_sync(bad)
    assert_words("groceries", engine.transcribe_sync(clip("groceries")).text, clip_texts)
    assert sorted(w.pid for w in engine.status().workers) == pids and all(map(pid_alive, pids))


def test_word_timestamps_and_options_per_request(engine, clip_texts):
    result = engine.transcribe_sync(clip("fox"), word_timestamps=True, beam_size=5)
    words = [w for s in result.segments for w in (s.words or ())]
    assert [normalize(w.word)[0] for w in words if normalize(w.word)][:3] == ["the", "quick", "brown"]
    assert all(0 <= w.start <= w.end <= result.duration + 0.5 for w in words)


def test_cli_json_lines_with_a_bad_file(tmp_path, clip_texts):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    cmd = [
        sys.executable,
        "-m",
        "whisperpool.cli",
        "transcribe",
        "--json",
        "--workers",
        "2",
        "--language",
        "en",
        str(clip("fox")),
        str(bad),
        str(clip("weather")),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(clip("fox")), str(bad), str(clip("weather"))]
    assert lines[1]["error"]["type"] == "InvalidAudio" and "bad.wav" in lines[1]["error"]["message"]
    for line, name in ((lines[0], "fox"), (lines[2], "weather")):
        assert_words(name, line["text"], clip_texts)
        assert set(line) == {"file", "text", "language", "duration", "segments", "worker_id", "timings"}
        assert line["segments"][0]["text"].strip() and line["timings"]["inference_s"] > 0
    assert "warming workers" in proc.stderr


def test_cli_human_output_and_status():
    cmd = [
        sys.executable,
        "-m",
        "whisperpool.cli",
        "transcribe",
        "--no-progress",
        "--status",
        "--workers",
        "1",
        "--language",
        "en",
        str(clip("groceries")),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "bananas" in proc.stdout and "pool status" in proc.stdout and "completed 1" in proc.stdout


def test_sigkill_mid_request_with_8_concurrent_requests_loses_nothing(engine, clip_texts):
    import signal
    import time

    names = ["weather", "fox", "groceries", "weather", "fox", "groceries", "weather", "fox"]
    futures = [engine.pool.submit(load_audio(clip(n))) for n in names]
    deadline = time.monotonic() + WAIT
    busy = []
    while not busy and time.monotonic() < deadline:
        busy = [w for w in engine.pool.workers if w.job is not None]
        time.sleep(0.02)
    os.kill(busy[0].pid, signal.SIGKILL)
    outcomes = []
    for fut in futures:  # each gets exactly one answer, within a bound
        outcomes.append(fut.result(timeout=WAIT))
    for name, result in zip(names, outcomes, strict=True):
        assert_words(name, result.text, clip_texts)
    status = engine.status()
    assert status.requests_retried >= 1 and status.worker_crashes >= 1
    deadline = time.monotonic() + WAIT
    while engine.status().warm_workers < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine.status().warm_workers == 2  # back to full warm size
    assert busy[0].pid not in {w.pid for w in engine.status().workers}
