"""Fuzzing (hypothesis) of the audio path and the HTTP endpoint with malformed input.

The contract: bad input is a clear 4xx / InvalidAudio, never a 500 or another exception,
and no worker dies of it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import clip, fake_config, wait_for
from whisperpool import InvalidAudio
from whisperpool.audio import load_audio
from whisperpool.languages import WHISPER_LANGUAGES
from whisperpool.server import ServerSettings, create_app
from whisperpool.testing import FakeBehavior

WAV = clip("fox").read_bytes()[:8000]  # a real header and half a second of speech

# Markers no decoded file will start with, so only malformed input is being tested.
UNREACHABLE = FakeBehavior(crash_marker=7.25, hang_marker=8.25, error_marker=9.25)


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for position, value in edits:
        buf[position % len(buf)] = value
    return bytes(buf[: max(0, len(buf) - cut)])


mutated_wavs = st.builds(
    mutate,
    st.just(WAV),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=12),
    st.integers(0, len(WAV)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=4096), mutated_wavs))
def test_decoding_anything_gives_samples_or_invalid_audio(data):
    try:
        audio = load_audio(data, name="fuzz.bin")
    except InvalidAudio as exc:
        assert "fuzz.bin" in str(exc)
        return
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
    assert np.isfinite(audio).all()


@pytest.fixture(scope="module")
def client():
    app = create_app(ServerSettings(pool=fake_config(pool_size=2, fake=UNREACHABLE)))
    with TestClient(app) as c:
        assert wait_for(lambda: c.get("/health/ready").status_code == 200)
        yield c


text = st.text(max_size=40)
fields = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.sampled_from(["whisper-1", "base"]), text),
        "response_format": st.one_of(st.sampled_from(["json", "text", "srt", "vtt", "verbose_json"]), text),
        "language": st.one_of(st.sampled_from(["en", "de", "xx", "english", " EN "]), text),
        "temperature": st.one_of(st.sampled_from(["0", "0.3", "1", "nan", "inf", "-1", "1.5", "1e400"]), text),
        "prompt": text,
        "stream": st.one_of(st.sampled_from(["true", "false"]), text),
        "timestamp_granularities[]": st.one_of(st.sampled_from(["word", "segment"]), text),
    },
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(st.binary(max_size=2048), mutated_wavs),
    filename=st.text(max_size=30),
    form=fields,
    content_type=st.sampled_from(["audio/wav", "application/octet-stream", "text/plain", ""]),
)
def test_the_endpoint_answers_4xx_never_500(client, body, filename, form, content_type):
    pids = sorted(w["pid"] for w in client.get("/v1/pool").json()["workers"])
    files = {"file": (filename or "x", body, content_type or None)}
    r = client.post("/v1/audio/transcriptions", files=files, data=form)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert str(client.app.state.upload_dir) not in r.text and ".upload" not in r.text  # no server path
    assert sorted(w["pid"] for w in client.get("/v1/pool").json()["workers"]) == pids  # no worker died


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.binary(max_size=1024),
    content_type=st.one_of(
        st.sampled_from(["multipart/form-data", "multipart/form-data; boundary=", "application/json"]),
        st.text(max_size=60).map(lambda t: "multipart/form-data; boundary=" + t),
    ),
)
def test_malformed_bodies_and_headers_answer_4xx(client, raw, content_type):
    try:
        r = client.post("/v1/audio/transcriptions", content=raw, headers={"content-type": content_type})
    except UnicodeEncodeError:  # httpx refuses to send such a header at all
        return
    assert 400 <= r.status_code < 500, r.text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    language=st.one_of(st.sampled_from(list(WHISPER_LANGUAGES[:5]) + ["xx", "english", "EN", ""]), text),
    temperature=st.one_of(
        st.sampled_from(["", "0", "0.5", "1", "nan", "-nan", "inf", "-inf", "-0.1", "1.01", "1e400"]), text
    ),
)
def test_language_and_temperature_are_served_exactly_when_valid(client, language, temperature):
    """The issue's probes: language=xx was a 500, temperature=nan a silent 200."""
    r = client.post(
        "/v1/audio/transcriptions",
        files={"file": ("a.wav", WAV)},
        data={"language": language, "temperature": temperature},
    )
    code = language.strip().lower()
    language_ok = code == "" or code in WHISPER_LANGUAGES
    try:
        value = float(temperature)
        temperature_ok = math.isfinite(value) and 0 <= value <= 1
    except ValueError:
        temperature_ok = temperature == ""
    if language_ok and temperature_ok:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] in ({"language"} if temperature_ok else {"temperature", "language"})
