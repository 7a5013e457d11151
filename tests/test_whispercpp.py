"""The whisper.cpp backend on the converted packaged model, on real speech: in a worker's
place, in a pool that loses a worker, from the CLI, and beside faster-whisper on one server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from conftest import MAX_WER, clip, serving, wait_for
from whisperpool import DecodeOptions, PoolConfig, TranscriptionEngine
from whisperpool.audio import load_audio
from whisperpool.errors import InvalidParameter
from whisperpool.models import resolve_model
from whisperpool.server import build_settings, create_app
from whisperpool.testing import FakeBehavior
from whisperpool.wer import normalize, word_error_rate
from whisperpool.worker.protocol import BackendSpec

pytestmark = pytest.mark.real_model
WAIT = 180.0  # whisper.cpp's full window is several seconds a clip on a shared 2-core machine


def spec(name: str, model: str) -> BackendSpec:
    return BackendSpec(name, model, "cpu", "int8", 2, 0, FakeBehavior())


@pytest.fixture(scope="module")
def cpp():
    from whisperpool.backends.whispercpp import WhisperCppBackend

    backend = WhisperCppBackend(spec("whispercpp", resolve_model("base", None, "whispercpp").source))
    backend.load()
    assert backend.warm_up(DecodeOptions()) == ("short", "full")
    return backend


def test_the_same_text_as_faster_whisper_on_clean_speech(cpp, clip_texts):
    from whisperpool.backends.faster_whisper import FasterWhisperBackend

    fw = FasterWhisperBackend(spec("faster-whisper", resolve_model("base").source))
    fw.load()
    options = DecodeOptions(language="en", window="full")
    for name in ("weather", "library"):
        audio = load_audio(clip(name))
        ours, theirs = cpp.transcribe(audio, options), fw.transcribe(audio, options)
        # float16 weights against CTranslate2's int8: a near-tie may go either way ("hour"/"our")
        assert word_error_rate(theirs.text, ours.text) <= 0.05, (name, ours.text, theirs.text)
        assert word_error_rate(clip_texts[name], ours.text) <= 0.1, ours.text
        assert ours.window == "full" and ours.language == "en" and ours.segments[-1].end <= ours.duration


def test_short_audio_takes_the_short_window_with_words(cpp, clip_texts):
    audio = load_audio(clip("fox"))
    result = cpp.transcribe(audio, DecodeOptions(word_timestamps=True))
    assert result.window == "short" and result.language == "en"  # detected
    assert word_error_rate(clip_texts["fox"], result.text) <= MAX_WER, result.text
    words = [w for s in result.segments for w in s.words]
    assert "".join(w.word for w in words).strip() == result.text
    starts = [w.start for w in words]
    assert starts == sorted(starts) and 0 <= starts[0] < 1.0 and words[-1].end <= result.duration
    assert "lazy" in normalize(" ".join(w.word for w in words if 1.5 < w.start))  # the end of the sentence
    # Not a trace of the previous request: a full window between two short ones changes nothing.
    cpp.transcribe(load_audio(clip("weather")), DecodeOptions(language="en", window="full"))
    assert cpp.transcribe(audio, DecodeOptions(word_timestamps=True)).text == result.text


def test_short_windows_are_whole_blocks_of_the_attention_padding():
    from whisperpool.backends.whispercpp import audio_ctx

    assert [audio_ctx(s) for s in (8, 10, 11, 25, 29, 30)] == [512, 512, 768, 1280, 1500, 1500]


def test_silence_gives_no_text_and_vad_filter_is_a_clear_error(cpp):
    result = cpp.transcribe(np.zeros(3 * 16000, np.float32), DecodeOptions())
    assert (result.text, result.segments, result.window) == ("", (), "none")
    with pytest.raises(InvalidParameter, match="vad_filter is not supported by the whisper.cpp backend"):
        cpp.transcribe(load_audio(clip("fox")), DecodeOptions(vad_filter=True))


def test_a_long_recording_is_planned_and_its_pieces_decoded_in_order(cpp, clip_texts):
    audio = np.concatenate([load_audio(clip("weather")), np.zeros(16000, np.float32), load_audio(clip("fox"))])
    from whisperpool.pool.pieces import MAX_GAP_S, group_pieces

    regions, language, probability = cpp.plan(audio, DecodeOptions(), 12.0)
    assert language == "en" and probability > 0.5
    pieces = group_pieces(list(regions), 12 * 16000, int(MAX_GAP_S * 16000))  # as the pool groups them
    assert len(pieces) >= 2
    result = cpp.transcribe_pieces(audio, pieces, DecodeOptions(language="en"))
    expected = clip_texts["weather"] + " " + clip_texts["fox"]
    assert word_error_rate(expected, result.text) <= MAX_WER, result.text
    assert [s.id for s in result.segments] == list(range(1, len(result.segments) + 1))
    assert result.segments[-1].start > 11.0  # the fox, moved onto the recording's timeline


def test_a_worker_killed_mid_request_is_replaced_and_the_request_retried(clip_texts):
    config = PoolConfig(pool_size=2, threads_per_worker=1, backend="whispercpp", decode=DecodeOptions(language="en"))
    with TranscriptionEngine(config) as engine:
        names = ["weather", "fox", "library", "fox"]
        futures = [engine.pool.submit(load_audio(clip(n))) for n in names]
        assert wait_for(lambda: any(w.job is not None for w in engine.pool.workers), timeout=WAIT)
        victim = next(w for w in engine.pool.workers if w.job is not None)
        os.kill(victim.pid, signal.SIGKILL)
        for name, fut in zip(names, futures, strict=True):
            assert word_error_rate(clip_texts[name], fut.result(timeout=WAIT).text) <= MAX_WER
        status = engine.status()
        assert status.requests_retried >= 1 and status.worker_crashes >= 1 and status.requests_failed == 0
        assert wait_for(lambda: engine.status().warm_workers == 3, timeout=WAIT)  # and the express worker
        assert victim.pid not in {w.pid for w in engine.status().workers}


def test_a_live_stream_on_whisper_cpp_commits_the_sentence():
    from whisperpool.streaming.client import play_local

    audio = np.concatenate([np.zeros(8000, np.float32), load_audio(clip("groceries")), np.zeros(24000, np.float32)])

    async def run():
        config = PoolConfig(
            pool_size=1, threads_per_worker=2, backend="whispercpp", decode=DecodeOptions(language="en")
        )
        async with TranscriptionEngine(config) as engine:
            return [event async for _, event in play_local(engine.stream(), audio, pace=2.0)]

    events = asyncio.run(asyncio.wait_for(run(), WAIT))
    (final,) = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert {"remind", "milk", "home"} <= set(normalize(final["transcript"])), final["transcript"]


def test_the_cli_transcribes_with_whisper_cpp(clip_texts):
    cmd = [sys.executable, "-m", "whisperpool.cli", "transcribe", "--backend", "whispercpp", "--json"]
    cmd += ["--workers", "1", "--language", "en", str(clip("groceries"))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT)
    assert proc.returncode == 0, proc.stderr
    (line,) = [json.loads(x) for x in proc.stdout.splitlines()]
    assert word_error_rate(clip_texts["groceries"], line["text"]) <= MAX_WER, line["text"]


def test_one_server_serves_both_engines_side_by_side(clip_texts):
    settings = build_settings(
        {"pool.pool_size": 1, "pool.threads_per_worker": 1, "extra_models": ["cpp=base-q8_0::1:whispercpp"]}
    )
    assert (settings.pool.backend, settings.models["cpp"].backend) == ("faster-whisper", "whispercpp")
    wav = clip("weather").read_bytes()
    with serving(create_app(settings)) as url, httpx.Client(base_url=url, timeout=WAIT) as client:
        deadline = time.monotonic() + WAIT
        assert wait_for(lambda: client.get("/health/ready").status_code == 200, timeout=WAIT)
        assert wait_for(lambda: client.get("/v1/pool").json()["models"]["cpp"]["warm_workers"] == 1, timeout=WAIT)
        texts = {}
        for model in ("base", "cpp"):
            r = client.post(
                "/v1/audio/transcriptions",
                files={"file": ("weather.wav", wav)},
                data={"model": model, "language": "en", "response_format": "verbose_json"},
            )
            assert r.status_code == 200, r.text
            texts[model] = r.json()["text"]
        assert time.monotonic() < deadline
    for model, text in texts.items():
        assert word_error_rate(clip_texts["weather"], text) <= MAX_WER, (model, text)
