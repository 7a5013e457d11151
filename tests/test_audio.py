"""Decoding any input to 16 kHz mono float32, and clear errors for bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest

from conftest import clip, encode
from whisperpool import AudioTooLong, InvalidAudio
from whisperpool.audio import SAMPLE_RATE, decode_file, from_array, load_audio, resample
from whisperpool.testing import silent_flac


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(audio))


def test_the_example_wav_decodes_to_its_samples():
    audio = decode_file(clip("fox"))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 55015 and 0.05 < np.abs(audio).max() <= 1.0


@pytest.mark.parametrize(
    "suffix,rate,channels",
    [("flac", 16_000, 1), ("ogg", 48_000, 1), ("wav", 44_100, 2), ("flac", 48_000, 2), ("mp3", 44_100, 2)],
)
def test_formats_rates_and_channels_all_become_16k_mono(tmp_path, suffix, rate, channels):
    source = tone(2.0, rate)
    try:
        path = encode(source, tmp_path / f"tone.{suffix}", rate=rate, channels=channels)
    except Exception as exc:  # an encoder missing from this PyAV build is not our failure
        pytest.skip(f"cannot encode {suffix}: {exc}")
    audio = load_audio(path)
    assert abs(len(audio) / SAMPLE_RATE - 2.0) < 0.1
    assert abs(dominant_freq(audio) - 440.0) < 5.0
    # Stereo is mixed down as FFmpeg (and Whisper) do it: (left + right) / sqrt(2).
    expected = 0.5 if channels == 1 else (0.5 + 0.25) / np.sqrt(2)
    assert abs(np.percentile(np.abs(audio), 99.5) - expected) < 0.06


def test_bytes_and_file_objects_decode_like_paths():
    data = clip("fox").read_bytes()
    by_path = load_audio(clip("fox"))
    assert np.array_equal(load_audio(data), by_path)
    assert np.array_equal(load_audio(io.BytesIO(data)), by_path)


def test_not_audio_empty_and_truncated_inputs_name_the_problem(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio\n" * 20)
    with pytest.raises(InvalidAudio, match=r"notes\.txt: not decodable audio"):
        load_audio(text)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(InvalidAudio, match=r"empty\.wav: file is empty"):
        load_audio(empty)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(clip("fox").read_bytes()[:30])  # the header stops midway
    with pytest.raises(InvalidAudio, match=r"cut\.wav"):
        load_audio(cut)
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(clip("fox").read_bytes()[:44])
    with pytest.raises(InvalidAudio, match=r"header\.wav: .*(no audio samples|not decodable)"):
        load_audio(header_only)
    with pytest.raises(InvalidAudio, match=r"missing\.wav: no such file"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(InvalidAudio, match="empty input"):
        load_audio(b"")
    with pytest.raises(InvalidAudio, match="upload.bin: not decodable"):
        load_audio(b"\x00\x01garbage" * 100, name="upload.bin")


def test_arrays_are_checked_scaled_mixed_and_resampled():
    pcm = (tone(1.0, SAMPLE_RATE) * 32767).astype(np.int16)
    as_float = from_array(pcm)
    assert as_float.dtype == np.float32 and abs(np.abs(as_float).max() - 0.5) < 0.01
    stereo = np.stack([tone(1.0, SAMPLE_RATE), np.zeros(SAMPLE_RATE, np.float32)], axis=1)
    assert abs(np.abs(from_array(stereo)).max() - 0.25) < 0.01
    stereo_pcm = (stereo * 32767).astype(np.int16)  # integers are scaled before the mix-down
    assert abs(np.abs(from_array(stereo_pcm)).max() - 0.25) < 0.01
    at_8k = from_array(tone(1.0, 8_000), sample_rate=8_000)
    assert abs(len(at_8k) - SAMPLE_RATE) < 100 and abs(dominant_freq(at_8k) - 440.0) < 5.0
    assert len(resample(tone(0.5, 48_000), 48_000)) == pytest.approx(8_000, abs=50)
    for bad, message in [
        (np.zeros(0, np.float32), "no audio samples"),
        (np.array([0.0, np.nan], np.float32), "NaN"),
        (np.zeros((2, 2, 2), np.float32), "shape"),
        (np.array(["a"]), "unsupported sample type"),
    ]:
        with pytest.raises(InvalidAudio, match=message):
            from_array(bad)
    with pytest.raises(InvalidAudio, match="sample_rate"):
        from_array(tone(0.1, 16_000), sample_rate=0)


# -- a bound on decoded audio: a few kilobytes must not decode to gigabytes -------------
def test_a_header_declaring_more_than_the_limit_is_refused_before_decoding():
    data = silent_flac(600)
    assert len(data) < 200_000
    with pytest.raises(AudioTooLong, match=r"header declares 600 s, over the limit of 60 s \(max_audio_s\)") as info:
        load_audio(data, max_seconds=60)
    assert info.value.code == "audio_too_long" and isinstance(info.value, InvalidAudio)


def test_audio_that_decodes_past_the_limit_stops_there():
    data = silent_flac(600, declare_length=False)  # nothing in the header to refuse it by
    with pytest.raises(AudioTooLong, match="decodes to more than the limit of 60 s"):
        load_audio(data, max_seconds=60)
    assert load_audio(silent_flac(30, declare_length=False), max_seconds=60).size == 30 * 16_000


def test_an_array_over_the_limit_is_refused_by_the_loader_and_the_pool(make_pool):
    with pytest.raises(AudioTooLong, match="600 s, over the limit of 60 s"):
        load_audio(np.zeros(600 * 16_000, np.float32), max_seconds=60)
    pool = make_pool(pool_size=1, max_audio_s=60)
    pool.start()
    with pytest.raises(AudioTooLong, match="over the limit of 60 s"):
        pool.submit(np.zeros(61 * 16_000, np.float32))
    assert pool.submit(np.zeros(60 * 16_000, np.float32)).result(timeout=30).duration == 60.0
