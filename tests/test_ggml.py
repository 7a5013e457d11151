"""The packaged CTranslate2 model converted to ggml for whisper.cpp: tensors, shapes,
quantisation, the verified cache, and a user's own ggml file."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from whisperpool import ModelError
from whisperpool.ggml import mel_filters, quantize_q5_0, quantize_q8_0, read_ct2, read_ggml_tensor, write_ggml
from whisperpool.models import PACKAGED_SHA256, ensure_packaged_model, resolve_model

# sha256 of the bytes of one tensor of the float16 file: the value half of decoder block 2's
# fused cross-attention key/value, which only a correct split puts under this name.
CROSS_VALUE_2_SHA256 = "5f820fed7071e182"
BLOCK_TYPES = {"f16": 1, "q8_0": 8, "q5_0": 6}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def ct2(cache) -> dict[str, np.ndarray]:
    return read_ct2(ensure_packaged_model(cache) / "model.bin")


@pytest.fixture(scope="module")
def f16(cache) -> Path:
    return Path(resolve_model("base", cache, "whispercpp").source)


def test_the_packaged_model_converts_to_whisper_cpp_names_and_shapes(f16, ct2):
    shape, ttype, data = read_ggml_tensor(f16, "decoder.blocks.2.cross_attn.value.weight")
    assert shape == (512, 512) and ttype == 1
    assert hashlib.sha256(data).hexdigest()[:16] == CROSS_VALUE_2_SHA256
    fused = ct2["decoder/layer_2/attention/linear_1/weight"]  # (key; value) stacked
    assert np.array_equal(np.frombuffer(data, np.float16).reshape(512, 512), fused[512:])
    q, k, v = np.split(ct2["encoder/layer_0/self_attention/linear_0/weight"], 3)
    for name, part in (("query", q), ("key", k), ("value", v)):
        _, _, got = read_ggml_tensor(f16, f"encoder.blocks.0.attn.{name}.weight")
        assert np.array_equal(np.frombuffer(got, np.float16).reshape(512, 512), part), name
    assert read_ggml_tensor(f16, "encoder.conv1.weight")[:2] == ((3, 80, 512), 1)  # ggml order: innermost first
    assert read_ggml_tensor(f16, "encoder.conv1.bias")[:2] == ((1, 512), 0)  # float32, as whisper.cpp's converter
    assert read_ggml_tensor(f16, "decoder.token_embedding.weight")[:2] == ((512, 51865), 1)
    assert read_ggml_tensor(f16, "encoder.positional_embedding")[:2] == ((512, 1500), 0)
    with pytest.raises(KeyError):  # Whisper's key projections have no bias
        read_ggml_tensor(f16, "encoder.blocks.0.attn.key.bias")
    header = np.frombuffer(f16.read_bytes()[:48], "<i4")
    assert list(header[1:]) == [51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 1]  # hparams, float16


def test_the_mel_filters_are_whispers():
    # faster-whisper's copy of librosa's Slaney filterbank, which Whisper's mel_filters.npz holds
    from faster_whisper.feature_extractor import FeatureExtractor

    expected = FeatureExtractor.get_mel_filters(16000, 400, 80)
    assert np.allclose(mel_filters(), expected, atol=1e-7)


@pytest.mark.parametrize("kind", ["q8_0", "q5_0"])
def test_quantised_blocks_decode_back_within_half_a_step(kind):
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block has scale 0
    raw = np.frombuffer(quantize_q8_0(x) if kind == "q8_0" else quantize_q5_0(x), np.uint8)
    blocks = raw.reshape(-1, 34 if kind == "q8_0" else 22)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32).ravel()
    if kind == "q8_0":
        q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
    else:
        qh = blocks[:, 2:6].copy().view("<u4").ravel()
        qs = blocks[:, 6:]
        bits = (qh[:, None] >> np.arange(32, dtype=np.uint32)) & 1
        nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.uint32)
        q = (nibbles | (bits << 4)).astype(np.float32) - 16
    decoded = (q * d[:, None]).reshape(x.shape)
    assert np.all(np.abs(decoded - x) <= np.abs(d).repeat(32).reshape(x.shape) * 0.5 + 1e-3)
    assert np.all(decoded[0, :32] == 0)


def test_the_cache_is_verified_reused_and_remade_when_damaged(f16, cache):
    stamp = json.loads(f16.with_name(f16.name + ".verified.json").read_text())
    assert stamp["source_sha256"] == PACKAGED_SHA256 and stamp["size"] == f16.stat().st_size
    mtime = f16.stat().st_mtime_ns
    assert resolve_model("base", cache, "whispercpp").source == str(f16) and f16.stat().st_mtime_ns == mtime
    with open(f16, "r+b") as f:  # damage a byte: size kept, mtime moved, hash wrong
        f.seek(1000)
        f.write(b"\xff")
    assert resolve_model("base", cache, "whispercpp").source == str(f16)
    assert hashlib.sha256(f16.read_bytes()).hexdigest() == stamp["sha256"]  # converted again
    assert [p.name for p in f16.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_quantised_files_are_smaller_and_typed(cache):
    sizes = {}
    for name, kind in (("base-q8_0", "q8_0"), ("base-q5_0", "q5_0")):
        path = Path(resolve_model(name, cache, "whispercpp").source)
        assert read_ggml_tensor(path, "encoder.blocks.3.mlp.0.weight")[:2] == ((512, 2048), BLOCK_TYPES[kind])
        assert read_ggml_tensor(path, "encoder.conv2.weight")[1] == 1  # conv kernels stay float16
        sizes[kind] = path.stat().st_size
    assert sizes["q5_0"] < sizes["q8_0"] < 0.6 * Path(resolve_model("base", cache, "whispercpp").source).stat().st_size


def test_a_users_ggml_file_is_used_as_it_is_and_other_names_are_refused(f16, tmp_path):
    assert resolve_model(str(f16), None, "whispercpp").source == str(f16.resolve())
    not_ggml = tmp_path / "model.bin"
    not_ggml.write_bytes(b"\x06\x00\x00\x00 not ggml")
    with pytest.raises(ModelError, match="no ggml magic"):
        resolve_model(str(not_ggml), None, "whispercpp")
    with pytest.raises(ModelError, match="whisper.cpp backend loads 'base'.*not 'small'"):
        resolve_model("small", None, "whispercpp")


def test_a_model_that_is_not_ct2_version_6_is_refused(tmp_path):
    (tmp_path / "model.bin").write_bytes((5).to_bytes(4, "little") + b"\x00" * 16)
    with pytest.raises(ModelError, match="binary version 5, expected 6"):
        write_ggml(tmp_path, io.BytesIO())


def test_the_whispercpp_backend_refuses_a_gpu_device():
    from whisperpool import ConfigError, PoolConfig

    with pytest.raises(ConfigError, match="PoolConfig.device must be 'cpu' or 'auto' for the whispercpp backend"):
        PoolConfig(backend="whispercpp", device="cuda")
