"""A live transcription session on the warm pool: PCM chunks in, speech events out.

::

    async with engine.stream(language="en") as session:
        session.feed(chunk, 24_000)             # as audio arrives, any rate
        async for event in session:             # SpeechStarted, Partial, Final, ...
            ...

How it works. Silero VAD (:mod:`.vad`) cuts the stream into utterances. While one is
spoken, the audio since its start (the *buffer*) is transcribed again every
``update_interval_s`` of new audio, on the short-audio window, with word timestamps.
The commit policy is LocalAgreement-2 (Machacek et al., "Turning Whisper into Real-Time
Transcription System", 2023): a word is committed once two hypotheses in a row agree on
it; commits never change. Each update gives a :class:`Partial` (committed text plus the
unstable tail). The buffer is trimmed at the end of committed words once it is longer
than ``max_buffer_s``, and the committed text before the buffer becomes the prompt. At
the utterance's end (the VAD's stop, or the client's commit) the buffer is transcribed
one last time, with beam search (``final_beam_size``), and that text, after the words
that left the buffer, is the :class:`Final`, with its start and end times.

Speculative finals. The VAD ends an utterance after ``min_silence_s`` (0.4 s) of silence;
waiting for that, then decoding (~0.4 s), would put both delays in the final's latency.
So once ``final_tail_s`` (0.2 s) of silence follows the last speech frame, the final is
sent at once, with the buffer up to that frame plus the tail. A final decoded after the
VAD's stop takes exactly those samples too (the stop carries its last speech frame:
:attr:`.vad.VadEvent.speech_end_s`), so when the stop comes with the same speech end, the
speculative result *is* the final, and its decoding overlapped the VAD's wait: no
second decode. The last speech frame is the speaker's: under background voices, the
last one loud enough to be theirs (``vad_foreground_db``; see :mod:`.vad`), so the final
does not wait for the voices behind them to stop. If speech resumes, it is stale and
dropped: a final decodes without word times (their alignment pass is 8-12% of its
decoding), which the commit policy needs; the next partial goes on from there.
A commit or close ends the utterance with all its audio: a speculative final is stale
then too, and the final is decoded. ``final_tail_s=None``: no speculation, the final is
sent at the stop and takes the audio to the stop time (last speech frame + 0.3 s).

Fallbacks. A final the guard rejects for a cut or a loop (no end timestamp, repetition)
is decoded again on the short window first (the backend's retries), and on the full
window only if those fail; a low log-probability on hard audio sends it nowhere.

Scheduling. A session has one update in flight: updates asked for while one runs
coalesce into one, made with the newest audio when the running one returns. A final does
not wait for a partial of its utterance: that partial's result is left behind; nor does
a speculative final (a partial is worthless when the utterance is about to end), and no
partial is sent while one stands, nor while the VAD hears silence after speech (it waits
for speech to resume, or for the speculative final). A final never waits for a stale
speculative final.
Updates go to the pool at realtime priority, ahead of file transcriptions, and hold no
worker between updates. A failed update gives an :class:`StreamError` event; the session
goes on.

Threads. :meth:`StreamingSession.feed` only checks and resamples a chunk; the Silero VAD
runs frame by frame on a small shared thread pool, one chunk of a session at a time and
in order, so a flood of audio costs its own session time, not the event loop's. At most
``max_backlog_s`` of audio may wait for it (the servers' rate limits keep it far lower).
The commit policy is in :mod:`.agreement`, the events in :mod:`.events`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..audio import SAMPLE_RATE, ChunkResampler, from_array
from ..config import DecodeOptions
from ..errors import ConfigError, ErrorInfo, InvalidAudio, QueueFull, WhisperPoolError
from ..pool import PRIORITY_REALTIME, ProcessPool
from ..results import TranscriptionResult, Word
from .agreement import Agreement, TimedWord, appended, join
from .events import Final, Partial, SpeechStarted, SpeechStopped, StreamError, StreamEvent
from .vad import FOREGROUND_DB, ROOM_PAUSE_S, StreamingVad, VadEvent
from .vad import PAD_S as VAD_PAD_S

log = logging.getLogger(__name__)

PROMPT_CHARS = 200  # committed text given as the prompt, at most
FINAL_SHORT_WINDOW_MAX_S = 24.0  # a final (beam search) takes the short window up to this long
FINAL_TAIL_S = 0.2  # a VAD-ended final's audio ends this long after the last speech frame
FINAL_NO_REPEAT_NGRAM = 4  # a final's passes at T=0 may not repeat this many tokens: a loop would
PREROLL_S = 1.0  # audio kept before speech starts, for the VAD's padding
MAX_VAD_BACKLOG_S = 30.0  # audio waiting for the VAD, at most; the servers' rate limits keep it far lower

# The VAD runs here, off the event loop: one chunk of a session at a time, in order.
_VAD_THREADS = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="whisperpool-vad")


# -- the session --------------------------------------------------------------------------
@dataclass(eq=False)
class _Utterance:
    item_id: str
    start_s: float
    agreement: Agreement = field(default_factory=Agreement)
    buffer_start_s: float = 0.0  # the buffer: audio from here to the end (or now)
    end_s: float | None = None  # set when it ends; then only its final update is left
    final_audio: np.ndarray | None = None
    last_partial: str = ""
    pause_end_s: float | None = None  # speech end of the pause heard now (None: speaking)
    # The speculative final: sent for the speech end ``spec_end_s`` (None: none, or it went
    # stale because speech resumed or the utterance ended elsewhere); its words once back.
    spec_end_s: float | None = None
    spec_words: list[TimedWord] | None = None


class StreamingSession:
    """See the module docstring. Create with :meth:`TranscriptionEngine.stream`."""

    _ids = itertools.count(1)

    def __init__(
        self,
        pool: ProcessPool,
        options: DecodeOptions,
        *,
        vad: bool = True,
        update_interval_s: float = 0.5,
        max_buffer_s: float = 15.0,
        vad_threshold: float = 0.5,
        min_silence_s: float = 0.4,
        final_beam_size: int = 5,
        max_backlog_s: float = MAX_VAD_BACKLOG_S,
        final_tail_s: float | None = FINAL_TAIL_S,
        vad_foreground_db: float | None = FOREGROUND_DB,
        vad_room_pause_s: float | None = ROOM_PAUSE_S,
    ) -> None:
        if final_tail_s is not None and not 0.0 <= final_tail_s <= VAD_PAD_S:
            raise ConfigError(
                f"final_tail_s must be None or 0-{VAD_PAD_S:g} s (the VAD's padding), got {final_tail_s!r}"
            )
        self.pool = pool
        self.final_tail_s = final_tail_s if vad else None
        self.final_beam_size = final_beam_size
        self.options = options.replace(word_timestamps=True, window="auto")
        self.update_interval_s = update_interval_s
        self.max_buffer_s = max_buffer_s
        self.vad = (
            StreamingVad(
                threshold=vad_threshold,
                min_silence_s=min_silence_s,
                foreground_db=vad_foreground_db,
                room_pause_s=vad_room_pause_s,
            )
            if vad
            else None
        )
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        self._audio = np.zeros(0, dtype=np.float32)  # recent audio: from _audio_start_s to now
        self._audio_start_s = 0.0
        self._current: _Utterance | None = None
        self._ending: deque[_Utterance] = deque()  # ended, waiting for their final update
        self._inflight: asyncio.Future[TranscriptionResult] | None = None
        self._inflight_kind: str = "partial"  # "partial", "speculative" or "final"
        self._inflight_utt: _Utterance | None = None
        self._update_wanted = False
        self._last_update_s = 0.0  # stream time the last update of the current utterance covered
        self._resampler: ChunkResampler | None = None
        self._items = 0
        self._closing = False  # feed() refuses from now on
        self._input_done = False  # closing, and the last utterance ended: finish when idle
        self._closed = asyncio.Event()
        self.max_backlog_s = max_backlog_s
        self._backlog: deque[np.ndarray] = deque()  # 16 kHz chunks waiting for the VAD, in order
        self._backlog_s = 0.0  # their seconds, the one being analysed included
        self._vad_task: asyncio.Task[None] | None = None
        self._vad_idle = asyncio.Event()
        self._vad_idle.set()
        self._epoch = 0  # clear() bumps it: a chunk analysed across a clear is dropped
        self.id = f"stream-{next(self._ids)}"

    # -- input -------------------------------------------------------------------------
    @property
    def time_s(self) -> float:
        """Seconds of audio fed so far."""
        return self._audio_start_s + self._audio.size / SAMPLE_RATE

    @property
    def buffered_s(self) -> float:
        """Seconds of audio held for transcription: the current utterance's buffer, the
        ended utterances waiting for their final, and audio waiting for the VAD. A
        server caps it (see :class:`~whisperpool.server.settings.StreamLimits`)."""
        held = self.time_s - self._current.buffer_start_s if self._current is not None else 0.0
        held += sum(u.final_audio.size for u in self._ending if u.final_audio is not None) / SAMPLE_RATE
        return held + self._backlog_s

    def feed(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
        """Add a chunk of mono PCM (float in [-1, 1], or int16) at any sample rate.

        With the VAD on, the chunk is analysed on a VAD thread, off the event loop, and
        its events follow (chunks keep their order; :meth:`flush` waits for them).
        Raises :class:`~whisperpool.errors.InvalidAudio` for a chunk that is not audio,
        and :class:`~whisperpool.errors.QueueFull` when more than ``max_backlog_s`` of
        audio waits for the VAD; either way the chunk is dropped and the session goes on.
        """
        if self._closing:
            raise WhisperPoolError("the stream is closed")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8_000 <= sample_rate <= 192_000:
            raise InvalidAudio(f"stream chunk: sample rate must be 8000-192000 Hz, got {sample_rate!r}")
        samples = np.asarray(samples)
        if samples.size == 0:
            return
        chunk = from_array(samples, SAMPLE_RATE, name="stream chunk")  # checked and scaled; not resampled yet
        if self._resampler is None or self._resampler.rate != sample_rate:
            self._resampler = ChunkResampler(sample_rate)
        chunk = self._resampler(chunk)
        if chunk.size == 0:
            return
        if self.vad is None:
            self._take(chunk, [])
            return
        seconds = chunk.size / SAMPLE_RATE
        if self._backlog_s + seconds > self.max_backlog_s:
            raise QueueFull(
                f"stream: {self._backlog_s:.1f} s of audio already wait for the VAD (at most "
                f"{self.max_backlog_s:g} s); this chunk was dropped"
            )
        self._backlog.append(chunk)
        self._backlog_s += seconds
        if self._vad_task is None:
            self._vad_idle.clear()
            self._vad_task = self._loop.create_task(self._run_vad(), name=f"{self.id}-vad")

    async def _run_vad(self) -> None:
        """Analyse the backlog on a VAD thread, one chunk at a time, and take each result."""
        assert self.vad is not None
        try:
            while self._backlog:
                chunk, epoch = self._backlog.popleft(), self._epoch
                try:
                    events = await self._loop.run_in_executor(_VAD_THREADS, self.vad.feed, chunk)
                except Exception as exc:  # the VAD failed on this chunk: say so, go on
                    log.warning("%s: VAD failed: %s", self.id, exc)
                    self._emit(StreamError(None, ErrorInfo.from_exception(exc)))
                    events = []
                finally:
                    self._backlog_s = max(0.0, self._backlog_s - chunk.size / SAMPLE_RATE)
                if epoch != self._epoch:  # cleared meanwhile: the clock moves on, the audio is dropped
                    self._audio_start_s += chunk.size / SAMPLE_RATE
                    continue
                self._take(chunk, events)
        finally:
            self._vad_task = None
            self._vad_idle.set()

    def _take(self, chunk: np.ndarray, events: list[VadEvent]) -> None:
        """Add an analysed chunk and its VAD events (in the event loop)."""
        now = self.time_s
        self._audio = np.concatenate([self._audio, chunk])
        if self.vad is None:
            if self._current is None:
                self._start(now)
        else:
            for event in events:
                if event.speech and self._current is None:
                    self._start(event.time_s)
                    self._emit(SpeechStarted(self._current.item_id, event.time_s))
                elif not event.speech and self._current is not None:
                    self._emit(SpeechStopped(self._current.item_id, event.time_s))
                    self._end(event.time_s, event.speech_end_s)
            self._watch_pause()
        if (
            self._current is not None
            and self._current.pause_end_s is None  # in a pause the speculative final replaces partials
            and self.time_s - self._last_update_s >= self.update_interval_s
        ):
            self._update_wanted = True
        self._trim_audio()
        self._schedule()

    def _watch_pause(self) -> None:
        """After a chunk: note a pause long enough to speculate on, or speech resuming."""
        utt, vad = self._current, self.vad
        if utt is None or vad is None or self.final_tail_s is None:
            return
        speech_end = vad.last_speech_end_s
        paused = vad.in_speech and vad.pause_s >= self.final_tail_s
        utt.pause_end_s = speech_end if paused else None
        if utt.spec_end_s is not None and utt.spec_end_s != speech_end:
            # Speech resumed after the speculative final: it is not this utterance's final.
            # Nor a partial: a final has no word times for the commit policy.
            utt.spec_end_s = utt.spec_words = None

    async def flush(self) -> None:
        """Wait until every chunk fed so far has been through the VAD (at once without it)."""
        await self._vad_idle.wait()

    def commit(self) -> str | None:
        """End the current utterance now (for clients that decide turns themselves).

        Returns its item id, or None when nothing was said since the last commit. With
        the VAD on, ``await flush()`` first so that the chunks still analysed count.
        """
        if self._current is None:
            return None
        item = self._current.item_id
        self._end(self.time_s)
        self._schedule()
        return item

    def clear(self) -> None:
        """Drop the audio of the current utterance, uncommitted, and what waits for the VAD."""
        self._epoch += 1
        self._backlog_s -= sum(c.size for c in self._backlog) / SAMPLE_RATE
        self._backlog.clear()
        if self._current is not None:
            self._current.spec_end_s = None  # a speculative final of dropped audio is stale
        self._current = None
        self._update_wanted = False
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start_s = self.time_s

    async def close(self) -> None:
        """End the stream: the current utterance gets its final, then iteration ends."""
        if not self._closing:
            self._closing = True
            await self.flush()  # what was fed is heard before the end
            if self._current is not None:
                self._end(self.time_s)
            self._input_done = True
            self._schedule()
        await self._closed.wait()

    # -- output ------------------------------------------------------------------------
    def __aiter__(self) -> StreamingSession:
        return self

    async def __anext__(self) -> StreamEvent:
        event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)  # later readers end too
            raise StopAsyncIteration
        return event

    async def __aenter__(self) -> StreamingSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _emit(self, event: StreamEvent | None) -> None:
        self._events.put_nowait(event)

    # -- utterances --------------------------------------------------------------------
    def _start(self, start_s: float) -> None:
        start_s = max(start_s, self._audio_start_s)
        self._items += 1
        self._current = _Utterance(f"{self.id}-item-{self._items}", start_s, buffer_start_s=start_s)
        self._last_update_s = start_s

    def _end(self, end_s: float, speech_end_s: float | None = None) -> None:
        """End the current utterance at ``end_s``. Ended by the VAD (``speech_end_s``: its
        last speech frame) and with a final tail, the final's audio ends at the speech end
        plus the tail, whenever the stop was heard: the same samples a speculative final
        was sent with, which then is the final. Otherwise (commit, close) it ends now."""
        utt = self._current
        assert utt is not None
        utt.end_s = min(end_s, self.time_s)
        audio_end = utt.end_s
        if speech_end_s is not None and self.final_tail_s is not None:
            audio_end = min(speech_end_s + self.final_tail_s, utt.end_s)
        if speech_end_s is None or utt.spec_end_s != speech_end_s:
            utt.spec_end_s = utt.spec_words = None  # sent for other audio: not the final
        utt.final_audio = self._slice(utt.buffer_start_s, audio_end)
        self._current = None
        self._update_wanted = False
        self._ending.append(utt)

    def _slice(self, start_s: float, end_s: float | None = None) -> np.ndarray:
        first = max(0, round((start_s - self._audio_start_s) * SAMPLE_RATE))
        last = None if end_s is None else max(first, round((end_s - self._audio_start_s) * SAMPLE_RATE))
        return self._audio[first:last].copy()

    def _trim_audio(self) -> None:
        """Keep the current buffer, or a little pre-roll when nobody speaks."""
        keep_from = self._current.buffer_start_s if self._current else self.time_s - PREROLL_S
        drop = round((keep_from - self._audio_start_s) * SAMPLE_RATE)
        if drop > 0:
            self._audio = self._audio[drop:]
            self._audio_start_s += drop / SAMPLE_RATE

    # -- updates -----------------------------------------------------------------------
    def _prompt(self, utt: _Utterance) -> str | None:
        # Only text whose audio left the buffer: Whisper tends to repeat a prompt that
        # the audio does not carry on from (a previous utterance, on a short buffer).
        before = [w for w in utt.agreement.committed if w.end <= utt.buffer_start_s + 0.05]
        return join(before)[-PROMPT_CHARS:] or None

    def _final_options(self, utt: _Utterance) -> DecodeOptions:
        """A final's options (a speculative final's too: same audio, same options, same text)."""
        # The final is read: beam search costs ~0.1 s here and halved the bench's WER; with
        # it the short window keeps its accuracy on utterances over the offline limit.
        # A low log-probability alone sends no final to the full window: that audio is hard,
        # not cut short, and a final waited 4-19 s for the same text (DecodeOptions). A
        # partial it rejects is dropped as before: low confidence there is often a word cut
        # at the buffer's end, and committing it would put a wrong word in the final.
        # A first pass that loops waits for a retry, and the budget holds one pass, not
        # two: without repeated 4-grams (what the ladder's step forbids, and short enough
        # to stop a phrase before the guard sees it three times) the stress set of tune
        # texts retried 7 finals of 610, not 31 (docs/fast-path.md).
        # A final's text needs no word times: their alignment pass cost 8-12% of a final's
        # decoding on tune finals (0.03-0.09 s), for the same text.
        return self.options.replace(
            initial_prompt=self._prompt(utt),
            word_timestamps=False,
            beam_size=max(self.options.beam_size, self.final_beam_size),
            no_repeat_ngram_size=self.options.no_repeat_ngram_size or FINAL_NO_REPEAT_NGRAM,
            short_window_max_s=max(self.options.short_window_max_s, FINAL_SHORT_WINDOW_MAX_S),
            low_confidence_fallback=False,
        )

    def _pausing(self) -> bool:
        """Whether the VAD hears silence after speech while speculative finals are on. A
        partial sent now is most likely replaced within ``final_tail_s`` by the
        speculative final, whose worker it would only slow down (two workers on two
        cores share the machine with the VAD), so it waits: for speech to resume (it is
        sent then, with that audio too) or to give way to the speculative final."""
        vad = self.vad
        return self.final_tail_s is not None and vad is not None and vad.pause_s > 0.0

    def _spec_due(self) -> bool:
        utt = self._current
        return utt is not None and utt.pause_end_s is not None and utt.spec_end_s != utt.pause_end_s

    def _keeps_inflight(self) -> bool:
        """Whether the update in flight keeps its place, or is left behind for a final
        (or a speculative final) that waits: a final always keeps it; a speculative one
        while it may still be its utterance's final, and never once stale (its result
        would be dropped: the next partial need not wait for it); a partial only while no
        final waits."""
        kind, utt = self._inflight_kind, self._inflight_utt
        if kind == "speculative":
            return utt is not None and utt.spec_end_s is not None
        return kind == "final" or (not self._ending and not self._spec_due())

    def _schedule(self) -> None:
        """Send the next update if none is in flight: finals first, then a speculative
        final, then the live partial."""
        if self._inflight is not None:
            if self._keeps_inflight():
                return
            # That result would be dropped or is worth less than the final that waits: the
            # final does not wait for it (another worker takes it, where there is one).
            stale, self._inflight = self._inflight, None
            stale.cancel()
        spec_end = None
        if self._ending:
            utt, kind = self._ending[0], "final"
            if utt.spec_end_s is not None:  # the speculative final is this one's final
                if utt.spec_words is None:  # still running: impossible, it keeps its place
                    return
                self._settle(utt, True, utt.spec_words)
                self._schedule()
                return
            audio = utt.final_audio
        elif self._spec_due():
            utt, kind = self._current, "speculative"
            assert utt is not None and self.final_tail_s is not None and utt.pause_end_s is not None
            spec_end = utt.spec_end_s = utt.pause_end_s
            utt.spec_words = None
            audio = self._slice(utt.buffer_start_s, spec_end + self.final_tail_s)
            self._update_wanted = False
            self._last_update_s = self.time_s
        elif self._update_wanted and self._current is not None and self._current.spec_end_s is None:
            if self._pausing():  # it waits for speech to resume, or gives way to the speculative final
                return
            utt, kind = self._current, "partial"
            audio = self._slice(utt.buffer_start_s)
            self._update_wanted = False
            self._last_update_s = self.time_s
        else:
            if self._input_done:
                self._finish()
            return
        assert audio is not None and utt is not None
        if audio.size < SAMPLE_RATE // 10:  # under 0.1 s: nothing to transcribe
            if kind == "speculative":
                utt.spec_words = []
            else:
                self._settle(utt, kind == "final", [])
            self._schedule()
            return
        if kind == "partial":  # a partial the next update replaces: no fallback, no temperature ladder,
            # and no speech gate (the session's VAD already heard speech; the final is gated)
            options = self.options.replace(
                initial_prompt=self._prompt(utt),
                window="short",
                temperature=self.options.temperature[:1],
                speech_gate=False,
            )
        else:
            options = self._final_options(utt)
        sent = time.perf_counter()
        try:
            future = self.pool.submit(audio, options, priority=PRIORITY_REALTIME)
        except WhisperPoolError as exc:
            if kind == "speculative":  # the final proper tries again, and reports
                utt.spec_end_s = None
                return
            self._emit(StreamError(utt.item_id, ErrorInfo.from_exception(exc)))
            if kind == "final":
                self._settle(utt, True, [])
            return
        self._inflight, self._inflight_kind, self._inflight_utt = (
            asyncio.wrap_future(future, loop=self._loop),
            kind,
            utt,
        )
        offset = utt.buffer_start_s
        self._inflight.add_done_callback(lambda f: self._on_update(f, utt, kind, offset, audio.size, sent, spec_end))

    def _on_update(
        self,
        fut: asyncio.Future,
        utt: _Utterance,
        kind: str,
        offset: float,
        size: int,
        sent: float,
        spec_end: float | None,
    ) -> None:
        if fut is not self._inflight:  # an update left behind for a final
            return
        self._inflight, self._inflight_utt = None, None
        if log.isEnabledFor(logging.DEBUG) and not fut.cancelled() and fut.exception() is None:
            r = fut.result()
            log.debug(
                "%s: %s update of %.2f s took %.2f s (%s window%s): %r",
                utt.item_id,
                kind,
                size / SAMPLE_RATE,
                time.perf_counter() - sent,
                r.window,
                f", fallback {r.fallback}" if r.fallback else "",
                r.text,
            )
        words: list[TimedWord] = []
        if fut.cancelled():
            error: BaseException | None = WhisperPoolError("the update was cancelled")
        else:
            error = fut.exception()
        if kind == "speculative":
            self._took_speculative(utt, spec_end, offset, error, fut)
            self._schedule()
            return
        if error is not None:
            log.warning("%s: update failed: %s", self.id, error)
            self._emit(StreamError(utt.item_id, ErrorInfo.from_exception(error)))
        else:
            result = fut.result()
            if result.fallback is not None and result.window == "short" and kind == "partial":
                self._schedule()  # the guard rejected this partial: the next update replaces it
                return
            words = self._words(result, offset)
        if kind == "final" or error is None:
            self._settle(utt, kind == "final", words)
        self._schedule()

    @staticmethod
    def _words(result: TranscriptionResult, offset: float) -> list[TimedWord]:
        """The result's words in stream time; a segment without word times (a final's) is
        one "word" with the segment's times: a final only joins them."""
        return [
            TimedWord(offset + w.start, offset + w.end, w.word)
            for seg in result.segments
            for w in (seg.words if seg.words is not None else (Word(seg.start, seg.end, seg.text, 1.0),))
        ]

    def _took_speculative(
        self,
        utt: _Utterance,
        spec_end: float | None,
        offset: float,
        error: BaseException | None,
        fut: asyncio.Future,
    ) -> None:
        """A speculative final came back: the final if its utterance ended (or ends) at the
        speech end it was sent for; dropped if speech resumed; on failure, forgotten (the
        final proper is decoded and reports)."""
        valid = spec_end is not None and utt.spec_end_s == spec_end
        if error is not None:
            log.info("%s: speculative final failed: %s", utt.item_id, error)
            if valid:
                utt.spec_end_s = None
            return
        if not valid:
            return  # speech resumed: not the final, nor a partial (no word times)
        words = self._words(fut.result(), offset)
        if utt.end_s is not None:
            assert self._ending and self._ending[0] is utt  # it was current when sent: none ahead
            self._settle(utt, True, words)  # ended at that speech end: the final, no second decode
        else:
            utt.spec_words = words  # the final, if the VAD ends it there

    def _settle(self, utt: _Utterance, final: bool, words: list[TimedWord]) -> None:
        if final:
            utt.agreement.finish(words, utt.buffer_start_s)
            self._ending.popleft()
            text = join(utt.agreement.committed)
            end = utt.end_s if utt.end_s is not None else utt.start_s
            self._emit(Final(utt.item_id, text, utt.start_s, end))
            return
        if utt is not self._current:  # it ended while this update ran; its final follows
            return
        utt.agreement.update(words)
        stable = join(utt.agreement.committed)
        text = join(utt.agreement.committed + utt.agreement.tentative)
        if text != utt.last_partial:
            utt.last_partial = text
            self._emit(Partial(utt.item_id, text, stable))
        self._trim_buffer(utt)

    def _trim_buffer(self, utt: _Utterance) -> None:
        """Start the buffer after the committed words once it is longer than the limit."""
        if self.time_s - utt.buffer_start_s <= self.max_buffer_s:
            return
        committed = utt.agreement.committed
        if committed and committed[-1].end > utt.buffer_start_s:
            utt.buffer_start_s = committed[-1].end
        elif self.time_s - utt.buffer_start_s > 2 * self.max_buffer_s:
            # Nothing agreed for a long time: commit the last hypothesis rather than grow.
            utt.agreement.committed += utt.agreement.tentative
            utt.agreement.tentative = []
            utt.buffer_start_s = utt.agreement.committed[-1].end if utt.agreement.committed else self.time_s
        self._trim_audio()

    def _finish(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._emit(None)


__all__ = [
    "Agreement",
    "Final",
    "Partial",
    "SpeechStarted",
    "SpeechStopped",
    "StreamError",
    "StreamEvent",
    "StreamingSession",
    "TimedWord",
    "appended",
]
