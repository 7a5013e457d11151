"""A Realtime session's configuration, and the checks of ``session.update`` events.

Every field a client sends is checked for its type and range here; a wrong one raises
:class:`ProtocolError` naming the parameter (``session.turn_detection.threshold``), which
the connection answers with an ``error`` event, keeping the session and its settings.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..engine import OPENAI_ALIAS, TranscriptionEngine
from ..errors import UnknownModel

DEFAULT_RATE = 24_000
RATES = (8_000, 16_000, 24_000, 44_100, 48_000)
MAX_PROMPT_CHARS = 4_096  # Whisper reads at most 224 tokens of it anyway
MAX_NAME_CHARS = 256  # a model name, an include entry
MAX_INCLUDE = 16


class ProtocolError(Exception):
    def __init__(self, message: str, code: str = "invalid_request", param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.param = code, param


@dataclass
class SessionConfig:
    """A session's effective configuration, as the protocol shows it."""

    rate: int = DEFAULT_RATE
    language: str | None = None
    prompt: str | None = None
    model: str = OPENAI_ALIAS
    vad: bool = True
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    include: list[str] = field(default_factory=list)

    def turn_detection(self) -> dict[str, Any] | None:
        if not self.vad:
            return None
        return {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
        }

    def beta(self, session_id: str) -> dict[str, Any]:
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "input_audio_format": "pcm16" if self.rate == DEFAULT_RATE else f"pcm16_{self.rate}",
            "input_audio_transcription": {"model": self.model, "language": self.language, "prompt": self.prompt or ""},
            "turn_detection": self.turn_detection(),
            "input_audio_noise_reduction": None,
            "include": self.include,
        }

    def ga(self, session_id: str) -> dict[str, Any]:
        return {
            "id": session_id,
            "object": "realtime.session",
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": self.rate},
                    "transcription": {"model": self.model, "language": self.language, "prompt": self.prompt or ""},
                    "turn_detection": self.turn_detection(),
                    "noise_reduction": None,
                }
            },
            "include": self.include,
        }


# -- typed fields -------------------------------------------------------------------------
def _object(value: Any, param: str) -> dict[str, Any]:
    """``value`` as an object; ``None`` (or absent) is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{param} must be an object, got {_kind(value)}", "invalid_type", param)
    return value


def _number(value: Any, param: str, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{param} must be a number, got {_kind(value)}", "invalid_type", param)
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        bound = "(" if low_open else "["
        raise ProtocolError(f"{param} must be in {bound}{low:g}, {high:g}], got {value!r}", "invalid_value", param)
    return float(value)


def _text(value: Any, param: str, limit: int = MAX_NAME_CHARS) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ProtocolError(f"{param} must be a string or null, got {_kind(value)}", "invalid_type", param)
    if value is not None and len(value) > limit:
        raise ProtocolError(f"{param} is {len(value)} characters, over the limit of {limit}", "too_large", param)
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _rate(value: Any, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in RATES:
        raise ProtocolError(
            f"{param} must be one of {', '.join(map(str, RATES))}, got {value!r}", "invalid_value", param
        )
    return value


def _beta_rate(name: Any) -> int:
    if name == "pcm16":
        return DEFAULT_RATE
    if isinstance(name, str) and name.startswith("pcm16_") and name[6:].isdigit() and len(name) < 16:
        return _rate(int(name[6:]), "session.input_audio_format")
    raise ProtocolError(
        f"session.input_audio_format must be pcm16 (or pcm16_RATE), got {name!r}",
        "invalid_value",
        "session.input_audio_format",
    )


# -- session.update ------------------------------------------------------------------------
def updated(config: SessionConfig, event: dict[str, Any], kind: str, engine: TranscriptionEngine) -> SessionConfig:
    """The configuration ``event`` (a ``session.update`` or ``transcription_session.update``)
    asks for; raises :class:`ProtocolError` on the first wrong field, changing nothing."""
    session = event.get("session")
    if not isinstance(session, dict):
        raise ProtocolError(f"{kind} needs a 'session' object", "invalid_value", "session")
    new = dataclasses.replace(config, include=list(config.include))
    if kind == "session.update":
        if session.get("type", "transcription") != "transcription":
            raise ProtocolError(
                "this server transcribes only: session.type must be 'transcription'", "invalid_value", "session.type"
            )
        audio_in = _object(_object(session.get("audio"), "session.audio").get("input"), "session.audio.input")
        fmt = _object(audio_in.get("format"), "session.audio.input.format")
        if fmt:
            if fmt.get("type", "audio/pcm") != "audio/pcm":
                raise ProtocolError(
                    "only audio/pcm input is supported", "invalid_value", "session.audio.input.format.type"
                )
            new.rate = _rate(fmt.get("rate", new.rate), "session.audio.input.format.rate")
        prefix = "session.audio.input"
        transcription = _object(audio_in.get("transcription"), f"{prefix}.transcription")
        has_turns, turns = "turn_detection" in audio_in, audio_in.get("turn_detection")
    else:
        if session.get("input_audio_format") is not None:
            new.rate = _beta_rate(session["input_audio_format"])
        prefix = "session"
        transcription = _object(session.get("input_audio_transcription"), "session.input_audio_transcription")
        has_turns, turns = "turn_detection" in session, session.get("turn_detection")
    tparam = f"{prefix}.transcription" if kind == "session.update" else "session.input_audio_transcription"
    if "language" in transcription:
        language = _text(transcription["language"], f"{tparam}.language")
        if language is not None and not (language.isalpha() and len(language) <= 8):
            raise ProtocolError(
                f"{tparam}.language must be a code such as 'en', got {language!r}",
                "invalid_value",
                f"{tparam}.language",
            )
        new.language = language.lower() if language else None
    if "prompt" in transcription:
        new.prompt = _text(transcription["prompt"], f"{tparam}.prompt", MAX_PROMPT_CHARS) or None
    model = _text(transcription.get("model"), f"{tparam}.model")
    if model:
        try:
            engine.resolve_model(model)
        except UnknownModel as exc:
            raise ProtocolError(str(exc), exc.code, f"{tparam}.model") from None
        new.model = model
    if has_turns:
        _turns(new, turns, f"{prefix}.turn_detection")
    if "include" in session:
        include = session["include"]
        if include is None:
            include = []
        if not isinstance(include, list) or not all(isinstance(x, str) and len(x) <= MAX_NAME_CHARS for x in include):
            raise ProtocolError("session.include must be an array of strings", "invalid_type", "session.include")
        if len(include) > MAX_INCLUDE:
            raise ProtocolError(f"session.include has at most {MAX_INCLUDE} entries", "too_large", "session.include")
        new.include = list(include)
    return new


def _turns(new: SessionConfig, turns: Any, param: str) -> None:
    if turns is None:
        new.vad = False
        return
    turns = _object(turns, param)
    if turns.get("type", "server_vad") != "server_vad":
        raise ProtocolError(
            f"{param}.type must be server_vad (or turn_detection null)", "invalid_value", f"{param}.type"
        )
    new.vad = True
    if "threshold" in turns:
        new.threshold = _number(turns["threshold"], f"{param}.threshold", 0.0, 1.0, low_open=True)
        if new.threshold == 1.0:
            raise ProtocolError(f"{param}.threshold must be below 1, got 1", "invalid_value", f"{param}.threshold")
    if "prefix_padding_ms" in turns:
        new.prefix_padding_ms = int(_number(turns["prefix_padding_ms"], f"{param}.prefix_padding_ms", 0, 10_000))
    if "silence_duration_ms" in turns:
        ms = _number(turns["silence_duration_ms"], f"{param}.silence_duration_ms", 0, 10_000, low_open=True)
        new.silence_duration_ms = max(1, int(ms))


__all__ = ["DEFAULT_RATE", "RATES", "ProtocolError", "SessionConfig", "updated"]
