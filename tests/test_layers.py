"""The layering contract (faces -> engine -> streaming -> pool -> worker; backends only in
the worker process) and what it protects: no faster-whisper in the parent, one registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_the_parent_process_never_imports_faster_whisper():
    """The faces, the engine and a streaming VAD pass run without faster-whisper or CTranslate2."""
    code = """
import sys
import numpy as np
import whisperpool, whisperpool.cli, whisperpool.remote
import whisperpool.server.app, whisperpool.server.realtime, whisperpool.server.wyoming, whisperpool.server.metrics
from whisperpool.streaming.vad import StreamingVad
StreamingVad().feed(np.zeros(16_000, np.float32))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("faster_whisper", "ctranslate2")))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_language_list_is_whispers():
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    from whisperpool.languages import WHISPER_LANGUAGES

    assert WHISPER_LANGUAGES == tuple(_LANGUAGE_CODES)


def test_the_vad_runs_faster_whispers_silero_model_unchanged():
    import numpy as np
    from faster_whisper.vad import get_vad_model

    from conftest import clip
    from whisperpool.audio import load_audio
    from whisperpool.streaming.vad import FRAME, StreamingVad

    audio = load_audio(clip("fox"))
    audio = audio[: audio.size // FRAME * FRAME]
    theirs = get_vad_model()(audio).reshape(-1)
    vad = StreamingVad()
    ours = np.array([vad.probability(audio[i : i + FRAME]) for i in range(0, audio.size, FRAME)])
    assert ours.max() > 0.9  # it hears the speech
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_one_error_registry_by_name_and_by_code():
    from whisperpool import errors

    codes = [cls.code for cls in errors.ERRORS]
    assert len(codes) == len(set(codes)), "two error classes share a code"

    def subclasses(cls):
        return {cls} | {c for sub in cls.__subclasses__() for c in subclasses(sub)}

    defined = {c for c in subclasses(errors.WhisperPoolError) if c.__module__ == errors.__name__}
    assert defined == set(errors.ERRORS), "an error class is missing from the registry"
    assert errors.error_class(code="model_not_found") is errors.UnknownModel
    assert errors.error_class(name="QueueFull") is errors.QueueFull
    assert errors.error_class(code="no_such_code") is None
    # Across the worker pipe: the class survives, a foreign one becomes TranscriptionError.
    rebuilt = errors.ErrorInfo.from_exception(errors.InvalidParameter("bad", "language")).to_exception()
    assert type(rebuilt) is errors.InvalidParameter and str(rebuilt) == "bad"
    foreign = errors.ErrorInfo.from_exception(KeyError("k"))
    assert foreign.code == "transcription_error" and type(foreign.to_exception()) is errors.TranscriptionError


def test_remote_errors_keep_their_class_by_code():
    import httpx

    from whisperpool.errors import UnknownModel, WhisperPoolError
    from whisperpool.remote import RemoteEngine

    body = {
        "error": {"message": "model 'x' is not served here", "type": "invalid_request_error", "code": "model_not_found"}
    }
    exc = RemoteEngine._error(httpx.Response(404, json=body), "a.wav")
    assert type(exc) is UnknownModel and "HTTP 404: model 'x' is not served here" in str(exc)
    other = RemoteEngine._error(httpx.Response(502, text="bad gateway"), "a.wav")
    assert type(other) is WhisperPoolError and "bad gateway" in str(other)


@pytest.mark.parametrize(
    "url,http,ws",
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000", "ws://127.0.0.1:8000/v1/realtime?intent=transcription"),
        ("https://h/", "https://h", "wss://h/v1/realtime?intent=transcription"),
        ("ws://h:1", "http://h:1", "ws://h:1/v1/realtime?intent=transcription"),
        ("wss://h/v1/realtime?intent=transcription", "https://h/v1/realtime?intent=transcription",
         "wss://h/v1/realtime?intent=transcription"),
    ],
)  # fmt: skip
def test_server_urls_are_normalised_once(url, http, ws):
    from whisperpool.urls import http_url, ws_url

    assert (http_url(url), ws_url(url)) == (http, ws)


def test_every_parent_module_is_held_to_the_backend_contract():
    """A new module cannot slip past the contracts: each is the worker process's entry, a
    backend, bench, or listed as a parent-side source in the backend contract."""
    import ast
    import pkgutil

    import tomllib

    import whisperpool

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (backend_rule,) = [c for c in contracts if c["id"] == "backends-in-the-worker"]
    listed = backend_rule["source_modules"]
    exempt = ("whisperpool.worker.main", "whisperpool.backends", "whisperpool.bench")
    for module in pkgutil.walk_packages(whisperpool.__path__, "whisperpool."):
        name = module.name
        if name.startswith(exempt):
            continue
        if name == "whisperpool.worker":  # the package holds worker.main; its __init__ re-exports listed modules
            init = ast.parse((Path(whisperpool.__file__).parent / "worker" / "__init__.py").read_text())
            imported = {
                f"whisperpool.worker.{node.module}" for node in ast.walk(init) if isinstance(node, ast.ImportFrom)
            }
            assert imported and imported <= set(listed), imported
            continue
        assert any(name == m or name.startswith(m + ".") for m in listed), f"{name} is in no contract"
