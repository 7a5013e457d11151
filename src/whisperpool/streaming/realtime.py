"""Session events as OpenAI Realtime server events: the one mapping.

The server's ``WS /v1/realtime`` (:mod:`whisperpool.server.realtime`) sends what this
module builds, and the local player (:func:`whisperpool.streaming.client.play_local`)
yields the same dicts, so a consumer such as ``whisperpool stream`` reads one shape::

    SpeechStarted  -> input_audio_buffer.speech_started
    SpeechStopped  -> input_audio_buffer.speech_stopped, input_audio_buffer.committed
    Partial        -> conversation.item.input_audio_transcription.delta (committed words only)
    Final          -> ...delta (the rest), ...completed (with start_s / end_s, ours)
    StreamError    -> conversation.item.input_audio_transcription.failed

Deltas only ever append. With ``tentative=True`` each :class:`Partial` is also given as
whisperpool's own ``partial`` event (``text`` with its tentative tail, ``stable``), which
the server never sends.
"""

from __future__ import annotations

from typing import Any

from .session import Final, Partial, SpeechStarted, SpeechStopped, StreamError, StreamEvent, appended

SPEECH_STARTED = "input_audio_buffer.speech_started"
SPEECH_STOPPED = "input_audio_buffer.speech_stopped"
COMMITTED = "input_audio_buffer.committed"
DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"
FAILED = "conversation.item.input_audio_transcription.failed"
PARTIAL = "partial"  # whisperpool's, local only


class RealtimeEvents:
    """Translates one connection's session events; keeps what each item has sent so far."""

    def __init__(self, *, tentative: bool = False) -> None:
        self.tentative = tentative
        self.previous_item: str | None = None
        self._sent: dict[str, str] = {}  # item id -> text sent as deltas

    def committed(self, item_id: str) -> dict[str, Any]:
        """The ``committed`` event of ``item_id`` (after a VAD stop or a client commit)."""
        event = {"type": COMMITTED, "previous_item_id": self.previous_item, "item_id": item_id}
        self.previous_item = item_id
        return event

    def translate(self, event: StreamEvent) -> list[dict[str, Any]]:
        if isinstance(event, SpeechStarted):
            return [{"type": SPEECH_STARTED, "audio_start_ms": round(event.start_s * 1000), "item_id": event.item_id}]
        if isinstance(event, SpeechStopped):
            stopped = {"type": SPEECH_STOPPED, "audio_end_ms": round(event.end_s * 1000), "item_id": event.item_id}
            return [stopped, self.committed(event.item_id)]
        if isinstance(event, Partial):
            out = []
            if self.tentative:
                out.append({"type": PARTIAL, "item_id": event.item_id, "text": event.text, "stable": event.stable})
            return out + self._delta(event.item_id, event.stable)
        if isinstance(event, Final):
            completed = {
                "type": COMPLETED,
                "item_id": event.item_id,
                "content_index": 0,
                "transcript": event.text,
                "start_s": event.start_s,
                "end_s": event.end_s,
            }
            out = [*self._delta(event.item_id, event.text), completed]
            self._sent.pop(event.item_id, None)
            return out
        if isinstance(event, StreamError):
            self._sent.pop(event.item_id, None)
            error = {"type": "transcription_error", "code": event.error.code, "message": event.error.message}
            return [{"type": FAILED, "item_id": event.item_id, "content_index": 0, "error": error}]
        raise TypeError(f"not a session event: {event!r}")

    def _delta(self, item_id: str, text: str) -> list[dict[str, Any]]:
        delta = appended(self._sent.get(item_id, ""), text)
        if not delta:
            return []
        self._sent[item_id] = text
        return [{"type": DELTA, "item_id": item_id, "content_index": 0, "delta": delta}]


__all__ = ["COMMITTED", "COMPLETED", "DELTA", "FAILED", "PARTIAL", "SPEECH_STARTED", "SPEECH_STOPPED", "RealtimeEvents"]
