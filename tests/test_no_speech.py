"""Nothing from nothing, and the same text from the same audio.

Silence, digital zero and noise give no words (the decoder never sees them); audio under
0.1 s is refused as OpenAI's API refuses it; a truncated file is transcribed as far as
it goes and flagged.
"""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest

from conftest import clip
from whisperpool import AudioTooShort, DecodeOptions, PoolConfig, TranscriptionEngine
from whisperpool.audio import SAMPLE_RATE, TOO_SHORT, decode_request, load_audio


def wav_bytes(samples: np.ndarray, *, declared_s: float | None = None) -> bytes:
    """A 16-bit mono WAV; ``declared_s`` makes its header promise more than it holds."""
    data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    size = len(data) if declared_s is None else int(declared_s * SAMPLE_RATE) * 2
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", size) + data


def test_audio_under_a_tenth_of_a_second_is_refused_in_openais_words():
    with pytest.raises(AudioTooShort, match="Audio file is too short. Minimum audio length is 0.1 seconds."):
        decode_request(np.zeros(1599, np.float32))
    with pytest.raises(AudioTooShort) as info:
        decode_request(wav_bytes(np.zeros(8, np.float32), declared_s=10.0), name="short.wav")
    assert str(info.value) == f"short.wav: {TOO_SHORT}" and info.value.code == "audio_too_short"
    assert decode_request(np.zeros(1600, np.float32)).seconds == 0.1


def test_a_truncated_file_is_decoded_as_far_as_it_goes_and_flagged():
    speech = load_audio(clip("fox"))
    decoded = decode_request(wav_bytes(speech, declared_s=10.0), name="cut.wav")
    assert decoded.samples.size == speech.size
    (warning,) = decoded.warnings
    assert "cut.wav" in warning and "declares 10.0 s" in warning and "truncated" in warning
    assert decode_request(wav_bytes(speech), name="whole.wav").warnings == ()


@pytest.fixture(scope="module")
def engine():
    config = PoolConfig(pool_size=2, threads_per_worker=1, decode=DecodeOptions(language="en"))
    loop = asyncio.new_event_loop()
    eng = TranscriptionEngine(config)
    loop.run_until_complete(eng.start())
    yield eng, loop
    loop.run_until_complete(eng.close())
    loop.close()


def run(engine_and_loop, coro_fn):
    engine, loop = engine_and_loop
    return loop.run_until_complete(coro_fn(engine))


@pytest.mark.real_model
@pytest.mark.parametrize(
    "name,audio",
    [
        ("digital zero", np.zeros(30 * SAMPLE_RATE, np.float32)),
        ("quiet hiss", (np.random.default_rng(7).standard_normal(10 * SAMPLE_RATE) * 0.003).astype(np.float32)),
        ("white noise", (np.random.default_rng(8).standard_normal(10 * SAMPLE_RATE) * 0.1).astype(np.float32)),
        ("a hum", (0.2 * np.sin(2 * np.pi * 120 * np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)),
    ],
)
def test_audio_without_speech_gives_no_words(engine, name, audio):
    result = run(engine, lambda e: e.transcribe(audio))
    assert (result.text, result.segments, result.window) == ("", (), "none"), name
    assert result.language == "en"  # the requested one, not a guess from noise
    unrequested = run(engine, lambda e: e.transcribe(audio, language=None))
    assert (unrequested.text, unrequested.language) == ("", None)


@pytest.mark.real_model
def test_the_gate_lets_speech_through_and_can_be_turned_off(engine, clip_texts):
    speech = run(engine, lambda e: e.transcribe(clip("fox")))
    assert "fox" in speech.text.lower() and speech.window in ("short", "full")
    ungated = run(engine, lambda e: e.transcribe(np.zeros(5 * SAMPLE_RATE, np.float32), speech_gate=False))
    assert ungated.window != "none"  # the decoder ran on silence, as asked


@pytest.mark.real_model
def test_a_truncated_file_is_transcribed_with_its_warning(engine, tmp_path):
    path = tmp_path / "cut.wav"
    path.write_bytes(wav_bytes(load_audio(clip("fox")), declared_s=10.0))
    result = run(engine, lambda e: e.transcribe(path))
    assert "fox" in result.text.lower() and len(result.warnings) == 1 and "truncated" in result.warnings[0]
    with pytest.raises(AudioTooShort):
        run(engine, lambda e: e.transcribe(wav_bytes(np.zeros(8, np.float32), declared_s=10.0)))


@pytest.mark.real_model
def test_the_fallback_is_deterministic_so_every_run_and_worker_gives_the_same_text(engine):
    # Temperature 1 only: where faster-whisper would sample at random, the default decodes
    # deterministically (a beam search with a repetition penalty).
    from whisperpool.audio import load_audio as load

    audio = load(clip("weather"))
    options = DecodeOptions(language="en", temperature=(1.0,), window="full")

    async def many(e, opts):
        return await asyncio.gather(*(e.transcribe(audio, options=opts) for _ in range(4)))

    results = run(engine, lambda e: many(e, options))
    assert len({r.worker_id for r in results}) >= 2  # several workers took some (the express one too)
    assert len({r.text for r in results}) == 1, [r.text for r in results]
    assert "mountains" in results[0].text
    fresh = run(engine, lambda e: many(e, options.replace(sampling="random")))
    assert all(r.text for r in fresh)  # faster-whisper's own sampling, still asked for by name


def test_the_gate_agrees_with_faster_whispers_vad_and_stops_at_the_first_speech():
    from faster_whisper.vad import get_speech_timestamps

    from whisperpool.backends.faster_whisper import FasterWhisperBackend

    rng = np.random.default_rng(11)
    speech = load_audio(clip("weather"))
    cases = {
        "speech": speech,
        "speech after 9 s of hiss": np.concatenate([(rng.standard_normal(9 * SAMPLE_RATE) * 0.003), speech]),
        "hiss": rng.standard_normal(10 * SAMPLE_RATE) * 0.01,
        "hum": 0.2 * np.sin(2 * np.pi * 120 * np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE),
        "white noise": rng.standard_normal(5 * SAMPLE_RATE) * 0.1,
    }
    gate = FasterWhisperBackend.__new__(FasterWhisperBackend)  # no model: the gate needs only the VAD
    for name, audio in cases.items():
        audio = audio.astype(np.float32)
        assert gate.hears_speech(audio) == bool(get_speech_timestamps(audio, None)), name
    assert gate.hears_speech(speech) and not gate.hears_speech(cases["hiss"].astype(np.float32))
