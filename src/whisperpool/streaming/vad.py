"""Voice activity for live audio: Silero VAD (the ONNX model inside faster-whisper), frame by frame.

faster-whisper runs Silero on a whole file at once. A live stream needs the same model
run on each 32 ms frame as it arrives, carrying the model's recurrent state and the last
64 samples of context from one frame to the next; :class:`StreamingVad` does that, and
turns the speech probabilities into start and stop decisions with hysteresis: speech
starts after ``min_speech_s`` above ``threshold``, and stops after ``min_silence_s``
below ``threshold - 0.15``.

Foreground speech. Silero hears background voices (babble) as speech, which they are,
so under them an utterance's speech seems to go on until the voices stop. So a speech
frame also counts as the speaker's own only if its level is within ``foreground_db``
of the utterance's speech so far (its ``LEVEL_PERCENTILE``-th percentile); quieter
speech frames are background. The speech end a session speculates on and ends its final
at (:attr:`StreamingVad.last_speech_end_s`) is the last foreground frame's end, while
the stop still waits for Silero's silence. The gate has two bounds: it starts after
``LEVEL_MIN_FRAMES`` speech frames, and background never stretches more than
``MAX_BACKGROUND_S`` (past that, the speech is taken as the speaker's: a loud start
must not silence the rest). On the dev set's tune streams this moved the end of speech
under babble from the voices' end to the speaker's; elsewhere it may take a soft last
frame or few for background, but a final's audio, which runs a tail past the end, still
reached within 0.1 s of the speech's end (see ``docs/streaming.md``).

The room's pause. Under background voices the stop need not wait for ``min_silence_s``
of the room's silence too: once the speaker has been silent that long, a pause of the
room's of ``room_pause_s`` (``ROOM_PAUSE_S``) ends the turn, within the gate's bounds
(background after the speaker's last frame, for at most ``MAX_BACKGROUND_S``). Chosen
on the tune half's VAD traces (``scripts/sim_turn_end.py``): it ended no tune stream's
turn inside the speech where the plain stop does not, and one of nine made to grow
20 dB quieter midway (a soft stretch of 0.4 s and a pause of 0.2 s read as the room's
pause). Where an early end costs more than 0.1-0.2 s of latency, ``room_pause_s=None``.

The model file ships inside faster-whisper's package; it is found without importing
faster-whisper (which would load CTranslate2 into the parent process) and run with
``onnxruntime`` exactly as ``faster_whisper.vad.SileroVADModel`` runs it.
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import ModelError

FRAME = 512  # samples the model takes at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame prepended to each one
PAD_S = 0.3  # an utterance starts this long before its first speech frame and stops this long after its last
MODEL_FILE = "silero_vad_v6.onnx"  # faster_whisper/assets/, as faster_whisper.vad.get_vad_model() names it
FOREGROUND_DB = 6.0  # a speech frame this far below its utterance's speech level is background
LEVEL_PERCENTILE = 75  # the utterance's speech level: this percentile of its speech frames' levels
LEVEL_MIN_FRAMES = 16  # speech frames (0.5 s) before the gate applies
LEVEL_FRAMES = 940  # the last 30 s of speech frames set the level
MAX_BACKGROUND_S = 1.0  # background speech longer than this after the last foreground frame is the speaker's
ROOM_PAUSE_S = 0.2  # the room's silence that ends a turn once the speaker's has lasted min_silence_s


def model_path() -> Path:
    """Where faster-whisper's package keeps the Silero model, found without importing it."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the streaming VAD needs faster-whisper's Silero model: pip install faster-whisper")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "assets" / MODEL_FILE
        if path.is_file():
            return path
    raise ModelError(f"faster-whisper's Silero VAD model {MODEL_FILE} is not in its package's assets folder")


@functools.lru_cache(maxsize=1)
def _session():
    """One ONNX session per process (its run() is thread-safe), set up as faster-whisper's."""
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"], sess_options=opts)


@dataclass(frozen=True, slots=True)
class VadEvent:
    """Speech started (``speech=True``) or stopped, at ``time_s`` seconds into the stream.

    A stop also carries ``speech_end_s``, the end of its last speech frame (``time_s`` is
    that plus the padding): a streaming session ends its final's audio there, plus a
    fixed tail, whenever the stop was heard."""

    speech: bool
    time_s: float
    speech_end_s: float | None = None


class StreamingVad:
    def __init__(
        self,
        threshold: float = 0.5,
        min_speech_s: float = 0.1,
        min_silence_s: float = 0.4,
        pad_s: float = PAD_S,
        foreground_db: float | None = FOREGROUND_DB,
        room_pause_s: float | None = ROOM_PAUSE_S,
    ) -> None:
        self.threshold = threshold
        self.foreground_db = foreground_db  # None: every speech frame is the speaker's
        self.min_speech_frames = max(1, round(min_speech_s * SAMPLE_RATE / FRAME))
        self.min_silence_frames = max(1, round(min_silence_s * SAMPLE_RATE / FRAME))
        self.min_silence_s = min_silence_s
        # None: the stop waits for Silero's silence under background voices too
        self.room_pause_frames = (
            None
            if room_pause_s is None
            else min(self.min_silence_frames, max(1, math.ceil(room_pause_s * SAMPLE_RATE / FRAME)))
        )
        self.pad_s = pad_s
        self.in_speech = False
        self._state = np.zeros((2, 1, 1, 128), dtype=np.float32)  # h and c
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames = 0  # frames seen so far
        self._run = 0  # frames in a row on the other side of the threshold
        self._levels: collections.deque[float] = collections.deque(maxlen=LEVEL_FRAMES)  # this utterance's, dB
        self._voice_end_s = 0.0  # end of the last frame that was speech, background or not
        self._foreground_end_s = 0.0  # end of the last frame that was the speaker's speech

    def probability(self, frame: np.ndarray) -> float:
        h, c = self._state
        batch = np.concatenate([self._context, frame])[None, :]
        out, h, c = _session().run(None, {"input": batch, "h": h, "c": c})
        self._state = np.stack([h, c])
        self._context = frame[-CONTEXT:]
        return float(out.reshape(-1)[0])

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        """16 kHz float32 samples in; the starts and stops they complete out."""
        events = []
        data = np.concatenate([self._pending, samples]) if self._pending.size else samples
        n = data.size // FRAME
        for i in range(n):
            prob = self.probability(data[i * FRAME : (i + 1) * FRAME])
            self._frames += 1
            end_s = self._frames * FRAME / SAMPLE_RATE
            if prob >= self.threshold:
                self._voice_end_s = end_s
                if self._foreground(data[i * FRAME : (i + 1) * FRAME]):
                    self._foreground_end_s = end_s
            if not self.in_speech:
                if prob < self.threshold:  # a blip that started no utterance sets no level
                    self._levels.clear()
                self._run = self._run + 1 if prob >= self.threshold else 0
                if self._run >= self.min_speech_frames:
                    self.in_speech, self._run = True, 0
                    start = end_s - self.min_speech_frames * FRAME / SAMPLE_RATE
                    events.append(VadEvent(True, max(0.0, start - self.pad_s)))
            else:
                self._run = self._run + 1 if prob < self.threshold - 0.15 else 0
                if self._run >= self.min_silence_frames or self._room_paused():
                    speech_end = self.last_speech_end_s
                    self.in_speech, self._run = False, 0
                    self._levels.clear()
                    events.append(VadEvent(False, self._voice_end_s + self.pad_s, speech_end_s=speech_end))
        self._pending = data[n * FRAME :].copy()
        return events

    def _foreground(self, frame: np.ndarray) -> bool:
        """Whether a speech frame is loud enough to be the speaker's (see the module's doc)."""
        if self.foreground_db is None:  # the gate is off: no level to keep
            return True
        level = 10.0 * float(np.log10(np.mean(frame * frame) + 1e-18))
        self._levels.append(level)
        if len(self._levels) < LEVEL_MIN_FRAMES:
            return True
        return level >= float(np.percentile(self._levels, LEVEL_PERCENTILE)) - self.foreground_db

    def _room_paused(self) -> bool:
        """Whether the speaker has been silent for ``min_silence_s`` and the background
        voices heard since (for at most ``MAX_BACKGROUND_S``) pause for ``room_pause_s``.
        Background past that bound is the speaker's: then the speaker's end is the voices'."""
        speaker_end = self.last_speech_end_s
        return (
            self.room_pause_frames is not None
            and self._run >= self.room_pause_frames
            and speaker_end < self._voice_end_s
            and self.time_s - speaker_end >= self.min_silence_s - 1e-9
        )

    @property
    def last_speech_end_s(self) -> float:
        """End of the last frame of the speaker's speech: the last foreground frame, unless
        background speech has gone on longer than ``MAX_BACKGROUND_S`` since it."""
        if self._voice_end_s - self._foreground_end_s > MAX_BACKGROUND_S:
            return self._voice_end_s
        return self._foreground_end_s

    @property
    def time_s(self) -> float:
        """Seconds of audio the VAD has decided on."""
        return self._frames * FRAME / SAMPLE_RATE

    @property
    def pause_s(self) -> float:
        """Silence heard since the last speech frame while speech has not stopped yet (0
        outside speech): a session may start the final's decoding before the stop."""
        return self.time_s - self.last_speech_end_s if self.in_speech else 0.0
