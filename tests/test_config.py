"""Settings are validated on construction, with a message that names the field."""

from __future__ import annotations

import dataclasses

import pytest

from whisperpool import ConfigError, DecodeOptions, PoolConfig


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"pool_size": 0}, "PoolConfig.pool_size"),
        ({"pool_size": 1.5}, "PoolConfig.pool_size"),
        ({"model": " "}, "PoolConfig.model"),
        ({"device": "tpu"}, "PoolConfig.device"),
        ({"backend": "whisper.cpp"}, "PoolConfig.backend"),
        ({"threads_per_worker": 0}, "PoolConfig.threads_per_worker"),
        ({"warmup_timeout_s": 0}, "PoolConfig.warmup_timeout_s"),
        ({"request_timeout_s": -1}, "PoolConfig.request_timeout_s"),
        ({"max_queue": -1}, "PoolConfig.max_queue"),
        ({"piece_batch": 0}, "PoolConfig.piece_batch"),
    ],
)
def test_pool_config_names_the_bad_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        PoolConfig(**changes)


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"beam_size": 0}, "DecodeOptions.beam_size"),
        ({"temperature": 1.5}, "DecodeOptions.temperature"),
        ({"temperature": ()}, "DecodeOptions.temperature"),
        ({"language": "e n"}, "DecodeOptions.language"),
        ({"task": "summarize"}, "DecodeOptions.task"),
        ({"window": "tiny"}, "DecodeOptions.window"),
        ({"max_tokens_per_s": 0}, "DecodeOptions.max_tokens_per_s"),
        ({"max_tokens_per_s": True}, "DecodeOptions.max_tokens_per_s"),
        ({"no_repeat_ngram_size": -1}, "DecodeOptions.no_repeat_ngram_size"),
        ({"no_repeat_ngram_size": 2.5}, "DecodeOptions.no_repeat_ngram_size"),
    ],
)
def test_decode_options_name_the_bad_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        DecodeOptions(**changes)


def test_configs_are_frozen_and_keyword_only():
    config = PoolConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pool_size = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        PoolConfig(2)  # type: ignore[misc]


def test_threads_default_to_cores_divided_by_workers(monkeypatch):
    import whisperpool.config as cfg

    monkeypatch.setattr(cfg, "available_cores", lambda: 8)
    assert PoolConfig(pool_size=2).cpu_threads == 4
    assert PoolConfig(pool_size=16).cpu_threads == 1
    assert PoolConfig(pool_size=2, threads_per_worker=3).cpu_threads == 3


def test_threads_are_sized_for_the_largest_pool_not_the_first(monkeypatch):
    import whisperpool.config as cfg

    monkeypatch.setattr(cfg, "available_cores", lambda: 8)
    adaptive = PoolConfig(pool_size=1, min_workers=1, max_workers=4)
    assert adaptive.initial_size == 1 and adaptive.cpu_threads == 2  # 4 workers x 2 threads = 8 cores
    assert PoolConfig(pool_size=1, max_workers=3).cpu_threads == 2


def test_decode_replace_validates_and_rejects_unknown_names():
    opts = DecodeOptions().replace(language="en", temperature=0.0)
    assert opts.language == "en" and opts.temperature == (0.0,)
    assert opts.to_faster_whisper()["temperature"] == [0.0]
    with pytest.raises(ConfigError, match="unknown decoding option"):
        DecodeOptions().replace(langauge="en")


def test_a_long_recordings_pieces_are_batched_on_a_gpu_unless_told_otherwise():
    assert PoolConfig().pieces_per_batch == 1
    assert PoolConfig(device="auto").pieces_per_batch == 1  # may be a CPU: the safe default
    assert PoolConfig(device="cuda").pieces_per_batch == 8
    assert PoolConfig(device="cuda", piece_batch=2).pieces_per_batch == 2
    assert PoolConfig(piece_batch=4).pieces_per_batch == 4
