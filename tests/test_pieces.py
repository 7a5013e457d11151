"""Long recordings in pieces: split, spread over the workers, stitched in order.

The fake backend plans a recording as back-to-back pieces of ``piece_s`` (every sample is
speech) and answers each piece with its sample count, so each piece's place in the
stitched result can be checked exactly.
"""

from __future__ import annotations

import dataclasses
import os
import signal

import numpy as np
import pytest

from conftest import WAIT, clip, fake_config, samples, wait_for
from whisperpool import PoolConfig, TranscriptionError, WorkerCrashed
from whisperpool.audio import SAMPLE_RATE, load_audio
from whisperpool.testing import FakeBehavior
from whisperpool.wer import word_error_rate as wer

MARKERS = FakeBehavior()
PIECE = 2 * SAMPLE_RATE  # samples in a full piece (piece_s=2)


def long_config(**changes) -> PoolConfig:
    """Pieces of 2 s, one a job (``piece_batch=1``) unless a test batches them."""
    return fake_config(**{"split_above_s": 3.0, "piece_s": 2.0, "piece_batch": 1, **changes})


def recording(seconds: float, marks: dict[int, float] | None = None) -> np.ndarray:
    """``seconds`` of audio; ``marks`` puts a marker value at the start of those pieces."""
    audio = samples(int(seconds * SAMPLE_RATE))
    for piece, value in (marks or {}).items():
        audio[piece * PIECE] = value
    return audio


# 9 s of recording in pieces of 2 s: (segment id, start, end) on the recording's timeline
NINE_S_IN_PIECES = [(1, 0.0, 2.0), (2, 2.0, 4.0), (3, 4.0, 6.0), (4, 6.0, 8.0), (5, 8.0, 9.0)]


def test_a_long_recording_is_split_spread_and_stitched_in_order(make_pool):
    pool = make_pool(long_config(pool_size=2, fake=FakeBehavior(inference_delay_s=0.3)))
    pool.warm_up_all_workers(timeout=WAIT)
    seen: list = []
    progress: list = []
    result = pool.submit(recording(9.0), on_segment=seen.append, on_progress=lambda *a: progress.append(a)).result(WAIT)
    assert result.pieces == 5 and result.duration == 9.0
    assert [(s.id, s.start, s.end) for s in result.segments] == NINE_S_IN_PIECES
    assert [s.text for s in result.segments] == ["32000 samples"] * 4 + ["16000 samples"]
    assert seen == list(result.segments)  # every segment once, in order, whatever order the pieces ended in
    assert progress[0] == (0, 5) and progress[-1] == (5, 5) and progress == sorted(progress)
    status = pool.get_status()
    assert all(w.requests_served >= 1 for w in status.workers)  # both workers took pieces
    assert (status.requests_completed, status.long_requests, status.pieces_completed) == (1, 1, 5)
    assert status.requests == ()  # nothing in flight any more


def test_pieces_go_in_batches_that_every_worker_shares(make_pool):
    pool = make_pool(long_config(pool_size=2, piece_batch=4, fake=FakeBehavior(inference_delay_s=0.2)))
    pool.warm_up_all_workers(timeout=WAIT)
    seen: list = []
    progress: list = []
    result = pool.submit(recording(9.0), on_segment=seen.append, on_progress=lambda *a: progress.append(a)).result(WAIT)
    # Five pieces on two workers: batches of three and two (not four and one), one job each.
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0), (8.0, 9.0)]
    assert seen == list(result.segments) and [s.id for s in seen] == [1, 2, 3, 4, 5]
    assert progress[0] == (0, 5) and progress[-1] == (5, 5) and len(progress) == 3
    status = pool.get_status()
    assert result.pieces == 5 and status.pieces_completed == 5
    assert sorted(w.requests_served for w in status.workers) == [1, 2]  # the plan, then one batch each


def test_a_recording_of_one_piece_is_decoded_as_short_audio_is_and_streams(make_pool):
    # Long enough to plan (over split_above_s), short enough to be one piece: nothing to
    # spread, so it goes whole through the ordinary path, its segments streamed as decoded.
    pool = make_pool(long_config(pool_size=1, split_above_s=2.0, piece_s=3.0, piece_batch=4))
    pool.warm_up_all_workers(timeout=WAIT)
    seen: list = []
    result = pool.submit(recording(2.5), on_segment=seen.append).result(WAIT)
    assert result.pieces == 1 and [s.text for s in result.segments] == ["40000 samples"]
    assert seen == list(result.segments)
    assert pool.get_status().long_requests == 1
    # A piece whose short window was mended by a retry: the recording's result says so too.
    mended = pool.submit(recording(2.5, {0: FakeBehavior().retry_marker})).result(WAIT)
    assert (mended.pieces, mended.window, mended.retried) == (1, "short", "repetition")
    assert pool.get_status().window_retries == {"repetition": 1}


def test_audio_up_to_the_threshold_is_decoded_whole(make_pool):
    pool = make_pool(long_config(pool_size=1))
    pool.warm_up_all_workers(timeout=WAIT)
    result = pool.transcribe(recording(3.0), timeout=WAIT)
    assert result.pieces == 1 and [s.text for s in result.segments] == ["48000 samples"]
    assert pool.get_status().long_requests == 0


def test_a_piece_that_fails_fails_the_recording_once_and_the_pool_goes_on(make_pool):
    pool = make_pool(long_config(pool_size=2, fake=FakeBehavior(inference_delay_s=0.2)))
    pool.warm_up_all_workers(timeout=WAIT)
    future = pool.submit(recording(9.0, {2: MARKERS.error_marker}))
    with pytest.raises(TranscriptionError, match="told to fail"):
        future.result(WAIT)
    assert wait_for(lambda: pool.get_status().busy_workers == 0 and pool.get_status().queue_depth == 0)
    status = pool.get_status()
    assert status.requests_failed == 1 and status.requests_completed == 0
    assert pool.transcribe(recording(1.0), timeout=WAIT).text == "16000 samples"


def test_a_poison_piece_is_refused_and_its_recording_fails(make_pool):
    pool = make_pool(long_config(pool_size=2))
    pool.warm_up_all_workers(timeout=WAIT)
    with pytest.raises(WorkerCrashed, match="poison"):
        pool.submit(recording(9.0, {3: MARKERS.crash_marker})).result(WAIT)
    assert wait_for(lambda: pool.get_status().warm_workers == 2)
    assert pool.get_status().requests_failed == 1


def test_a_worker_killed_with_pieces_in_flight_loses_and_repeats_nothing(make_pool):
    pool = make_pool(long_config(pool_size=2, fake=FakeBehavior(inference_delay_s=1.0)))
    pool.warm_up_all_workers(timeout=WAIT)
    seen: list = []
    future = pool.submit(recording(9.0), on_segment=seen.append)
    assert wait_for(lambda: pool.get_status().busy_workers == 2)  # the plan ran; two pieces are in flight
    victim = next(w for w in pool.get_status().workers if w.state.value == "processing")
    os.kill(victim.pid, signal.SIGKILL)
    result = future.result(WAIT)
    assert [(s.id, s.start, s.end) for s in result.segments] == [
        (i + 1, 2.0 * i, min(9.0, 2.0 * i + 2)) for i in range(5)
    ]
    assert seen == list(result.segments)
    status = pool.get_status()
    assert status.requests_retried >= 1 and status.requests_completed == 1 and status.pieces_completed == 5


def test_a_piece_of_a_cancelled_recording_is_not_retried_when_its_worker_dies(make_pool):
    pool = make_pool(long_config(pool_size=1, fake=FakeBehavior(inference_delay_s=1.0)))
    pool.warm_up_all_workers(timeout=WAIT)
    future = pool.submit(recording(9.0))
    assert wait_for(lambda: pool.get_status().queue_depth >= 3)  # planned: a piece runs, the rest wait
    assert future.cancel()
    victim = pool.get_status().workers[0]
    os.kill(victim.pid, signal.SIGKILL)
    assert wait_for(lambda: pool.get_status().worker_restarts == 1 and pool.get_status().warm_workers == 1)
    status = pool.get_status()
    assert status.requests_retried == 0 and status.queue_depth == 0 and status.requests == ()
    assert pool.submit(samples(8000)).result(WAIT).text == "8000 samples"  # the new worker serves


def test_a_short_request_waits_for_a_piece_not_for_the_recording(make_pool):
    # One worker, a recording of ten 0.4 s pieces: a short request that arrives once the
    # recording is under way is served after the piece in hand, not after all ten.
    pool = make_pool(long_config(pool_size=1, fake=FakeBehavior(inference_delay_s=0.4)))
    pool.warm_up_all_workers(timeout=WAIT)
    long = pool.submit(recording(20.0))
    assert wait_for(lambda: any(r.pieces_total == 10 for r in pool.get_status().requests))
    short = pool.submit(recording(1.0))
    result = short.result(WAIT)
    assert not long.done()  # it overtook most of the recording
    assert result.timings.queue_wait_s < 3 * 0.4 + 1.0
    assert long.result(WAIT).pieces == 10


def test_the_status_shows_queue_positions_and_piece_progress(make_pool):
    pool = make_pool(long_config(pool_size=1, fake=FakeBehavior(inference_delay_s=0.5)))
    pool.warm_up_all_workers(timeout=WAIT)
    long = pool.submit(recording(9.0))
    assert wait_for(lambda: any(r.pieces_total == 5 and r.position is None for r in pool.get_status().requests))
    queued = [pool.submit(samples(100 + i)) for i in range(2)]
    requests = {r.id: r for r in pool.get_status().requests}
    (progress,) = [r for r in requests.values() if r.pieces_total == 5]
    assert 0 <= progress.pieces_done < 5 and progress.audio_s == 9.0
    positions = sorted(r.position for r in requests.values() if r.pieces_total == 1)
    assert positions == [0, 1]  # both short requests wait ahead of the recording's later pieces
    for f in [long, *queued]:
        f.result(WAIT)
    data = pool.get_status().to_dict()
    assert data["requests"] == [] and data["long_requests"] == 1


def test_cancelling_a_recording_drops_its_queued_pieces_and_the_request(make_pool):
    pool = make_pool(long_config(pool_size=1, fake=FakeBehavior(inference_delay_s=0.5)))
    pool.warm_up_all_workers(timeout=WAIT)
    future = pool.submit(recording(20.0))
    assert wait_for(lambda: pool.get_status().queue_depth >= 5)  # planned: its pieces wait
    assert future.cancel()
    assert wait_for(lambda: pool.get_status().queue_depth == 0 and pool.get_status().busy_workers == 0)
    status = pool.get_status()
    assert status.pieces_completed <= 2  # at most the pieces already running finished
    # and the request is gone: not listed, its audio not held (it was kept forever before)
    assert status.requests == () and not pool._long


def test_recordings_side_by_side_each_get_their_segments_in_order(make_pool):
    pool = make_pool(long_config(pool_size=2, fake=FakeBehavior(inference_delay_s=0.1)))
    pool.warm_up_all_workers(timeout=WAIT)
    seen: dict[int, list] = {5: [], 7: [], 9: []}
    futures = {n: pool.submit(recording(n), on_segment=seen[n].append) for n in seen}
    for n, future in futures.items():
        result = future.result(WAIT)
        assert seen[n] == list(result.segments) and result.pieces == (n + 1) // 2
        assert [s.start for s in seen[n]] == [2.0 * i for i in range(result.pieces)]


def test_each_piece_of_a_batch_is_decoded_as_it_is_and_lands_on_its_own_time(make_pool):
    # 9 s in pieces of 2 s (the fake answers with the samples it was given), one batch of
    # three and one of two: each piece exactly its own samples, no silence added.
    pool = make_pool(long_config(pool_size=2, piece_batch=4))
    pool.warm_up_all_workers(timeout=WAIT)
    result = pool.submit(recording(9.0)).result(WAIT)
    assert [(s.id, s.start, s.end) for s in result.segments] == NINE_S_IN_PIECES
    assert [s.text for s in result.segments] == ["32000 samples"] * 4 + ["16000 samples"]


def test_a_batch_of_pieces_travels_joined_and_maps_back_to_the_recording():
    from whisperpool.pool.pieces import joined, on_timeline
    from whisperpool.results import Segment, Word

    audio = np.arange(1, 101, dtype=np.float32)
    batch = ((10, 30), (50, 60))
    together, where = joined(audio, batch)
    assert where == ((0, 20), (20, 30))
    assert together.tolist() == list(range(11, 31)) + list(range(51, 61))
    sr = SAMPLE_RATE
    # A segment of the second piece: a word that starts before it stays at the piece's start.
    words = (Word(18 / sr, 22 / sr, " a", 0.9), Word(22 / sr, 29 / sr, " b", 0.9))
    segment = Segment(id=1, start=21 / sr, end=29 / sr, text=" a b", seek=0, words=words)
    moved = on_timeline(segment, batch, where)
    assert (moved.start * sr, moved.end * sr) == pytest.approx((51, 59))
    assert [t * sr for w in moved.words for t in (w.start, w.end)] == pytest.approx([50, 52, 52, 59])
    first = on_timeline(dataclasses.replace(segment, start=6 / sr, end=24 / sr, words=None), batch, where)
    assert (first.start * sr, first.end * sr) == pytest.approx((16, 30))  # kept inside its piece
    # Heard in the first piece's trailing silence, the backend clamps it to the piece's end: it stays there.
    at_end = on_timeline(dataclasses.replace(segment, start=20 / sr, end=20 / sr, words=None), batch, where)
    assert (at_end.start * sr, at_end.end * sr) == pytest.approx((30, 30))


def test_plan_spans_cut_at_the_quietest_moment_near_each_nominal_end():
    from whisperpool.pool.pieces import CUT_SEARCH_S, plan_spans

    rng = np.random.default_rng(3)
    audio = (0.3 * rng.standard_normal(40 * SAMPLE_RATE)).astype(np.float32)
    quiet = int(21.3 * SAMPLE_RATE)  # a pause 1.3 s after the middle
    audio[quiet : quiet + SAMPLE_RATE // 5] = 0.0
    spans = plan_spans(audio, 2)
    assert spans[0][0] == 0 and spans[-1][1] == audio.size and spans[0][1] == spans[1][0]
    assert quiet <= spans[0][1] < quiet + SAMPLE_RATE // 5
    far = int((20 + CUT_SEARCH_S + 1) * SAMPLE_RATE)  # too far from the middle to be used
    audio[quiet : quiet + SAMPLE_RATE // 5] = 0.3
    audio[far : far + SAMPLE_RATE // 5] = 0.0
    assert abs(plan_spans(audio, 2)[0][1] - 20 * SAMPLE_RATE) <= CUT_SEARCH_S * SAMPLE_RATE
    assert plan_spans(audio, 1) == [(0, audio.size)]
    assert [b - a for a, b in plan_spans(audio, 4)] == pytest.approx(
        [10 * SAMPLE_RATE] * 4, abs=2 * CUT_SEARCH_S * SAMPLE_RATE
    )


def test_group_pieces_joins_regions_across_short_silences_up_to_a_piece():
    from whisperpool.pool.pieces import group_pieces

    regions = [(0, 10), (12, 20), (21, 28), (40, 45), (45, 60)]
    assert group_pieces(regions, max_samples=25, max_gap_samples=5) == ((0, 20), (21, 28), (40, 60))
    assert group_pieces(regions, max_samples=100, max_gap_samples=5) == ((0, 28), (40, 60))
    assert group_pieces([], 10, 5) == ()


def test_balanced_pieces_fill_whole_rounds_of_the_workers_with_even_lengths():
    from whisperpool.pool.pieces import balanced_pieces, group_pieces

    regions = [(i * 6, i * 6 + 5) for i in range(15)]  # fifteen 5-sample regions, 1-sample gaps
    greedy = group_pieces(regions, max_samples=30, max_gap_samples=5)
    assert [b - a for a, b in greedy] == [29, 29, 29]  # three full pieces: one worker of 2 idles last
    balanced = balanced_pieces(regions, max_samples=30, max_gap_samples=5, workers=2)
    assert [b - a for a, b in balanced] == [23, 23, 23, 17]  # four regions a piece, the rest last
    assert balanced[0][0] == 0 and balanced[-1][1] == regions[-1][1]  # the same audio
    starts = {a for a, _ in regions}
    assert all(a in starts for a, _ in balanced)  # cut only between regions
    # Already whole rounds: the count stays, the lengths even out.
    assert [b - a for a, b in balanced_pieces(regions, 30, 5, workers=3)] == [29, 29, 29]
    # A long silence still cuts, one region is never cut, one worker keeps the greedy pieces.
    assert balanced_pieces([(0, 10), (30, 40)], 100, 5, workers=2) == ((0, 10), (30, 40))
    assert balanced_pieces([(0, 25)], 30, 5, workers=4) == ((0, 25),)
    assert balanced_pieces(regions, 30, 5, workers=1) == greedy


def test_batches_of_pieces_fill_whole_rounds_of_the_workers():
    from whisperpool.pool.pieces import batch_sizes

    assert batch_sizes(10, most=4, workers=2) == [3, 3, 2, 2]  # not 4, 4, 2: a third job idles a worker
    assert batch_sizes(10, most=2, workers=2) == [2, 2, 2, 2, 1, 1]  # six jobs, not five
    assert batch_sizes(20, most=8, workers=2) == [5, 5, 5, 5]
    assert batch_sizes(12, most=8, workers=2) == [6, 6]
    assert batch_sizes(5, most=4, workers=2) == [3, 2]
    assert batch_sizes(10, most=1, workers=2) == [1] * 10
    assert batch_sizes(3, most=8, workers=4) == [1, 1, 1]  # fewer pieces than workers: one each
    assert batch_sizes(0, most=2, workers=2) == []
    for pieces in range(1, 40):  # every piece in exactly one job, none over the limit
        for most in (1, 2, 3, 8):
            sizes = batch_sizes(pieces, most, workers=3)
            assert sum(sizes) == pieces and max(sizes) <= most and max(sizes) - min(sizes) <= 1
            assert len(sizes) % 3 == 0 or len(sizes) == pieces  # whole rounds, or a piece a job
            assert len(sizes) - 3 < -(-pieces // most)  # no round more than the limit needs


def test_each_idle_worker_plans_a_part_of_a_long_recording(make_pool, monkeypatch):
    from whisperpool.worker.handle import Worker

    plans: list[tuple[int, int, int]] = []  # (part, worker, samples)
    assign = Worker.assign

    def spy(self, job):
        if job.kind == "plan":
            plans.append((job.round, self.id, job.audio.size))
        assign(self, job)

    monkeypatch.setattr(Worker, "assign", spy)
    pool = make_pool(long_config(pool_size=2, plan_span_s=4.0, fake=FakeBehavior(inference_delay_s=0.3)))
    pool.warm_up_all_workers(timeout=WAIT)
    audio = recording(12.0)
    result = pool.transcribe(audio, timeout=WAIT)
    assert sorted(part for part, _, _ in plans) == [0, 1] and len({w for _, w, _ in plans}) == 2
    assert sum(size for _, _, size in plans) == audio.size  # the parts cover the recording once
    # The parts' regions are joined into pieces on the recording's timeline, in order.
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert sum(int(s.text.split()[0]) for s in result.segments) == audio.size
    assert result.language == "en"  # from the first part, the one that detects it


# -- the real model ------------------------------------------------------------------------
def joined(names: list[str], gap_s: float) -> np.ndarray:
    gap = np.zeros(int(gap_s * SAMPLE_RATE), np.float32)
    parts = []
    for name in names:
        parts += [load_audio(clip(name)), gap]
    return np.concatenate(parts)


@pytest.mark.real_model
def test_a_long_recording_of_real_speech_in_pieces_reads_like_one_pass(clip_texts):
    from whisperpool import DecodeOptions, ProcessPool

    names = ["weather", "library", "groceries", "fox", "weather", "library"]
    audio = joined(names, 1.5)
    reference = " ".join(clip_texts[n] for n in names)
    decode = DecodeOptions(language="en")
    # Where each clip lies on the recording: a word must land in its own clip.
    edges = np.cumsum([0] + [load_audio(clip(n)).size + int(1.5 * SAMPLE_RATE) for n in names]) / SAMPLE_RATE
    texts = {}
    for split in (30.0, None):
        # Planned in two parts (one per worker), cut in one of the pauses between the clips;
        # each piece decoded with its 1 s of silence either side (the default).
        config = PoolConfig(pool_size=2, threads_per_worker=1, decode=decode, split_above_s=split, plan_span_s=15.0)
        with ProcessPool(config) as pool:
            texts[split] = result = pool.transcribe(audio, decode.replace(word_timestamps=True), timeout=300)
        if split is not None:
            assert result.pieces >= 2 and result.duration == pytest.approx(audio.size / SAMPLE_RATE)
            starts = [s.start for s in result.segments]
            assert starts == sorted(starts) and result.segments[-1].end <= result.duration + 0.5
            words = [w for s in result.segments for w in s.words]
            assert [w.start for w in words] == sorted(w.start for w in words)
            for word, name in (("fox", "fox"), ("bananas", "groceries")):
                at = next(w.start for w in words if word in w.word.lower())
                assert edges[names.index(name)] <= at <= edges[names.index(name) + 1], (word, at, edges)
            said = [w for w in words if "saturday" in w.word.lower()]  # the second library clip's last word
            assert len(said) == 2 and edges[5] <= said[1].start <= said[1].end <= result.duration + 0.5
    in_pieces, one_pass = wer(reference, texts[30.0].text), wer(reference, texts[None].text)
    # Nothing lost or repeated at the cuts (a lost piece is 20 words or more of 155); a
    # misheard word or two is the benchmark's to measure (scripts/piece_wer.py), not this.
    assert in_pieces <= 0.05 and in_pieces <= one_pass + 0.03, (in_pieces, one_pass, texts[30.0].text)
    assert abs(len(texts[30.0].text.split()) - len(reference.split())) <= 3, texts[30.0].text


@pytest.mark.real_model
def test_pieces_skip_the_alignment_when_no_one_wants_segment_times():
    """``segment_timestamps=False``: each piece is one segment spanning it, the same text,
    and the aligner never runs; sentence segments and words still align."""
    from whisperpool import DecodeOptions
    from whisperpool.backends.faster_whisper import FasterWhisperBackend
    from whisperpool.models import ensure_packaged_model
    from whisperpool.worker.protocol import BackendSpec

    backend = FasterWhisperBackend(
        BackendSpec("faster-whisper", str(ensure_packaged_model()), "cpu", "int8", 1, 0, MARKERS)
    )
    backend.load()
    aligned: list[int] = []
    ct2 = backend.model.model

    class Counting:  # the CTranslate2 model, counting the aligner's calls
        def align(self, *args, **kwargs):
            aligned.append(1)
            return ct2.align(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(ct2, name)

    backend.model.model = Counting()
    audio = joined(["weather", "library", "groceries", "fox"], 1.5)
    cut = load_audio(clip("weather")).size + load_audio(clip("library")).size + 3 * SAMPLE_RATE
    pieces = [(0, cut - int(1.5 * SAMPLE_RATE)), (cut, audio.size)]  # 26.6 s and 11.1 s
    options = DecodeOptions(language="en", speech_gate=False)
    results = {}
    for wanted in (True, False):
        aligned.clear()
        results[wanted] = backend.transcribe_pieces(audio, pieces, options.replace(segment_timestamps=wanted))
        assert bool(aligned) == wanted, (wanted, len(aligned))
    sentences, plain = results[True], results[False]
    assert plain.text == sentences.text and len(sentences.segments) > len(pieces)
    spans = [t / SAMPLE_RATE for piece in pieces for t in piece]
    assert [t for s in plain.segments for t in (s.start, s.end)] == pytest.approx(spans, abs=1e-6)
    assert [s.text for s in plain.segments] == [
        "".join(s.text for s in sentences.segments if a <= s.start * SAMPLE_RATE < b) for a, b in pieces
    ]
    assert all(s.words is None for s in plain.segments)
    aligned.clear()
    words = backend.transcribe_pieces(audio, pieces, options.replace(segment_timestamps=False, word_timestamps=True))
    assert aligned and words.segments == tuple(
        dataclasses.replace(s, words=w.words) for s, w in zip(sentences.segments, words.segments, strict=True)
    )


@pytest.mark.real_model
def test_silence_alone_has_no_pieces_and_no_words():
    from whisperpool import DecodeOptions, ProcessPool

    with ProcessPool(PoolConfig(pool_size=1, decode=DecodeOptions(language="en"))) as pool:
        result = pool.transcribe(np.zeros(40 * SAMPLE_RATE, np.float32), timeout=120)
    assert (result.text, result.segments, result.pieces, result.language) == ("", (), 0, "en")


# -- through the engine, the HTTP API and the CLI -------------------------------------------
def test_the_engine_reports_progress_and_segments_in_the_event_loop():
    import asyncio

    from whisperpool import TranscriptionEngine

    async def main():
        loop = asyncio.get_running_loop()
        calls: list = []
        async with TranscriptionEngine(long_config(pool_size=2)) as engine:
            result = await engine.transcribe(
                recording(7.0),
                on_progress=lambda *a: calls.append(("progress", a, asyncio.get_running_loop() is loop)),
                on_segment=lambda s: calls.append(("segment", s.start, asyncio.get_running_loop() is loop)),
            )
        return result, calls

    result, calls = asyncio.run(main())
    assert result.pieces == 4 and all(in_loop for *_, in_loop in calls)
    assert [c[1] for c in calls if c[0] == "segment"] == [0.0, 2.0, 4.0, 6.0]
    assert [c[1] for c in calls if c[0] == "progress"][-1] == (4, 4)


def test_the_http_api_streams_a_long_recording_in_order(tmp_path):
    import json

    from fastapi.testclient import TestClient

    from conftest import encode
    from whisperpool.server import ServerSettings, create_app

    app = create_app(ServerSettings(pool=long_config(pool_size=2, fake=FakeBehavior(inference_delay_s=0.1))))
    data = encode(recording(9.0), tmp_path / "long.wav").read_bytes()
    with TestClient(app) as client:
        assert wait_for(lambda: client.get("/health/ready").status_code == 200)
        body = client.post("/v1/audio/transcriptions", files={"file": ("long.wav", data)}, data={"stream": "true"}).text
        verbose = client.post(
            "/v1/audio/transcriptions", files={"file": ("long.wav", data)}, data={"response_format": "verbose_json"}
        ).json()
    events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    deltas = [e["delta"] for e in events if e["type"] == "transcript.text.delta"]
    assert deltas == ["32000 samples"] * 4 + ["16000 samples"] and events[-1]["type"] == "transcript.text.done"
    assert [s["start"] for s in verbose["segments"]] == [0.0, 2.0, 4.0, 6.0, 8.0]


def test_the_cli_takes_folders_of_audio(tmp_path):
    from whisperpool.cli import expand_inputs

    (tmp_path / "b").mkdir()
    for name in ("b/2.flac", "1.wav", "notes.txt", "b/3.MP3"):
        (tmp_path / name).write_bytes(b"x")
    files = expand_inputs([str(tmp_path), "missing.wav"])
    assert files == [str(tmp_path / "1.wav"), str(tmp_path / "b/2.flac"), str(tmp_path / "b/3.MP3"), "missing.wav"]
