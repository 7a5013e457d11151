"""The live-stream probes of ``whisperpool load --abuse``: Realtime and Wyoming floods,
malformed events, session caps, an oversized Wyoming frame."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np

from ..streaming.realtime import COMPLETED, FAILED

REALTIME = "/v1/realtime?intent=transcription"
# the malformed Realtime events of issue 13: each must get an error event
BAD_EVENTS = (
    json.dumps({"type": "transcription_session.update", "session": {"turn_detection": {"threshold": "abc"}}}),
    json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": "x"}}),
    json.dumps({"type": "transcription_session.update", "session": {"input_audio_transcription": "x"}}),
    '{"type": "transcription_session.update", "session": {"turn_detection": {"silence_duration_ms": 1e309}}}',
    "[" * 100_000 + "]" * 100_000,
)


class StreamProbes:
    """Mixin of the abuse run: each probe returns the answers it got, one string each."""

    async def _realtime(self):
        """A Realtime session, its ``created`` event read; GA ``session.update`` with
        ``turn_detection: null`` and pcm16 at 24 kHz (as ``streaming/client.py`` speaks)."""
        import websockets

        ws = await asyncio.wait_for(websockets.connect(self.ws_url, max_size=2**24), 10)
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), self.wait_s))
        except BaseException:
            await ws.close()
            raise
        return ws, first

    async def _recv(self, ws, wait_s: float | None = None) -> dict[str, Any] | None:
        """The next event, or None if the session closed or nothing came in time."""
        import websockets

        try:
            return json.loads(await asyncio.wait_for(ws.recv(), wait_s or self.wait_s))
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            return None

    async def _alive(self, ws) -> str:
        """``"session alive"`` if the session still answers (``input_audio_buffer.clear``)."""
        try:
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        except Exception:
            return "closed"
        for _ in range(1_000):  # bounded: skip what the session still had to say
            event = await self._recv(ws)
            if event is None:
                return "closed"
            if event.get("type") == "input_audio_buffer.cleared":
                return "session alive"
        return "no answer (held)"

    async def realtime_flood(self) -> list[str]:
        """Minutes of audio (probe_count x 5 appends of 15 s, the most one append holds) as
        fast as the socket takes them with ``turn_detection: null``, then a commit."""
        ws, _ = await self._realtime()
        answers: list[str] = []
        try:
            update = {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24_000}}}}
            update["audio"]["input"]["turn_detection"] = None
            await ws.send(json.dumps({"type": "session.update", "session": update}))
            event = await self._recv(ws)
            if event is None or event.get("type") != "session.updated":
                return [f"update answered {event and event.get('type')}"]
            chunk = base64.b64encode(np.zeros(15 * 24_000, "<i2").tobytes()).decode()
            append = json.dumps({"type": "input_audio_buffer.append", "audio": chunk})

            async def read() -> None:
                for _ in range(10_000):  # bounded
                    event = await self._recv(ws, self.wait_s + 120)
                    if event is None:
                        answers.append("closed")
                        return
                    kind = event.get("type")
                    if kind == "error":
                        answers.append(f"error {event['error'].get('code')}")
                    elif kind == COMPLETED:
                        audio_s = event["end_s"] - event["start_s"]
                        bounded = audio_s <= self.options.stream_max_buffered_s + 0.5
                        answers.append("completed" + ("" if bounded else f" UNBOUNDED ({audio_s:.0f} s)"))
                        return
                    elif kind == FAILED:
                        answers.append(f"failed {event['error'].get('code')}")
                        return

            reader = asyncio.ensure_future(read())
            for _ in range(5 * self.options.probe_count):
                await ws.send(append)
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await reader
            answers.append(await self._alive(ws))
        finally:
            await ws.close()
        return answers

    async def realtime_bad_events(self) -> list[str]:
        """The malformed events of issue 13, each answered with an ``error``; then alive."""
        ws, _ = await self._realtime()
        answers = []
        try:
            for raw in BAD_EVENTS:
                await ws.send(raw)
                event = await self._recv(ws)
                if event is None:
                    answers.append("closed")
                    break
                kind = event.get("type")
                answers.append(f"error {event['error'].get('code')}" if kind == "error" else f"answered {kind}")
            answers.append(await self._alive(ws))
        finally:
            await ws.close()
        return answers

    async def realtime_sessions(self) -> list[str]:
        """Sessions up to the cap and probe_count more, held at once: those over it are
        refused (``session_limit``)."""
        sockets, answers = [], []
        try:
            for _ in range(self.options.stream_max_sessions + self.options.probe_count):
                try:
                    ws, first = await self._realtime()
                except Exception as exc:
                    answers.append(f"refused {type(exc).__name__}")
                    continue
                sockets.append(ws)
                kind = first.get("type")
                answers.append(f"error {first['error'].get('code')}" if kind == "error" else kind.split(".")[-1])
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        await asyncio.sleep(0.2)  # let the server count them closed before the next probe
        return answers

    async def _wyoming(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.wyoming_port), 10)

    async def wyoming_flood(self) -> list[str]:
        """One utterance of probe_count x 5 audio-chunks of 16 s (0.5 MiB) at once, then
        audio-stop: the chunks over the rate or the buffer are refused, the transcript bounded."""
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.event import async_read_event, async_write_event

        reader, writer = await self._wyoming()
        answers: list[str] = []
        try:
            await async_write_event(AudioStart(rate=16_000, width=2, channels=1).event(), writer)

            async def read() -> None:
                for _ in range(10_000):  # bounded
                    try:
                        event = await asyncio.wait_for(async_read_event(reader), self.wait_s + 120)
                    except (asyncio.TimeoutError, OSError):
                        event = None
                    if event is None:
                        answers.append("closed")
                        return
                    if event.type == "error":
                        answers.append(f"error {event.data.get('code')}")
                    elif event.type == "transcript":
                        answers.append("transcript")
                    elif event.type == "transcript-stop":
                        return

            task = asyncio.ensure_future(read())
            pcm = np.zeros(16 * 16_000, "<i2").tobytes()
            for _ in range(5 * self.options.probe_count):
                await async_write_event(AudioChunk(rate=16_000, width=2, channels=1, audio=pcm).event(), writer)
            await async_write_event(AudioStop().event(), writer)
            await task
        finally:
            writer.close()
        return answers

    async def wyoming_huge_payload(self) -> list[str]:
        """A header declaring 300 MiB of payload, then up to 8 MiB of it: refused
        (``too_large``) without being read, and the connection closed."""
        from wyoming.event import async_read_event

        answers = []
        for _ in range(min(self.options.probe_count, 3)):
            reader, writer = await self._wyoming()
            header = {"type": "audio-chunk", "data": {"rate": 16_000, "width": 2, "channels": 1}}
            writer.write(json.dumps({**header, "payload_length": 300 << 20}).encode() + b"\n")
            try:
                event = await asyncio.wait_for(async_read_event(reader), self.wait_s)
            except (asyncio.TimeoutError, OSError):
                event = None
            answers.append(f"error {event.data.get('code')}" if event and event.type == "error" else "no error")
            closed = False
            try:
                for _ in range(8):  # the rest, 1 MiB at a time, until the server hangs up
                    writer.write(b"\0" * (1 << 20))
                    await asyncio.wait_for(writer.drain(), self.wait_s)
                closed = await asyncio.wait_for(reader.read(1), self.wait_s) == b""
            except (OSError, asyncio.TimeoutError):
                closed = True
            answers.append("closed" if closed else "held open")
            writer.close()
        return answers
