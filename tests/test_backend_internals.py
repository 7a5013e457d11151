"""The faster-whisper internals the real backend overrides or calls are still there.

``whisperpool.backends.faster_whisper`` subclasses ``WhisperModel`` to encode a window
shorter than 30 s: it overrides ``encode`` and ``generate_with_fallback``, reads the
decoding result, the tokenizer and the options, and calls the VAD helpers and
``restore_speech_timestamps``. None of these is faster-whisper's public API, so
``pyproject.toml`` pins faster-whisper to the range tested; these checks (no model is
loaded) fail with the name of the internal that changed when a new version moves one.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import numpy as np
import pytest

ctranslate2 = pytest.importorskip("ctranslate2")
faster_whisper = pytest.importorskip("faster_whisper")

from faster_whisper import WhisperModel  # noqa: E402
from faster_whisper import transcribe as fw_transcribe  # noqa: E402
from faster_whisper import vad as fw_vad  # noqa: E402
from faster_whisper.feature_extractor import FeatureExtractor  # noqa: E402
from faster_whisper.tokenizer import Tokenizer  # noqa: E402

from whisperpool import DecodeOptions  # noqa: E402
from whisperpool.backends import faster_whisper as backend  # noqa: E402

TESTED = "faster-whisper 1.2.1, ctranslate2 4.8.5"


def changed(internal: str, what: str) -> str:
    return (
        f"faster-whisper internal changed: {internal}: {what}. "
        f"whisperpool.backends.faster_whisper relies on it (tested with {TESTED}, "
        f"installed faster-whisper {faster_whisper.__version__}, ctranslate2 {ctranslate2.__version__})"
    )


def params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


def source(func) -> str:
    """The function's source with all white space removed, for matching calls."""
    return re.sub(r"\s+", "", inspect.getsource(func))


def field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_encode_is_overridable_and_called_on_every_path():
    assert params(WhisperModel.encode) == ["self", "features"], changed(
        "WhisperModel.encode", f"parameters are {params(WhisperModel.encode)}, not (self, features)"
    )
    # The override only takes effect where faster-whisper calls it through self.
    for caller in ("generate_segments", "detect_language"):
        method = getattr(WhisperModel, caller, None)
        assert method is not None, changed(f"WhisperModel.{caller}", "is gone")
        assert "self.encode(" in source(method), changed(f"WhisperModel.{caller}", "no longer calls self.encode")


def test_generate_with_fallback_keeps_its_signature_and_four_results():
    expected = ["self", "encoder_output", "prompt", "tokenizer", "options"]
    assert params(WhisperModel.generate_with_fallback) == expected, changed(
        "WhisperModel.generate_with_fallback", f"parameters are {params(WhisperModel.generate_with_fallback)}"
    )
    call = "(result,avg_logprob,temperature,compression_ratio,)=self.generate_with_fallback(encoder_output,prompt,tokenizer,options)"
    assert call in source(WhisperModel.generate_segments), changed(
        "WhisperModel.generate_segments",
        "no longer unpacks (result, avg_logprob, temperature, compression_ratio) from self.generate_with_fallback",
    )


def test_the_decoding_result_has_the_fields_the_guard_reads():
    result = ctranslate2.models.WhisperGenerationResult
    for name in ("sequences_ids", "no_speech_prob"):
        assert hasattr(result, name), changed(f"ctranslate2.models.WhisperGenerationResult.{name}", "is gone")
    assert "max_new_tokens" in field_names(fw_transcribe.TranscriptionOptions), changed(
        "TranscriptionOptions.max_new_tokens", "is gone (the guard's token cap)"
    )


def test_the_tokenizer_has_timestamp_begin_and_decode():
    assert isinstance(inspect.getattr_static(Tokenizer, "timestamp_begin", None), property), changed(
        "Tokenizer.timestamp_begin", "is no longer a property"
    )
    assert params(Tokenizer.decode) == ["self", "tokens"], changed(
        "Tokenizer.decode", f"parameters are {params(Tokenizer.decode)}"
    )


def test_features_are_100_frames_a_second_padded_to_30_s():
    fe = FeatureExtractor()
    assert fe.sampling_rate // fe.hop_length == backend.FRAMES_PER_SECOND, changed(
        "FeatureExtractor.hop_length", f"{fe.hop_length} samples at {fe.sampling_rate} Hz"
    )
    assert fe.nb_max_frames == 30 * backend.FRAMES_PER_SECOND, changed(
        "FeatureExtractor.nb_max_frames", f"{fe.nb_max_frames}, not a 30 s window"
    )


def test_the_subclass_attributes_do_not_collide():
    for name in ("window_frames", "_encoded"):
        assert not hasattr(WhisperModel, name), changed(f"WhisperModel.{name}", "now exists and would be shadowed")


def test_constructor_and_transcribe_take_the_keywords_we_pass():
    init = params(WhisperModel.__init__)
    for name in ("model_size_or_path", "device", "compute_type", "cpu_threads", "num_workers"):
        assert name in init, changed("WhisperModel.__init__", f"has no parameter {name!r}")
    keywords = set(DecodeOptions().to_faster_whisper()) | {"vad_filter", "temperature", "max_new_tokens"}
    missing = keywords - set(params(WhisperModel.transcribe))
    assert not missing, changed("WhisperModel.transcribe", f"has no parameter(s) {sorted(missing)}")


def test_segments_words_and_info_have_the_fields_we_copy():
    segment = {"id", "seek", "start", "end", "text", "tokens", "avg_logprob", "compression_ratio", "no_speech_prob"}
    for cls, names in (
        (fw_transcribe.Segment, segment | {"words", "temperature"}),
        (fw_transcribe.Word, {"start", "end", "word", "probability"}),
        (fw_transcribe.TranscriptionInfo, {"language", "language_probability", "duration"}),
    ):
        missing = names - field_names(cls)
        assert not missing, changed(f"faster_whisper.transcribe.{cls.__name__}", f"has no field(s) {sorted(missing)}")


def test_the_vad_helpers_run_as_the_backend_calls_them():
    assert params(fw_vad.get_speech_timestamps)[:2] == ["audio", "vad_options"], changed(
        "faster_whisper.vad.get_speech_timestamps", f"parameters are {params(fw_vad.get_speech_timestamps)}"
    )
    audio = np.arange(32_000, dtype=np.float32)
    chunks = [{"start": 1_000, "end": 5_000}, {"start": 20_000, "end": 24_000}]
    out = fw_vad.collect_chunks(audio, chunks)
    assert isinstance(out, tuple) and len(out) == 2, changed("faster_whisper.vad.collect_chunks", "no longer a pair")
    pieces, _ = out
    joined = np.concatenate(pieces)
    assert np.array_equal(joined, np.concatenate([audio[1_000:5_000], audio[20_000:24_000]])), changed(
        "faster_whisper.vad.collect_chunks", "no longer returns the chunks' samples"
    )
    # Speech 0.1-0.3 s: 0.1 s into the first chunk (from 0.0625 s), 0.05 s into the second (from 1.25 s);
    # faster-whisper rounds the times to 10 ms.
    segment = fw_transcribe.Segment(
        id=1, seek=0, start=0.1, end=0.3, text=" hi", tokens=[1], avg_logprob=-0.1,
        compression_ratio=1.0, no_speech_prob=0.0, words=None, temperature=0.0,
    )  # fmt: skip
    (restored,) = list(fw_transcribe.restore_speech_timestamps([segment], chunks, backend.SAMPLE_RATE))
    assert (restored.start, restored.end) == pytest.approx((0.1625, 1.3), abs=0.01), changed(
        "faster_whisper.transcribe.restore_speech_timestamps",
        f"put 0.1-0.3 s of speech at {restored.start}-{restored.end} s of the audio",
    )


def test_the_fallback_samples_through_self_model_generate_as_the_deterministic_wrapper_expects():
    # backends.faster_whisper.DeterministicFallback rewrites the sampling steps of the
    # temperature fallback: they must still be calls of self.model.generate that sample
    # best_of hypotheses with sampling_topk=0 at sampling_temperature.
    code = source(WhisperModel.generate_with_fallback)
    for needle in ('"num_hypotheses":options.best_of', '"sampling_topk":0', '"sampling_temperature":temperature'):
        assert needle in code, changed("WhisperModel.generate_with_fallback", f"no longer samples with {needle}")
    assert "self.model.generate(" in code, changed(
        "WhisperModel.generate_with_fallback", "no longer calls self.model.generate"
    )
