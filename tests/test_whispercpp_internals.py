"""The pywhispercpp bindings the whisper.cpp backend calls are still there.

``whisperpool.backends.whispercpp`` calls the low-level module ``_pywhispercpp`` (the
``whisper_full`` family, token data, callbacks, parameter fields), not pywhispercpp's
``Model`` class, so ``pyproject.toml`` pins the tested range; these checks (no model is
loaded) fail with the name of what changed when a new version moves one.
"""

from __future__ import annotations

import pytest

pw = pytest.importorskip("_pywhispercpp")

TESTED = "pywhispercpp 1.5.1 (whisper.cpp 1.8.5)"

FUNCTIONS = (
    "whisper_init_from_file_with_params", "whisper_context_default_params", "whisper_full_default_params",
    "whisper_full", "whisper_full_n_segments", "whisper_full_n_tokens", "whisper_full_get_token_data",
    "whisper_full_get_segment_t0", "whisper_full_get_segment_t1", "whisper_full_get_segment_text",
    "whisper_full_lang_id", "whisper_lang_str", "whisper_lang_max_id", "whisper_lang_auto_detect",
    "whisper_pcm_to_mel", "whisper_token_eot", "whisper_token_beg", "whisper_token_to_bytes", "whisper_log_set",
    "assign_encoder_begin_callback", "assign_new_segment_callback",
)  # fmt: skip
PARAMS = (
    "n_threads", "print_progress", "print_realtime", "print_timestamps", "language", "translate", "no_context",
    "suppress_nst", "token_timestamps", "temperature", "temperature_inc", "greedy", "beam_search",
    "n_max_text_ctx", "initial_prompt", "audio_ctx",
)  # fmt: skip


def changed(what: str) -> str:
    return f"pywhispercpp changed: {what}; whisperpool.backends.whispercpp relies on it (tested with {TESTED})"


def test_the_functions_the_backend_calls_exist():
    for name in FUNCTIONS:
        assert callable(getattr(pw, name, None)), changed(f"_pywhispercpp.{name} is gone")


def test_the_parameters_the_backend_sets_exist_and_keep_their_defaults():
    params = pw.whisper_full_default_params(pw.whisper_sampling_strategy.WHISPER_SAMPLING_GREEDY)
    for name in PARAMS:
        assert hasattr(params, name), changed(f"whisper_full_params.{name} is gone")
    assert params.no_context is True, changed("no_context is no longer on by default")
    params.greedy = {"best_of": 1}
    params.beam_search = {"beam_size": 2, "patience": -1.0}
    assert params.greedy["best_of"] == 1 and params.beam_search["beam_size"] == 2, changed("greedy / beam_search dicts")
    context = pw.whisper_context_default_params()
    assert hasattr(context, "use_gpu") and hasattr(context, "flash_attn"), changed("whisper_context_params fields")


def test_token_data_has_the_fields_the_backend_reads():
    fields = set(dir(pw.whisper_token_data))
    assert {"id", "p", "plog", "t0", "t1"} <= fields, changed(f"whisper_token_data has {sorted(fields)}")
