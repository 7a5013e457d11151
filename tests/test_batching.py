"""Requests decoded together (``max_batch``): what is queued goes in one batch, split back exactly."""

from __future__ import annotations

import pytest

from conftest import WAIT, fake_config, samples, wait_for
from whisperpool import DecodeOptions, WorkerCrashed
from whisperpool.testing import FakeBehavior

MARKERS = FakeBehavior()


def busy_pool(make_pool, **changes):
    """One worker, kept busy by a first request, so that what follows queues."""
    pool = make_pool(fake_config(pool_size=1, max_batch=4, fake=FakeBehavior(inference_delay_s=0.4), **changes))
    pool.warm_up_all_workers(timeout=WAIT)
    first = pool.submit(samples(1000))
    assert wait_for(lambda: pool.get_status().busy_workers == 1)
    return pool, first


def test_queued_requests_go_in_one_batch_and_each_gets_its_own_answer(make_pool):
    pool, first = busy_pool(make_pool)
    queued = [pool.submit(samples(2000 + 100 * i)) for i in range(5)]
    results = [f.result(WAIT) for f in [first, *queued]]
    assert [r.text for r in results] == ["1000 samples"] + [f"{2000 + 100 * i} samples" for i in range(5)]
    for r, n in zip(results[1:], (2000, 2100, 2200, 2300, 2400), strict=True):
        assert r.duration == pytest.approx(n / 16_000)
        assert [(s.id, s.start, pytest.approx(s.end)) for s in r.segments] == [(1, 0.0, n / 16_000)]
    status = pool.get_status()
    assert status.batches >= 1 and status.batched_requests >= 4  # four rode together, the fifth after
    assert status.requests_completed == 6 and status.requests_failed == 0


def test_a_lone_request_is_not_held_back_for_company(make_pool):
    pool = make_pool(fake_config(pool_size=1, max_batch=8))
    pool.warm_up_all_workers(timeout=WAIT)
    assert pool.transcribe(samples(3000), timeout=WAIT).text == "3000 samples"
    assert pool.get_status().batches == 0


def test_requests_with_other_options_or_long_audio_are_not_batched_together(make_pool):
    pool, first = busy_pool(make_pool)
    german = pool.submit(samples(2000), DecodeOptions(language="de"))
    english = [pool.submit(samples(2100 + i), DecodeOptions(language="en")) for i in range(2)]
    results = [f.result(WAIT) for f in [first, german, *english]]
    assert [r.language for r in results[1:]] == ["de", "en", "en"]
    assert pool.get_status().batched_requests == 2  # the two English ones only


def test_requests_that_differ_only_in_wanting_segment_times_share_a_batch(make_pool):
    """A short window keeps its timestamp tokens either way (the option is about pieces)."""
    pool, first = busy_pool(make_pool)
    futures = [pool.submit(samples(2000 + i), DecodeOptions(segment_timestamps=i % 2 == 0)) for i in range(2)]
    assert [f.result(WAIT).text for f in futures] == ["2000 samples", "2001 samples"]
    first.result(WAIT)
    assert pool.get_status().batched_requests == 2


def test_a_batch_whose_worker_dies_retries_each_request_alone(make_pool):
    pool, first = busy_pool(make_pool, max_crashes_per_request=2)
    poison = samples(2000, first=MARKERS.crash_marker)
    futures = [pool.submit(samples(2100)), pool.submit(poison), pool.submit(samples(2200))]
    assert first.result(WAIT).text == "1000 samples"
    assert futures[0].result(WAIT).text == "2100 samples"
    assert futures[2].result(WAIT).text == "2200 samples"
    with pytest.raises(WorkerCrashed, match="poison"):
        futures[1].result(WAIT)
    status = pool.get_status()
    assert status.requests_completed == 3 and status.requests_failed == 1
    assert wait_for(lambda: pool.get_status().warm_workers == 1)


@pytest.mark.real_model
def test_a_batch_of_real_speech_gives_each_request_its_own_words(clip_texts):
    from conftest import MAX_WER, clip
    from whisperpool import PoolConfig, ProcessPool
    from whisperpool.audio import load_audio
    from whisperpool.wer import word_error_rate

    names = ["fox", "groceries", "weather"]
    decode = DecodeOptions(language="en", short_window_max_s=24.0)  # the weather clip is 11 s: batchable
    with ProcessPool(PoolConfig(pool_size=1, express_workers=0, max_batch=4, decode=decode)) as pool:
        first = pool.submit(load_audio(clip("library")))
        assert wait_for(lambda: pool.get_status().busy_workers == 1)
        futures = [pool.submit(load_audio(clip(n))) for n in names]
        results = [f.result(120) for f in futures]
        first.result(120)
        assert pool.get_status().batched_requests == 3
    for name, result in zip(names, results, strict=True):
        assert word_error_rate(clip_texts[name], result.text) <= MAX_WER, (name, result.text)
        assert result.segments and result.segments[-1].end <= result.duration + 0.5


@pytest.mark.real_model
def test_a_batched_request_gets_the_text_it_gets_alone():
    """Each request in a batch is decoded in the window it gets alone (a 7.8 s one in a
    window a second longer than the others': two batches), from its own audio padded
    with silence: its text does not depend on the requests it rode with."""
    import numpy as np

    from conftest import clip
    from whisperpool import PoolConfig, ProcessPool
    from whisperpool.audio import load_audio
    from whisperpool.bench.common import CLIPS

    names = ["s3-plants", "s3-coffee", "s3-music", "s3-weather", "s5-heating", "s5-river", "s5-brother"]
    audio = [load_audio(CLIPS / "short" / f"{n}.wav") for n in names]
    audio.append(np.concatenate([load_audio(CLIPS / "short" / f"{n}.wav") for n in ("s3-pasta", "s5-news")]))
    with ProcessPool(
        PoolConfig(pool_size=1, express_workers=0, max_batch=8, decode=DecodeOptions(language="en"))
    ) as pool:
        alone = [pool.transcribe(a, timeout=120).text for a in audio]
        first = pool.submit(load_audio(clip("library")))
        assert wait_for(lambda: pool.get_status().busy_workers == 1)
        futures = [pool.submit(a) for a in audio]
        together = [f.result(120).text for f in futures]
        first.result(120)
        assert pool.get_status().batched_requests == len(audio)
    assert together == alone


@pytest.mark.real_model
def test_on_a_cpu_each_window_of_a_batch_is_encoded_alone():
    """A batch's windows go through the encoder one at a time on a CPU (where a batch
    only makes the encoder slower) and are decoded together, short windows and full ones
    (pieces over 29 s) alike; each request's text is the one it gets alone."""
    import numpy as np

    from whisperpool.audio import SAMPLE_RATE, load_audio
    from whisperpool.backends.faster_whisper import FasterWhisperBackend
    from whisperpool.bench.common import CLIPS
    from whisperpool.models import ensure_packaged_model
    from whisperpool.worker.protocol import BackendSpec

    backend = FasterWhisperBackend(
        BackendSpec("faster-whisper", str(ensure_packaged_model()), "cpu", "int8", 1, 0, MARKERS)
    )
    backend.load()
    encoded: list[tuple[int, ...]] = []
    ct2 = backend.model.model

    class Recording:  # the CTranslate2 model, noting the shape of what it encodes
        def encode(self, features, **kwargs):
            encoded.append(tuple(features.shape))
            return ct2.encode(features, **kwargs)

        def __getattr__(self, name):
            return getattr(ct2, name)

    backend.model.model = Recording()
    clips = [load_audio(CLIPS / "short" / f"{n}.wav") for n in ("s3-plants", "s3-coffee", "s3-music")]
    joined = np.concatenate(clips)
    ends = np.cumsum([c.size for c in clips])
    pieces = list(zip([0, *ends[:-1]], ends, strict=True))
    options = DecodeOptions(language="en", speech_gate=False)
    batched = backend.transcribe_pieces(joined, pieces, options)
    assert len(encoded) == 3 and all(shape[0] == 1 for shape in encoded), encoded  # one at a time
    assert len(set(encoded)) == 1  # in the batch's one window
    alone = [backend.transcribe(c, options).text for c in clips]
    assert batched.text.split() == " ".join(alone).split()
    # Two pieces of 30 s: the full window, encoded one at a time too.
    encoded.clear()
    long = np.concatenate([np.concatenate(clips)] * 7)[: 60 * SAMPLE_RATE]
    backend.transcribe_pieces(long, [(0, 30 * SAMPLE_RATE), (30 * SAMPLE_RATE, 60 * SAMPLE_RATE)], options)
    # (a piece that went astray is decoded again alone after the batch: more encodes)
    assert encoded[:2] == [(1, 80, 3000), (1, 80, 3000)] and all(shape[0] == 1 for shape in encoded), encoded


@pytest.mark.parametrize(
    ("device", "shape", "calls"),
    [
        ("cpu", (3, 80, 800), [(1, 80, 800)] * 3),  # a CPU batch: a window at a time
        ("cpu", (1, 80, 800), [(1, 80, 800)]),  # a batch of one: as it is
        ("cpu", (80, 800), [(1, 80, 800)]),  # one window without a batch axis
        ("cuda", (3, 80, 800), [(3, 80, 800)]),  # on a GPU the batch is where the throughput is
    ],
)
def test_which_batches_the_encoder_takes_a_window_at_a_time(device, shape, calls):
    """The windowed model's encode on a stand-in CTranslate2 model (no weights): only a
    CPU batch of several windows is split, each window trimmed to the batch's frames."""
    import numpy as np

    pytest.importorskip("faster_whisper")
    from whisperpool.backends.faster_whisper import _windowed_model_class

    seen: list[tuple[int, ...]] = []

    class StandIn:
        def __init__(self) -> None:
            self.device, self.device_index = device, [0]

        def encode(self, features, to_cpu=False):
            array = np.asarray(features)
            seen.append(array.shape)
            return array[..., :4] * 2.0  # any output with a batch axis

    cls = _windowed_model_class()
    model = cls.__new__(cls)  # no weights loaded: only encode() is exercised
    model.model = StandIn()
    model.batch_window_frames = 800
    features = np.arange(np.prod(shape[:-1]) * 1000, dtype=np.float32).reshape(*shape[:-1], 1000)
    out = np.asarray(model.encode(features))
    assert seen == calls
    expected = features[..., :800] if len(shape) == 3 else features[None, :, :800]
    assert np.array_equal(out, expected[..., :4] * 2.0)  # the windows' outputs, in order
